"""JSON-schema validation of model output, with messages written for the model to read.

Structured output is only trustworthy when something checks it: a server may not support
``json_schema``, may ignore it, or may truncate a constrained answer at ``max_tokens``. Every
backend therefore validates parsed output here. The error text is short and concrete (path,
what is wrong) because it is fed back to the model when a retry is attempted.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

logger = logging.getLogger(__name__)

#: how many individual violations are listed in one message (more only add noise for the model)
MAX_REPORTED_ERRORS = 3


@lru_cache(maxsize=256)
def _validator_for(schema_json: str) -> Draft202012Validator | None:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        # A broken schema is the caller's bug, but it must not turn every model answer into a
        # failure: validate nothing and say so once per schema.
        logger.warning("ignoring invalid JSON schema for output validation: %s", exc.message)
        return None
    return cls(schema)


def _schema_key(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)


def _path(error: jsonschema.ValidationError) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return "$" + parts


def validation_error(instance: Any, schema: dict[str, Any] | None) -> str | None:
    """Why ``instance`` does not conform to ``schema``; ``None`` when it does (or no schema)."""
    if not schema:
        return None
    validator = _validator_for(_schema_key(schema))
    if validator is None:
        return None
    errors = sorted(validator.iter_errors(instance), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if not errors:
        return None
    shown = [f"{_path(e)}: {_shorten(e.message)}" for e in errors[:MAX_REPORTED_ERRORS]]
    more = len(errors) - len(shown)
    if more > 0:
        shown.append(f"(+{more} more)")
    return "; ".join(shown)


def is_valid(instance: Any, schema: dict[str, Any] | None) -> bool:
    return validation_error(instance, schema) is None


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
