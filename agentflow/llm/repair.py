"""Repair of almost-right model output: near-JSON and tool calls leaked into the text.

Small and local models often get the *intent* right and the *format* wrong: a tool call written
into the content as a hermes ``<tool_call>`` block or a fenced JSON object because the server ran
without a tool parser, arguments with a trailing comma or single quotes, JSON cut off by
``max_tokens``. Discarding such output wastes a model call; crashing on it aborts a run. These
functions recover what can be recovered and always say what they did, so the repair is visible
in ``Choice.repairs`` / ``ToolCall.repaired`` and never silent.

Recovered tool calls are only accepted when their name matches a tool offered in the request:
JSON that merely *looks* like a call (an answer about functions, a data record with a ``name``
key) must stay text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import json_repair

from agentflow.llm.types import ToolCall

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)```", re.DOTALL)
_OPEN_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*)\Z", re.DOTALL)
_HERMES_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_MISTRAL_PREFIX = "[TOOL_CALLS]"

_NAME_KEYS = ("name", "tool_name", "tool", "function")
_ARGS_KEYS = ("arguments", "parameters", "args", "input", "tool_input")


@dataclass
class JsonParse:
    """Outcome of a lenient JSON parse."""

    ok: bool
    value: Any = None
    #: why parsing failed (``ok`` is False)
    error: str | None = None
    #: what was done to make it parse; ``None`` when the text was valid JSON as is
    repair: str | None = None
    #: the text was cut off mid-JSON and had to be completed (the value is a guess at best)
    truncated: bool = False


def strip_code_fence(text: str) -> str | None:
    """The body of the first fenced code block in ``text`` (also an unterminated one), else None."""
    match = _FENCE_RE.search(text) or _OPEN_FENCE_RE.search(text)
    return match.group(2).strip() if match else None


def _looks_truncated(text: str) -> bool:
    """Whether brackets or a string are still open at the end (output cut off mid-JSON)."""
    depth = 0
    in_string = False
    escaped = False
    quote = ""
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                in_string = False
        elif ch in "\"'":
            in_string, quote = True, ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return in_string or depth > 0


def parse_json_lenient(text: str | None) -> JsonParse:
    """Parse JSON that a model wrote, repairing fences, trailing commas, quotes and truncation.

    The repaired value is only a best guess; callers validate it against the schema they need.
    """
    if text is None or not text.strip():
        return JsonParse(ok=False, error="the output is empty; a JSON value was expected")
    stripped = text.strip()
    try:
        return JsonParse(ok=True, value=json.loads(stripped))
    except ValueError as exc:
        first_error = exc

    fenced = strip_code_fence(stripped)
    if fenced:
        try:
            return JsonParse(ok=True, value=json.loads(fenced), repair="removed markdown code fence around JSON")
        except ValueError:
            pass
    candidate = fenced or stripped
    try:
        value = json_repair.repair_json(candidate, return_objects=True)
    except Exception as exc:  # json_repair is best-effort; never let it crash a run
        return JsonParse(ok=False, error=f"the output is not valid JSON ({first_error}); repair failed: {exc}")
    if value == "" and candidate.strip() not in ('""', "''"):
        return JsonParse(ok=False, error=f"the output is not valid JSON: {first_error}")
    truncated = _looks_truncated(candidate)
    what = "completed truncated JSON" if truncated else "repaired malformed JSON"
    if fenced:
        what += " inside a markdown code fence"
    return JsonParse(ok=True, value=value, repair=f"{what} (json_repair; original error: {first_error})",
                     truncated=truncated)


CUT_OFF = ("the tool call was cut off before its JSON was complete (the output probably hit max_tokens); "
           "its arguments are not used")


@dataclass
class ArgumentsParse:
    arguments: dict[str, Any] | None
    error: str | None = None
    repair: str | None = None


def parse_tool_arguments(raw: str | dict[str, Any] | None) -> ArgumentsParse:
    """Turn a tool call's raw ``arguments`` into a dict; explain failure instead of raising.

    Arguments cut off mid-JSON are *not* completed: a guessed end of a path or a command is worse
    than asking again, since tools have side effects.
    """
    if raw is None:
        return ArgumentsParse(arguments={})
    if isinstance(raw, dict):
        return ArgumentsParse(arguments=raw)
    if not raw.strip():
        return ArgumentsParse(arguments={})
    parsed = parse_json_lenient(raw)
    if not parsed.ok:
        return ArgumentsParse(arguments=None, error=f"tool arguments are not valid JSON: {parsed.error}")
    if parsed.truncated:
        return ArgumentsParse(arguments=None, error=CUT_OFF)
    value, repair = parsed.value, parsed.repair
    if isinstance(value, str):
        # arguments JSON-encoded twice ('"{\"x\": 1}"'): common with small models
        inner = parse_json_lenient(value)
        if inner.ok and isinstance(inner.value, dict):
            value = inner.value
            repair = "decoded arguments that were JSON-encoded twice" + (f"; {inner.repair}" if inner.repair else "")
    if not isinstance(value, dict):
        return ArgumentsParse(
            arguments=None,
            error=f"tool arguments must be a JSON object, got {type(value).__name__}: {raw[:200]!r}",
        )
    return ArgumentsParse(arguments=value, repair=repair)


def tool_call_from_object(obj: Any, tool_names: Collection[str]) -> tuple[ToolCall, list[str]] | None:
    """Interpret a JSON value as a tool call ``{"name": ..., "arguments": {...}}`` and variants.

    Accepts ``parameters``/``args``/``input`` for the arguments, an OpenAI-style nested
    ``{"function": {...}}``, and arguments given as a JSON string. Returns the call and notes on
    what had to be normalized, or None when ``obj`` is not a call to one of ``tool_names``.
    """
    if not isinstance(obj, dict):
        return None
    notes: list[str] = []
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is None or name not in tool_names:
        return None
    args_key = next((k for k in _ARGS_KEYS if k in obj), None)
    if args_key is None:
        other = set(obj) - {"name", "type", "id", "tool_name", "tool", "function"}
        if other:
            return None  # a record that happens to have a "name", not a call
        raw: Any = {}
    else:
        raw = obj[args_key]
        if args_key != "arguments":
            notes.append(f'arguments given as "{args_key}"')
    if isinstance(raw, str):
        notes.append("arguments given as a JSON string")
        parsed = parse_tool_arguments(raw)
        if parsed.repair:
            notes.append(parsed.repair)
        call = ToolCall(name=name, arguments=parsed.arguments, raw_arguments=raw, parse_error=parsed.error)
        return call, notes
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        call = ToolCall(name=name, arguments=None, raw_arguments=json.dumps(raw, ensure_ascii=False),
                        parse_error=f"tool arguments must be a JSON object, got {type(raw).__name__}")
        return call, notes
    return ToolCall(name=name, arguments=raw), notes


def _calls_from_value(value: Any, tool_names: Collection[str]) -> list[tuple[ToolCall, list[str]]] | None:
    items = value if isinstance(value, list) else [value]
    out = [tool_call_from_object(item, tool_names) for item in items]
    if not out or any(c is None for c in out):
        return None
    return [c for c in out if c is not None]


@dataclass
class LeakedCalls:
    """Tool calls recovered from message content, and the prose left around them."""

    calls: list[ToolCall]
    #: content with the recovered calls removed; None when nothing but the calls was written
    remaining_text: str | None
    #: one line per recovered format, for ``Choice.repairs``
    notes: list[str] = field(default_factory=list)


def _finish(content: str, spans: list[tuple[int, int]], found: list[tuple[ToolCall, list[str]]],
            what: str) -> LeakedCalls:
    pieces, last = [], 0
    for start, end in sorted(spans):
        pieces.append(content[last:start])
        last = end
    pieces.append(content[last:])
    remaining = "".join(pieces).strip() or None
    calls: list[ToolCall] = []
    extra: list[str] = []
    for call, notes in found:
        label = what + (f" ({'; '.join(notes)})" if notes else "")
        call.repaired = label
        calls.append(call)
        extra.extend(n for n in notes if n not in extra)
    names = ", ".join(c.name for c in calls)
    note = f"recovered {len(calls)} tool call(s) [{names}] from {what}"
    if extra:
        note += f" ({'; '.join(extra)})"
    return LeakedCalls(calls=calls, remaining_text=remaining, notes=[note])


def extract_leaked_tool_calls(content: str | None, tool_names: Collection[str]) -> LeakedCalls | None:
    """Find tool calls a model wrote into its text instead of the ``tool_calls`` field.

    Formats, in order of how unambiguous they are: hermes ``<tool_call>`` blocks (also an
    unterminated last block), Mistral's ``[TOOL_CALLS]`` prefix, fenced JSON, and a bare JSON
    object (or list of objects) anywhere in the text. Only calls whose name is in
    ``tool_names`` are recovered; when any candidate in a format names an unknown tool, that
    format is not used, so text about functions is not mistaken for a call.
    """
    if not content or not tool_names:
        return None

    if "<tool_call>" in content:
        spans: list[tuple[int, int]] = []
        found: list[tuple[ToolCall, list[str]]] = []
        for match in _HERMES_RE.finditer(content):
            parsed = parse_json_lenient(match.group(1))
            calls = _calls_from_value(parsed.value, tool_names) if parsed.ok else None
            if calls is None:
                found = []
                break
            if parsed.truncated:
                _mark_cut_off(calls, match.group(1))
            elif parsed.repair:
                for _, notes in calls:
                    notes.append(parsed.repair)
            found.extend(calls)
            spans.append(match.span())
        if found:
            return _finish(content, spans, found, "<tool_call> block in content")

    stripped = content.strip()
    if stripped.startswith(_MISTRAL_PREFIX):
        parsed = parse_json_lenient(stripped[len(_MISTRAL_PREFIX):])
        calls = _calls_from_value(parsed.value, tool_names) if parsed.ok else None
        if calls:
            return _finish(content, [(0, len(content))], calls, "[TOOL_CALLS] text in content")

    fence_spans: list[tuple[int, int]] = []
    fence_found: list[tuple[ToolCall, list[str]]] = []
    for match in _FENCE_RE.finditer(content):
        parsed = parse_json_lenient(match.group(2))
        calls = _calls_from_value(parsed.value, tool_names) if parsed.ok else None
        if calls:
            fence_found.extend(calls)
            fence_spans.append(match.span())
    if fence_found:
        return _finish(content, fence_spans, fence_found, "fenced JSON in content")

    return _extract_bare(content, tool_names)


def _extract_bare(content: str, tool_names: Collection[str]) -> LeakedCalls | None:
    decoder = json.JSONDecoder()
    spans: list[tuple[int, int]] = []
    found: list[tuple[ToolCall, list[str]]] = []
    pos = 0
    while True:
        starts = [i for i in (content.find("{", pos), content.find("[", pos)) if i >= 0]
        if not starts:
            break
        start = min(starts)
        try:
            value, end = decoder.raw_decode(content, start)
        except ValueError:
            pos = start + 1
            continue
        calls = _calls_from_value(value, tool_names)
        if calls:
            found.extend(calls)
            spans.append((start, end))
        pos = end
    if found:
        return _finish(content, spans, found, "JSON object in content")
    # A single call cut off by max_tokens: the whole content is one truncated object.
    stripped = content.strip()
    if stripped.startswith("{") and _looks_truncated(stripped):
        parsed = parse_json_lenient(stripped)
        calls = _calls_from_value(parsed.value, tool_names) if parsed.ok else None
        if calls:
            _mark_cut_off(calls, stripped)
            return _finish(content, [(0, len(content))], calls, "truncated JSON object in content")
    return None


def _mark_cut_off(calls: list[tuple[ToolCall, list[str]]], raw: str) -> None:
    for call, notes in calls:
        call.arguments = None
        call.raw_arguments = raw
        call.parse_error = CUT_OFF
        notes.append("cut off")


def render_tool_calls_as_text(calls: list[ToolCall]) -> str:
    """Hermes-style text for tool calls, for prompts sent to servers without native tool calling."""
    blocks = []
    for call in calls:
        args: Any = call.arguments if call.arguments is not None else call.raw_arguments
        blocks.append("<tool_call>\n" + json.dumps({"name": call.name, "arguments": args}, ensure_ascii=False)
                      + "\n</tool_call>")
    return "\n".join(blocks)
