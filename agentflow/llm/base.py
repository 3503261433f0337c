"""The ``ChatModel`` protocol every backend implements.

Orchestration code depends only on this protocol, so a worker runs unchanged against a vLLM
server, OpenAI, an in-process engine or a ``ScriptedModel`` in tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Protocol, runtime_checkable

from agentflow.llm.types import ChatRequest, ChatResponse, StreamDone, StreamEvent, TextDelta, ToolCallDelta


@runtime_checkable
class ChatModel(Protocol):
    """An async chat-completion backend."""

    #: the model name reported in usage records and events
    name: str

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Return all ``request.n`` choices at once."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Yield text and tool-call deltas as they arrive, then one ``StreamDone``."""
        ...


async def stream_from_complete(model: ChatModel, request: ChatRequest) -> AsyncIterator[StreamEvent]:
    """A faithful stream for backends that only complete: the deltas of one finished response.

    Used by backends without incremental output so callers can always consume ``stream()``.
    """
    response = await model.complete(request)
    for event in response_events(response):
        yield event


def response_events(response: ChatResponse) -> Iterator[StreamEvent]:
    """The stream events of a finished response: each choice's text and tool-call deltas, then ``StreamDone``.

    Every stream that replays a completed response (``stream_from_complete``, a backend's
    non-streaming fallback) emits this one sequence, so consumers see the same events either way.
    """
    for choice in response.choices:
        if choice.text:
            yield TextDelta(index=choice.index, text=choice.text)
        for i, call in enumerate(choice.tool_calls):
            yield ToolCallDelta(index=choice.index, call_index=i, id=call.id, name=call.name,
                                arguments=call.raw_arguments)
    yield StreamDone(response=response)


async def collect_stream(stream: AsyncIterator[StreamEvent]) -> ChatResponse:
    """Drain a stream and return its final aggregated response."""
    final: ChatResponse | None = None
    async for event in stream:
        if isinstance(event, StreamDone):
            final = event.response
    if final is None:
        raise RuntimeError("stream ended without a StreamDone event")
    return final
