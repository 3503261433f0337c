"""What a node sees: only its dependencies' results, shortened when long.

Keeping a node's prompt to its inputs (never the whole run history) is what keeps prompts small
and parallel branches independent. A long result is cut to its head and tail with a marker that
names the node whose full result is kept in the run record, so neither the model nor a reader
mistakes a shortened text for the whole.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from agentflow.workforce.plan import ITEM_PLACEHOLDER, PLACEHOLDER

#: results up to this many characters (on one line) are substituted into a goal's ``{id}`` verbatim
INLINE_LIMIT = 200


def as_text(value: Any) -> str:
    """A result value as prompt text: strings verbatim, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def shorten(text: str, limit: int, ref: str) -> str:
    """Head and tail of ``text`` within ``limit`` characters, with a marker naming the full result."""
    if limit <= 0 or len(text) <= limit:
        return text
    head = int(limit * 0.7)
    tail = max(0, limit - head)
    omitted = len(text) - head - tail
    marker = (f"\n[... {omitted} characters omitted; the full result of '{ref}' "
              f"({len(text)} characters) is kept in the run record ...]\n")
    return text[:head] + marker + (text[-tail:] if tail else "")


def render_goal(goal: str, results: Mapping[str, str], item: Any = None, *, has_item: bool = False) -> str:
    """Substitute ``{id}`` placeholders with short results and ``{item}`` with the map element.

    Long or multi-line results are referred to instead of pasted, since the context block below
    the goal carries them; unknown placeholders are left as written (goals may contain braces).
    """

    def _sub(match: Any) -> str:
        name = match.group(1)
        if name == ITEM_PLACEHOLDER and has_item:
            return as_text(item)
        if name in results:
            text = results[name].strip()
            if len(text) <= INLINE_LIMIT and "\n" not in text:
                return text
            return f"(the result of task '{name}', given in the context)"
        return match.group(0)

    rendered = PLACEHOLDER.sub(_sub, goal)
    if has_item and "{" + ITEM_PLACEHOLDER + "}" not in goal:
        rendered += f"\n\nApply this to the item: {as_text(item)}"
    return rendered


def build_context(
    deps: Sequence[tuple[str, str, str]],
    *,
    max_chars_per_input: int = 4000,
    extra: str | None = None,
) -> str | None:
    """The context block for a node from ``(node_id, goal, result)`` triples of its dependencies."""
    if not deps and not extra:
        return None
    parts: list[str] = []
    if extra:
        parts.append(extra.strip())
    for node_id, goal, result in deps:
        title = goal.strip().splitlines()[0] if goal.strip() else ""
        if len(title) > 160:
            title = title[:157] + "..."
        parts.append(f"## Result of task '{node_id}' ({title})\n{shorten(result, max_chars_per_input, node_id)}")
    return "\n\n".join(parts)
