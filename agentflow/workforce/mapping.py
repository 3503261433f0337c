"""DecomP's ``project``/``filter``: turning an upstream result into elements and back.

Upstream results are often model text, so a "list" may arrive as JSON, as a bulleted or numbered
list, or as one comma-separated line. :func:`as_list` accepts all of these; :func:`truthy` reads a
filter child's yes/no answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

import json_repair

_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|\(\d+\))\s+")
_TRUE = {"yes", "true", "y", "1", "keep", "include", "included", "pass", "passes", "correct"}
_FALSE = {"no", "false", "n", "0", "drop", "exclude", "excluded", "fail", "fails", "incorrect", "none"}


def _unwrap(value: Any) -> list[Any] | None:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) == 1:
            return list(lists[0])
    return None


def as_list(value: Any) -> list[Any] | None:
    """The elements of a list-valued result, or None when it holds no list at all."""
    direct = _unwrap(value)
    if direct is not None:
        return direct
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return []
    if text[0] in "[{":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = json_repair.loads(text)
        found = _unwrap(parsed)
        if found is not None:
            return found
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1:
        return [_BULLET.sub("", ln).strip() for ln in lines]
    line = _BULLET.sub("", lines[0]).strip()
    if "," in line:
        return [part.strip() for part in line.split(",") if part.strip()]
    return [line]


def truthy(value: Any) -> bool | None:
    """A filter verdict: True/False, or None when the answer is neither yes nor no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if value is None:
        return False
    text = str(value).strip().lower()
    if not text:
        return None
    word = re.split(r"[^a-z0-9]+", text, maxsplit=1)[0] or text.strip(" .!\"'")
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None
