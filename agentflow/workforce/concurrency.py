"""Per-model concurrency limits that respect the scheduler's priorities.

A server (or a rate-limited API key) only takes so many requests at once. Wrapping a model in a
:class:`LimitedModel` caps its in-flight calls; when calls queue, the one belonging to the node
with the longest remaining critical path goes first, so a limit never turns critical-path-first
scheduling into first-come-first-served.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentflow.llm.base import ChatModel
from agentflow.llm.types import ChatRequest, ChatResponse, StreamEvent


class PriorityLimiter:
    """A semaphore whose waiters are served highest priority first (FIFO among equals)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.limit = limit
        self.active = 0
        self.peak = 0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def acquire(self, priority: float = 0.0) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            self.peak = max(self.peak, self.active)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed to us just before the cancellation landed
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # hand the slot over; ``active`` stays the same
                return
        self.active -= 1


class LimitedModel:
    """A ``ChatModel`` that holds a limiter slot for the duration of each call."""

    def __init__(self, inner: ChatModel, limiter: PriorityLimiter,
                 priority_of: Callable[[ChatRequest], float] | None = None) -> None:
        self.inner = inner
        self.limiter = limiter
        self._priority_of = priority_of

    @property
    def name(self) -> str:
        return self.inner.name

    def __getattr__(self, attr: str) -> Any:  # context_window and other optional attributes
        return getattr(self.inner, attr)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await self.limiter.acquire(self._priority_of(request) if self._priority_of else 0.0)
        try:
            return await self.inner.complete(request)
        finally:
            self.limiter.release()

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        await self.limiter.acquire(self._priority_of(request) if self._priority_of else 0.0)
        try:
            async for event in self.inner.stream(request):
                yield event
        finally:
            self.limiter.release()
