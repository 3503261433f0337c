"""``Toolkit``: the ordered set of tools a worker offers its model, and the dispatcher for its calls.

Order is kept because it is the order the model sees the tools in the prompt (and so part of what
makes a run reproducible). Names are unique: two tools with one name would make a model's call
ambiguous, so that is a definition error raised at construction time.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from agentflow.errors import ToolError
from agentflow.llm.types import ToolCall, ToolSpec
from agentflow.tools.arguments import signature_summary
from agentflow.tools.base import Tool, tool
from agentflow.tools.result import ToolResult
from agentflow.tools.schema import StrictSchemaError

logger = logging.getLogger(__name__)


class Toolkit:
    """An ordered collection of tools, addressed by name.

    Plain functions are accepted too and wrapped with ``tool()`` using its defaults.
    """

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            self.add(item)

    def add(self, item: Tool | Callable[..., Any]) -> Tool:
        """Add a tool (or wrap a function); a duplicate name raises ``ToolError``."""
        new = item if isinstance(item, Tool) else tool(item)
        if new.name in self._tools:
            raise ToolError(
                f"Duplicate tool name {new.name!r}: a model could not tell the two tools apart.",
                hint="Give one of them another name, e.g. tool(fn, name=\"...\").",
            )
        self._tools[new.name] = new
        return new

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self, strict: bool = False) -> list[ToolSpec]:
        """Specs in toolkit order.

        With ``strict=True`` a tool whose parameters cannot be strict (free-form dicts) is sent
        non-strict rather than failing the whole request; this is logged.
        """
        out: list[ToolSpec] = []
        for t in self._tools.values():
            if strict:
                try:
                    out.append(t.spec(strict=True))
                    continue
                except StrictSchemaError as exc:
                    logger.warning("sending tool %r without strict mode: %s", t.name, exc.message)
            out.append(t.spec(strict=False))
        return out

    async def execute(self, call: ToolCall) -> ToolResult:
        """Run one model tool call. Unknown tools and unparseable arguments become error results."""
        found = self._tools.get(call.name)
        if found is None:
            return ToolResult(call_id=call.id, name=call.name, content=self._unknown_message(call.name),
                              is_error=True, error_kind="unknown_tool")
        if call.parse_error is not None and call.arguments is None:
            raw = call.raw_arguments if len(call.raw_arguments) <= 300 else call.raw_arguments[:300] + "..."
            return ToolResult(
                call_id=call.id, name=call.name, is_error=True, error_kind="validation",
                content=(
                    f"Could not parse the arguments for tool '{call.name}': {call.parse_error}\n"
                    f"Received: {raw!r}\n"
                    f"Expected a JSON object with: {signature_summary(found.parameters)}.\n"
                    f"Call '{call.name}' again with valid JSON arguments."
                ),
            )
        arguments: dict[str, Any] | str | None = (
            call.arguments if call.arguments is not None else call.raw_arguments
        )
        return await found.invoke(arguments, call_id=call.id)

    def _unknown_message(self, name: str) -> str:
        available = ", ".join(self._tools) or "(none: answer without tools)"
        text = f"Unknown tool '{name}'. Available tools: {available}."
        close = difflib.get_close_matches(name, list(self._tools), n=1)
        if close:
            text += f" Did you mean '{close[0]}'?"
        return text + " Call one of them by its exact name."

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Tool):
            return self._tools.get(item.name) is item
        return item in self._tools

    def __repr__(self) -> str:
        return f"Toolkit({self.names()!r})"
