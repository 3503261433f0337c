"""Typed events: the source of truth for what happened in a run.

Every component reports transitions as events to an async ``EventSink``. Events are pydantic
models with a ``type`` tag; ``parse_event`` turns a JSON dict back into the right class, so an
event log round-trips without loss and a run's state can be rebuilt from it. Modules add their own
event classes by subclassing ``Event`` with a unique ``type`` literal; registration is automatic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from agentflow.llm.types import CallContext, ChatRequest, ChatResponse, Latency, Usage

_REGISTRY: dict[str, type[Event]] = {}


class Event(BaseModel):
    type: str
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:16])
    #: wall-clock time (seconds since epoch) when the event was created
    ts: float = Field(default_factory=time.time)
    #: monotonic time, for ordering and overlap checks within one process
    mono: float = Field(default_factory=time.monotonic)
    run_id: str | None = None
    node_id: str | None = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        field = cls.model_fields.get("type")
        default = field.default if field is not None else None
        if isinstance(default, str) and default:
            if default in _REGISTRY and _REGISTRY[default] is not cls:
                raise TypeError(f"event type {default!r} registered twice")
            _REGISTRY[default] = cls


def parse_event(data: dict[str, Any]) -> Event:
    """Rebuild a typed event from its JSON dict (unknown types stay generic ``Event``s)."""
    cls = _REGISTRY.get(data.get("type", ""), Event)
    return cls.model_validate(data)


def event_types() -> dict[str, type[Event]]:
    return dict(_REGISTRY)


EventSink = Callable[[Event], Awaitable[None]]


class EventLog:
    """An in-memory sink that keeps events in order; also fans out to further sinks."""

    def __init__(self, *forward: EventSink) -> None:
        self.events: list[Event] = []
        self._forward = list(forward)

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        for sink in self._forward:
            await sink(event)

    def of_type(self, *types: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, types)]


async def discard(event: Event) -> None:
    """A sink that drops events (the default when nobody listens)."""
    return None


# --- model and tool events (emitted by workers, planners, critics) ------------------------------


#: ``ModelCallEvent.error`` of a call that was cancelled while in flight (it may have cost the
#: server work, so it stays in the record)
CANCELLED_CALL = "cancelled while in flight (the node or run was cancelled)"


class ModelCallEvent(Event):
    type: Literal["model_call"] = "model_call"
    context: CallContext = Field(default_factory=CallContext)
    model: str = ""
    usage: Usage = Field(default_factory=Usage)
    latency: Latency = Field(default_factory=Latency)
    n: int = 1
    attempts: int = 1
    finish_reasons: list[str | None] = Field(default_factory=list)
    error: str | None = None

    @classmethod
    def succeeded(cls, request: ChatRequest, response: ChatResponse) -> ModelCallEvent:
        """The record of a call that returned, attributed by ``request.context``."""
        ctx = request.context
        return cls(run_id=ctx.run_id, node_id=ctx.node_id, context=ctx, model=response.model,
                   usage=response.usage, latency=response.latency, n=request.n, attempts=response.attempts,
                   finish_reasons=[c.finish_reason for c in response.choices])

    @classmethod
    def failed(cls, request: ChatRequest, model_name: str, error: str) -> ModelCallEvent:
        """The record of a call that raised or was cancelled (``error`` says which)."""
        ctx = request.context
        return cls(run_id=ctx.run_id, node_id=ctx.node_id, context=ctx, model=model_name, error=error)


class ToolCallEvent(Event):
    type: Literal["tool_call"] = "tool_call"
    worker: str | None = None
    step: int = 0
    call_id: str = ""
    tool: str = ""
    arguments: dict[str, Any] | None = None
    raw_arguments: str = ""
    result: str = ""
    is_error: bool = False
    error_kind: str | None = None
    duration_s: float = 0.0


class WorkerStepEvent(Event):
    """One iteration of a worker's loop finished (a model turn and its tool calls)."""

    type: Literal["worker_step"] = "worker_step"
    worker: str | None = None
    step: int = 0
    text: str | None = None
    tool_names: list[str] = Field(default_factory=list)
    note: str | None = None


class WorkerFinishedEvent(Event):
    type: Literal["worker_finished"] = "worker_finished"
    worker: str | None = None
    failed: bool = False
    reason: str | None = None
    content: str = ""
    steps: int = 0
    usage: Usage = Field(default_factory=Usage)
