"""From a Python signature to the JSON schema a model sees, and back to validated arguments.

The signature is turned into a pydantic model (one field per parameter), so validation, coercion
and the schema all come from one source of truth. Descriptions come from ``Annotated[...,
Field(description=...)]`` first, then ``Annotated[..., "plain string"]``, then the docstring's
``Args:`` section.

Two schema flavours are produced:

- the **plain** schema (``Tool.parameters``): optional parameters are simply not ``required`` and
  carry their ``default``.
- the **strict** schema (``Tool.spec(strict=True)``), accepted by OpenAI strict mode and by vLLM's
  strict tool grammar: every object has ``additionalProperties: false`` and lists *all* of its
  properties as required. A parameter with a default therefore becomes *nullable* instead of
  optional; its description says "Default: X; send null to use it", and at call time a ``null``
  for a parameter whose type does not itself accept ``None`` is replaced by the default. (When the
  type does accept ``None``, e.g. ``int | None = 5``, ``null`` means ``None``.) ``default`` keywords
  are removed from strict schemas. Free-form mappings (``dict[str, X]``) cannot be expressed in
  strict mode; asking for a strict spec of such a tool raises ``ToolError``.

Nested ``$ref``s are inlined (models read a flat schema more reliably); only recursive models keep
``$defs``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic.fields import FieldInfo

from agentflow.errors import ToolError

#: schema keywords whose value is a single subschema
_SUBSCHEMA_KEYS = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
#: schema keywords whose value is a list of subschemas
_SUBSCHEMA_LIST_KEYS = ("anyOf", "oneOf", "allOf", "prefixItems")
#: schema keywords whose value maps names to subschemas
_SUBSCHEMA_MAP_KEYS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")


class StrictSchemaError(ToolError):
    """The tool's parameters cannot be expressed in OpenAI strict mode."""


@dataclass(frozen=True)
class Param:
    """How one function parameter maps to the arguments object."""

    #: the JSON key the model uses (the parameter's name)
    key: str
    #: the attribute on the validated pydantic model (differs when the name clashes with BaseModel)
    attr: str
    positional_only: bool


@dataclass(frozen=True)
class ArgumentsSpec:
    model: type[BaseModel]
    params: tuple[Param, ...]
    #: plain JSON schema of the arguments object (see module docstring)
    schema: dict[str, Any]


# --- building the arguments model -----------------------------------------------------------------


def build_arguments(fn: Callable[..., Any], *, tool_name: str, doc_params: dict[str, str]) -> ArgumentsSpec:
    """Create the pydantic arguments model and JSON schema for ``fn``'s signature."""
    try:
        sig = inspect.signature(fn, eval_str=True)
    except NameError as exc:
        raise ToolError(
            f"Tool {tool_name!r}: a type hint could not be resolved ({exc}).",
            hint="Define the types used in the signature at module level (string annotations are "
                 "resolved in the function's module globals).",
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ToolError(f"Tool {tool_name!r}: cannot read the signature of {fn!r}: {exc}") from exc

    fields: dict[str, Any] = {}
    params: list[Param] = []
    for index, (pname, p) in enumerate(sig.parameters.items()):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolError(
                f"Tool {tool_name!r}: parameter '{'*' if p.kind == p.VAR_POSITIONAL else '**'}{pname}' "
                "cannot be described to a model.",
                hint="Declare each argument explicitly with a type hint (or group them in a pydantic model).",
            )
        if p.annotation is inspect.Parameter.empty:
            if index == 0 and pname in ("self", "cls"):
                raise ToolError(
                    f"Tool {tool_name!r}: the function takes {pname!r}; it looks like an unbound method.",
                    hint="Wrap the bound method instead: tool(instance.method).",
                )
            raise ToolError(
                f"Tool {tool_name!r}: parameter {pname!r} has no type hint, so the model cannot be told "
                "what to send.",
                hint=f"Annotate it, e.g. `{pname}: str`.",
            )
        attr = pname if _safe_field_name(pname) else f"arg{index}_"
        annotation, description = _annotation_and_description(p.annotation)
        overrides: dict[str, Any] = {}
        if attr != pname:
            overrides["alias"] = pname
        if description is None and pname in doc_params and doc_params[pname]:
            overrides["description"] = doc_params[pname]
        elif description is not None and not _has_field_description(p.annotation):
            overrides["description"] = description
        if isinstance(p.default, FieldInfo):
            finfo = FieldInfo.merge_field_infos(p.default, Field(**overrides)) if overrides else p.default
        elif p.default is inspect.Parameter.empty:
            finfo = Field(**overrides)
        else:
            finfo = Field(p.default, **overrides)
        fields[attr] = (annotation, finfo)
        params.append(Param(key=pname, attr=attr, positional_only=p.kind == p.POSITIONAL_ONLY))

    model_name = "".join(part.capitalize() for part in re.split(r"[_\-]+", tool_name) if part) + "Arguments"
    try:
        model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
        raw_schema = model.model_json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError, ValueError) as exc:
        raise ToolError(
            f"Tool {tool_name!r}: cannot build a JSON schema for its parameters: {exc}",
            hint="Use JSON-friendly types (str, int, float, bool, Literal, lists, dicts, pydantic models).",
        ) from exc
    return ArgumentsSpec(model=model, params=tuple(params), schema=clean_schema(raw_schema))


def _safe_field_name(name: str) -> bool:
    return not (name.startswith("_") or name.startswith("model_") or hasattr(BaseModel, name))


def _annotation_and_description(annotation: Any) -> tuple[Any, str | None]:
    """Find a description in ``Annotated`` metadata (FieldInfo first, then a plain string).

    Plain strings are removed from the metadata: pydantic would ignore them anyway, and keeping the
    annotation minimal keeps schema generation predictable.
    """
    if typing.get_origin(annotation) is not Annotated:
        return annotation, None
    base, *metadata = typing.get_args(annotation)
    description: str | None = None
    kept: list[Any] = []
    for item in metadata:
        if isinstance(item, FieldInfo) and item.description:
            description = item.description
        if isinstance(item, str):
            if description is None:
                description = item
            continue
        kept.append(item)
    if not kept:
        return base, description
    return Annotated[(base, *kept)], description  # type: ignore[return-value]


def _has_field_description(annotation: Any) -> bool:
    if typing.get_origin(annotation) is not Annotated:
        return False
    return any(isinstance(m, FieldInfo) and m.description for m in typing.get_args(annotation)[1:])


# --- null handling ("null means default") -------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def accepts_none(annotation: Any) -> bool:
    """Whether ``None`` is a valid value for ``annotation`` (Optional, Any, Literal[None], ...)."""
    annotation = _unwrap(annotation)
    if annotation in (None, type(None), Any, object):
        return True
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(accepts_none(arg) for arg in typing.get_args(annotation))
    if origin is Literal:
        return None in typing.get_args(annotation)
    return False


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The pydantic model inside ``annotation`` (directly, optional, or as list items)."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if _unwrap(a) is not type(None)]
    if origin in (Union, types.UnionType) and len(args) == 1:
        return _nested_model(args[0])
    if origin in (list, tuple, set, frozenset, typing.Sequence) or (
        origin is not None and getattr(origin, "__name__", "") in ("Sequence", "Iterable")
    ):
        if args:
            inner, _ = _nested_model(args[0])
            return inner, inner is not None
    return None, False


@functools.lru_cache(maxsize=512)
def _null_plan(model: type[BaseModel]) -> tuple[tuple[str, bool, type[BaseModel] | None, bool], ...]:
    """Per field: (JSON key, drop a null, nested model, nested is a list)."""
    plan = []
    for attr, info in model.model_fields.items():
        key = info.alias or attr
        drop = not info.is_required() and not accepts_none(info.annotation)
        nested, is_list = _nested_model(info.annotation)
        plan.append((key, drop, nested, is_list))
    return tuple(plan)


def strip_nulls(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Drop ``null`` values that stand for "use the default" (strict-mode convention), recursively."""
    out = dict(data)
    for key, drop, nested, is_list in _null_plan(model):
        if key not in out:
            continue
        value = out[key]
        if value is None:
            if drop:
                del out[key]
        elif nested is not None:
            if is_list and isinstance(value, list):
                out[key] = [strip_nulls(nested, v) if isinstance(v, dict) else v for v in value]
            elif not is_list and isinstance(value, dict):
                out[key] = strip_nulls(nested, value)
    return out


# --- schema transformations -----------------------------------------------------------------------


def _map_subschemas(node: Any, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Apply ``fn`` bottom-up to every (sub)schema, leaving data values (enum, default) alone."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in _SUBSCHEMA_KEYS:
        if isinstance(out.get(key), dict):
            out[key] = _map_subschemas(out[key], fn)
    for key in _SUBSCHEMA_LIST_KEYS:
        if isinstance(out.get(key), list):
            out[key] = [_map_subschemas(s, fn) for s in out[key]]
    for key in _SUBSCHEMA_MAP_KEYS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _map_subschemas(s, fn) for name, s in out[key].items()}
    return fn(out)


def _drop_title(node: dict[str, Any]) -> dict[str, Any]:
    if isinstance(node.get("title"), str):
        node.pop("title")
    return node


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Strip auto-generated titles and inline non-recursive ``$ref``s."""
    schema = _map_subschemas(copy.deepcopy(schema), _drop_title)
    defs: dict[str, Any] = schema.pop("$defs", {}) or {}
    if not defs:
        return schema
    recursive: set[str] = set()

    def inline(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(v, stack) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.split("/", 2)[2]
            if name in stack or name not in defs:
                recursive.add(name)
                return node
            resolved = inline(copy.deepcopy(defs[name]), (*stack, name))
            siblings = {k: inline(v, stack) for k, v in node.items() if k != "$ref"}
            return {**resolved, **siblings}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("enum", "const", "default", "examples"):
                out[key] = value
            else:
                out[key] = inline(value, stack)
        return out

    schema = inline(schema, ())
    if recursive:
        kept: dict[str, Any] = {}
        pending = sorted(recursive)
        while pending:
            name = pending.pop()
            if name in kept or name not in defs:
                continue
            before = set(recursive)
            kept[name] = inline(copy.deepcopy(defs[name]), (name,))
            pending.extend(sorted(recursive - before))
        schema["$defs"] = kept
    return schema


def is_nullable(schema: dict[str, Any]) -> bool:
    if schema == {}:
        return True
    t = schema.get("type")
    if t == "null" or (isinstance(t, list) and "null" in t):
        return True
    if "enum" in schema and None in schema["enum"]:
        return True
    return any(isinstance(s, dict) and is_nullable(s) for s in schema.get("anyOf", []) + schema.get("oneOf", []))


def _make_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    t = schema.get("type")
    if isinstance(t, str) and not ({"enum", "const", "anyOf", "oneOf", "allOf", "$ref"} & schema.keys()):
        return {**schema, "type": [t, "null"]}
    description = schema.get("description")
    inner = {k: v for k, v in schema.items() if k != "description"}
    out: dict[str, Any] = {"anyOf": [inner, {"type": "null"}]}
    if description:
        out["description"] = description
    return out


def _append_description(schema: dict[str, Any], note: str) -> dict[str, Any]:
    existing = (schema.get("description") or "").rstrip()
    if existing and not existing.endswith((".", "!", "?", ":")):
        existing += "."
    return {**schema, "description": f"{existing} {note}".strip()}


def _strictify(node: dict[str, Any]) -> dict[str, Any]:
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        node = {**all_of[0], **{k: v for k, v in node.items() if k != "allOf"}}
    is_object = node.get("type") == "object" or "properties" in node
    if is_object:
        if "patternProperties" in node or node.get("additionalProperties") not in (None, False):
            raise StrictSchemaError(
                "a parameter is a free-form mapping (dict), which OpenAI strict mode cannot express",
                hint="Use a pydantic model with fixed fields for it, or request the spec with strict=False.",
            )
        props: dict[str, Any] = node.get("properties", {})
        required = set(node.get("required", []))
        new_props: dict[str, Any] = {}
        for key, prop in props.items():
            if key not in required:
                has_default = "default" in prop
                default = json.dumps(prop.get("default"), ensure_ascii=False)
                if is_nullable(prop):
                    note = f"Default: {default}." if has_default else ""
                else:
                    prop = _make_nullable(prop)
                    note = f"Default: {default}; send null to use it." if has_default else "Optional; send null to omit it."
                if note:
                    prop = _append_description(prop, note)
            new_props[key] = {k: v for k, v in prop.items() if k != "default"}
        node = {**node, "properties": new_props, "required": list(new_props), "additionalProperties": False}
        node.setdefault("type", "object")
    return node


def _drop_default(node: dict[str, Any]) -> dict[str, Any]:
    node.pop("default", None)
    return node


def to_strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Transform a plain schema into one OpenAI strict mode accepts (see module docstring)."""
    # defaults are read by the parent object's pass (bottom-up), so remove them only afterwards
    return _map_subschemas(_map_subschemas(copy.deepcopy(schema), _strictify), _drop_default)


# --- human-readable descriptions (for error messages) --------------------------------------------


def describe_schema(schema: Any) -> str:
    """A short phrase such as ``integer >= 1`` or ``one of "a", "b"``, for validation feedback."""
    if not isinstance(schema, dict) or not schema:
        return "any value"
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    if "const" in schema:
        return "exactly " + json.dumps(schema["const"], ensure_ascii=False)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            parts = [describe_schema(s) for s in schema[key]]
            return " or ".join(dict.fromkeys(parts))
    if "$ref" in schema:
        return "object (" + str(schema["$ref"]).rsplit("/", 1)[-1] + ")"
    t = schema.get("type")
    if isinstance(t, list):
        return " or ".join(describe_schema({**schema, "type": one}) for one in t)
    text = str(t) if t else "value"
    if t == "array":
        text = "array of " + describe_schema(schema.get("items", {}))
    elif t == "object" and isinstance(schema.get("properties"), dict):
        required = set(schema.get("required", []))
        fields = [f"{k}{'' if k in required else '?'}: {describe_schema(v)}" for k, v in schema["properties"].items()]
        text = "object {" + ", ".join(fields) + "}"
    bounds = [
        (">=", schema.get("minimum")), ("<=", schema.get("maximum")),
        (">", schema.get("exclusiveMinimum")), ("<", schema.get("exclusiveMaximum")),
    ]
    text += "".join(f" {op} {value}" for op, value in bounds if value is not None)
    if schema.get("minLength") is not None or schema.get("maxLength") is not None:
        text += f" (length {schema.get('minLength', 0)}..{schema.get('maxLength', '')})"
    if schema.get("minItems") is not None or schema.get("maxItems") is not None:
        text += f" ({schema.get('minItems', 0)}..{schema.get('maxItems', '')} items)"
    if schema.get("pattern"):
        text += f" matching /{schema['pattern']}/"
    if schema.get("format"):
        text += f" ({schema['format']})"
    return text
