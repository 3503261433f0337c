"""Turning what a model sent into a keyword-argument dict, and explaining when that fails.

Models send arguments as a JSON string that is sometimes not quite JSON (single quotes, trailing
commas, a missing brace) or double-encoded. Those are repaired here. When the arguments do not
fit the schema, the message lists every bad field, what was received and what was expected, so
that the model can fix all problems in its next call instead of one per round trip.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import json_repair
from pydantic import ValidationError

from agentflow.tools.schema import describe_schema

logger = logging.getLogger(__name__)

_MAX_INPUT_ECHO = 80


class ArgumentParseError(ValueError):
    """The raw arguments are not a JSON object, even after repair."""


def parse_arguments(raw: dict[str, Any] | str | None) -> tuple[dict[str, Any], str | None]:
    """Return (arguments, repair note). Raises ``ArgumentParseError`` with a model-facing message."""
    if raw is None:
        return {}, None
    if isinstance(raw, dict):
        return raw, None
    if not isinstance(raw, str):
        raise ArgumentParseError(f"arguments must be a JSON object, got {type(raw).__name__}")
    text = raw.strip()
    if not text:
        return {}, None
    note: str | None = None
    try:
        value: Any = json.loads(text)
    except ValueError:
        try:
            value = json_repair.loads(text)
        except Exception as exc:  # json_repair is best effort; any failure means "not JSON"
            raise ArgumentParseError(f"arguments are not valid JSON ({exc})") from exc
        note = "json_repair"
    # a JSON string that itself holds the JSON object (double encoding)
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
            note = note or "double-encoded JSON"
        except ValueError:
            pass
    if not isinstance(value, dict):
        raise ArgumentParseError(
            "arguments must be a JSON object such as {\"name\": value}, got "
            + (f"{type(value).__name__} {_echo(value)}" if value != "" else f"unparseable text {_echo(raw)}")
        )
    if note:
        logger.debug("repaired tool arguments (%s): %r", note, raw[:200])
    return value, note


def _echo(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _MAX_INPUT_ECHO else text[: _MAX_INPUT_ECHO - 3] + "..."


def _loc_text(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(arguments)"


def _schema_at(schema: dict[str, Any], loc: Sequence[str | int]) -> dict[str, Any] | None:
    """Follow ``loc`` through properties/items (and into the first matching union branch)."""
    node: Any = schema
    for part in loc:
        if not isinstance(node, dict):
            return None
        candidates = [node] + [s for s in node.get("anyOf", []) if isinstance(s, dict)]
        nxt = None
        for cand in candidates:
            if isinstance(part, int) and isinstance(cand.get("items"), dict):
                nxt = cand["items"]
                break
            if isinstance(part, str) and part in cand.get("properties", {}):
                nxt = cand["properties"][part]
                break
        if nxt is None:
            return None
        node = nxt
    return node if isinstance(node, dict) else None


def signature_summary(schema: dict[str, Any]) -> str:
    """``a: integer (required); mode: one of "x", "y" (default "x")`` for the top-level parameters."""
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        return "(no arguments)"
    required = set(schema.get("required", []))
    parts = []
    for key, prop in props.items():
        if key in required:
            suffix = "required"
        elif "default" in prop:
            suffix = "default " + json.dumps(prop["default"], ensure_ascii=False, default=str)
        else:
            suffix = "optional"
        parts.append(f"{key}: {describe_schema(prop)} ({suffix})")
    return "; ".join(parts)


def format_validation_error(tool_name: str, error: ValidationError, schema: dict[str, Any]) -> str:
    """A model-facing explanation of every invalid field, ending with the expected arguments."""
    lines = [f"Invalid arguments for tool '{tool_name}':"]
    valid_names = ", ".join(schema.get("properties", {})) or "(none)"
    for err in error.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        where = _loc_text(loc)
        kind = err.get("type", "")
        if kind == "missing":
            expected = _schema_at(schema, loc)
            detail = "missing required argument"
            if expected is not None:
                detail += f"; expected {describe_schema(expected)}"
                if expected.get("description"):
                    detail += f" ({expected['description']})"
        elif kind == "extra_forbidden":
            detail = f"unexpected argument (got {_echo(err.get('input'))}); valid arguments: {valid_names}"
        else:
            detail = f"{err.get('msg', 'invalid value')} (got {_echo(err.get('input'))})"
            expected = _schema_at(schema, loc)
            if expected is not None:
                detail += f"; expected {describe_schema(expected)}"
        lines.append(f"- {where}: {detail}")
    lines.append(f"Expected arguments: {signature_summary(schema)}.")
    lines.append(f"Call '{tool_name}' again with corrected arguments.")
    return "\n".join(lines)
