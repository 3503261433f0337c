"""Docstring parsing for tool descriptions.

A tool's docstring is the only place most authors describe their parameters, so the schema
builder reads it rather than asking for duplicate ``Field(description=...)`` annotations.
Google style is the primary format; reST (``:param x:``) and numpy (``Parameters`` + dashes)
docstrings are understood too because users bring existing functions.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

_ARG_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments",
                 "kwargs", "other parameters"}
_RETURN_SECTIONS = {"returns", "return", "yields", "yield"}
_OTHER_SECTIONS = {"raises", "raise", "except", "exceptions", "examples", "example", "note", "notes",
                   "warning", "warnings", "see also", "attributes", "todo", "references", "methods"}
_ALL_SECTIONS = _ARG_SECTIONS | _RETURN_SECTIONS | _OTHER_SECTIONS

_GOOGLE_HEADER = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_GOOGLE_ARG = re.compile(r"^\*{0,2}(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\((?P<type>[^)]*)\))?\s*:\s*(?P<desc>.*)$")
_NUMPY_ARG = re.compile(r"^\*{0,2}(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*(?P<type>.*))?$")
_REST_FIELD = re.compile(r"^:(?P<kind>param|parameter|arg|argument|key|keyword|returns?)\b\s*(?P<rest>[^:]*):\s*(?P<desc>.*)$")


@dataclass
class ParsedDocstring:
    #: summary and long description, without the parameter/returns/raises sections
    description: str = ""
    #: parameter name -> description (continuation lines joined with spaces)
    params: dict[str, str] = field(default_factory=dict)
    returns: str | None = None


def parse_docstring(doc: str | None) -> ParsedDocstring:
    """Split a docstring into description, per-parameter descriptions and the returns text."""
    if not doc or not doc.strip():
        return ParsedDocstring()
    lines = inspect.cleandoc(doc).splitlines()
    if any(_REST_FIELD.match(line.strip()) for line in lines):
        return _parse_rest(lines)
    return _parse_sections(lines)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _join(parts: list[str]) -> str:
    """Join wrapped lines into one paragraph-aware string."""
    out: list[str] = []
    for part in parts:
        part = part.strip()
        if not part:
            if out and out[-1] != "\n\n":
                out.append("\n\n")
            continue
        if out and out[-1] != "\n\n":
            out.append(" ")
        out.append(part)
    return "".join(out).strip()


def _section_name(lines: list[str], i: int) -> tuple[str | None, int]:
    """Recognize a section header at line ``i``; return (normalized name, lines consumed)."""
    line = lines[i]
    if _indent(line):
        return None, 0
    stripped = line.strip()
    # numpy: "Parameters" followed by a dashed underline
    if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()) and stripped.lower() in _ALL_SECTIONS:
        return stripped.lower(), 2
    m = _GOOGLE_HEADER.match(stripped)
    if m and m.group(1).strip().lower() in _ALL_SECTIONS:
        return m.group(1).strip().lower(), 1
    return None, 0


def _parse_sections(lines: list[str]) -> ParsedDocstring:
    description: list[str] = []
    sections: list[tuple[str, bool, list[str]]] = []  # (name, numpy_style, body lines)
    i = 0
    current: list[str] = description
    while i < len(lines):
        name, consumed = _section_name(lines, i)
        if name is not None:
            body: list[str] = []
            sections.append((name, consumed == 2, body))
            current = body
            i += consumed
            continue
        current.append(lines[i])
        i += 1

    parsed = ParsedDocstring(description=_join(description))
    for name, numpy_style, body in sections:
        if name in _ARG_SECTIONS:
            parsed.params.update(_parse_arg_block(body, numpy_style))
        elif name in _RETURN_SECTIONS and parsed.returns is None:
            text = _join(body)
            if numpy_style:
                # numpy puts the type on the first line; keep only the indented description
                rest = [line for line in body if _indent(line)]
                text = _join(rest) or text
            parsed.returns = text or None
    return parsed


def _parse_arg_block(body: list[str], numpy_style: bool) -> dict[str, str]:
    """Entries start at the block's smallest indent; deeper-indented lines continue them."""
    non_empty = [line for line in body if line.strip()]
    if not non_empty:
        return {}
    base = min(_indent(line) for line in non_empty)
    params: dict[str, str] = {}
    name: str | None = None
    parts: list[str] = []

    def flush() -> None:
        if name is not None:
            params[name] = _join(parts)

    for line in body:
        if line.strip() and _indent(line) == base:
            entry = (_NUMPY_ARG if numpy_style else _GOOGLE_ARG).match(line.strip())
            if entry:
                flush()
                name = entry.group("name")
                parts = [] if numpy_style else [entry.group("desc")]
                continue
        if name is not None:
            parts.append(line)
    flush()
    return params


def _parse_rest(lines: list[str]) -> ParsedDocstring:
    parsed = ParsedDocstring()
    description: list[str] = []
    target: list[str] | None = None
    key: tuple[str, str] | None = None
    fields: dict[tuple[str, str], list[str]] = {}
    for line in lines:
        m = _REST_FIELD.match(line.strip())
        if m:
            kind = m.group("kind")
            words = m.group("rest").split()
            if kind.startswith("return"):
                key = ("returns", "")
            else:
                key = ("param", words[-1] if words else "")
            target = fields.setdefault(key, [])
            target.append(m.group("desc"))
        elif line.strip().startswith(":"):
            target = None  # :type x: / :raises: and friends are not descriptions
        elif target is not None and line.strip():
            target.append(line)
        elif target is None:
            description.append(line)
    parsed.description = _join(description)
    for (kind, name), parts in fields.items():
        if kind == "returns":
            parsed.returns = _join(parts) or None
        elif name:
            parsed.params[name] = _join(parts)
    return parsed
