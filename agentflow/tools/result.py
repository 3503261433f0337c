"""What a tool call produced, as the model will see it.

A tool never raises into the agent loop: bad arguments, timeouts, crashes and sandbox refusals all
become a ``ToolResult`` with ``is_error`` set, so the worker can hand the problem back to the model
and let it correct itself. ``error_kind`` lets code (workers, critics, metrics) tell those cases
apart without parsing the text.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from agentflow.llm.types import Message

ErrorKind = Literal["validation", "timeout", "exception", "unknown_tool", "sandbox", "cancelled"]


class ToolResult(BaseModel):
    """The outcome of one tool call.

    ``content`` is the text sent back to the model (already serialized and truncated).
    ``error_kind`` meanings:

    - ``validation``: the arguments did not fit the tool's schema (or were not JSON at all)
    - ``timeout``: the tool exceeded its time limit
    - ``exception``: the tool's own code raised (or the code it ran failed)
    - ``unknown_tool``: the model named a tool that does not exist
    - ``sandbox``: the call tried to leave its sandbox (path escape, isolation unavailable)
    - ``cancelled``: reserved for callers that record a call abandoned by a cancelled run
      (``Tool.invoke`` itself lets cancellation propagate instead of returning a result)
    """

    call_id: str = ""
    name: str
    content: str
    is_error: bool = False
    error_kind: ErrorKind | None = None
    #: the original output was longer than the tool's ``max_output_chars`` and was cut
    truncated: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.is_error

    def to_message(self) -> Message:
        """The ``role="tool"`` message that answers the call this result belongs to."""
        return Message.tool(self.call_id, self.content, name=self.name)


class ToolFailure(Exception):
    """Raise from a tool function to report an *expected* failure in the model's terms.

    Unlike an arbitrary exception (reported as ``Tool 'x' raised ValueError: ...``), the message is
    passed to the model verbatim with the given ``kind``; use it for "that expression is not
    allowed" style feedback that tells the model how to call the tool correctly.
    """

    def __init__(self, message: str, *, kind: ErrorKind = "exception") -> None:
        super().__init__(message)
        self.message = message
        self.kind: ErrorKind = kind
