"""Turning a tool's return value into the text a model reads.

Strings pass through; pydantic models, dataclasses, dicts and lists become compact JSON (the
format models parse best); anything else falls back to ``str``. Long outputs are cut to the tool's
``max_output_chars`` with a note saying how much was cut, because a silently clipped result makes a
model reason from data it does not know is incomplete.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from pydantic import BaseModel

NO_OUTPUT = "(the tool returned no output)"


def serialize_output(value: Any) -> str:
    if value is None:
        return NO_OUTPUT
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return f"(binary data, {len(data)} bytes)"
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return pydantic_core.to_json(value, fallback=str).decode("utf-8")
    except (TypeError, ValueError, pydantic_core.PydanticSerializationError):
        return str(value)


def truncate_output(text: str, limit: int) -> tuple[str, bool]:
    """Keep the head of ``text`` so that head plus note fit in ``limit`` characters (when possible)."""
    if limit <= 0 or len(text) <= limit:
        return text, False
    total = len(text)

    def note_for(kept: int) -> str:
        return (
            f"\n[output truncated: showing the first {kept:,} of {total:,} characters; "
            f"{total - kept:,} characters cut. Ask for a narrower result if you need the rest.]"
        )

    keep = limit
    for _ in range(4):  # the note's length depends on the numbers in it; converges in a pass or two
        new_keep = max(limit - len(note_for(keep)), min(limit, 200))
        if new_keep == keep:
            break
        keep = new_keep
    return text[:keep] + note_for(keep), True
