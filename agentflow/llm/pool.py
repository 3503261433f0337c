"""``EndpointPool``: one ``ChatModel`` over several endpoints serving the same model.

Several vLLM replicas (one per GPU, or per machine) give throughput and resilience only if the
client spreads requests and routes around failures. The pool sends each request to the member
with the fewest requests in flight (ties rotate), and when a member fails with a *retryable*
error (unreachable, timeout, 5xx, 429 after its own retries) it marks the member unhealthy for a
cooldown and fails the request over to the next one. After the cooldown the member takes traffic
again (half-open); each further failure doubles its cooldown up to ``max_cooldown_s``. Errors
that would fail anywhere (a 400, context length, authentication) are raised at once.

Members do their own transport retries before the pool sees an error, so for fast failover give
them a small retry budget, e.g. ``OpenAICompatModel(url, max_retries=1)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from agentflow.errors import ConfigurationError, ModelError
from agentflow.llm.base import ChatModel
from agentflow.llm.types import ChatRequest, ChatResponse, StreamDone, StreamEvent
from agentflow.llm.usage import UsageLedger

logger = logging.getLogger(__name__)


@dataclass
class EndpointState:
    """Routing state of one pool member (read it for dashboards and tests)."""

    model: ChatModel
    label: str
    outstanding: int = 0
    #: consecutive retryable failures
    failures: int = 0
    unhealthy_until: float = 0.0
    last_error: str | None = None
    served: int = 0

    def healthy(self, now: float) -> bool:
        return now >= self.unhealthy_until


class EndpointPool:
    """A ``ChatModel`` that load-balances and fails over between equivalent endpoints.

    Args:
        models: the members, usually ``OpenAICompatModel``s for the same model name.
        cooldown_s: how long a failed member is avoided before it is tried again.
        max_cooldown_s: cap for the doubling cooldown of a member that keeps failing.
        ledger: records each successful call (give the ledger to the pool *or* to the members,
            not both, or calls are counted twice).
        name: model name reported by the pool (default: the first member's).
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        models: Sequence[ChatModel],
        *,
        cooldown_s: float = 10.0,
        max_cooldown_s: float = 120.0,
        ledger: UsageLedger | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not models:
            raise ConfigurationError("EndpointPool needs at least one model", hint="pass a list of ChatModel endpoints")
        if cooldown_s < 0 or max_cooldown_s < cooldown_s:
            raise ConfigurationError(
                f"invalid cooldowns: cooldown_s={cooldown_s}, max_cooldown_s={max_cooldown_s}",
                hint="use 0 <= cooldown_s <= max_cooldown_s",
            )
        self.endpoints = [EndpointState(model=m, label=_label(m, i)) for i, m in enumerate(models)]
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.ledger = ledger
        self._name = name
        self._clock = clock
        self._turn = 0

    @property
    def name(self) -> str:
        return self._name or self.endpoints[0].model.name

    def __repr__(self) -> str:
        return f"EndpointPool({[e.label for e in self.endpoints]!r})"

    def _order(self) -> list[EndpointState]:
        """Healthy members by fewest in flight (ties rotate), then cooled-down ones soonest first."""
        now = self._clock()
        count = len(self.endpoints)
        turn = self._turn
        self._turn = (turn + 1) % count
        healthy = [(e.outstanding, (i - turn) % count, e) for i, e in enumerate(self.endpoints) if e.healthy(now)]
        sick = [(e.unhealthy_until, i, e) for i, e in enumerate(self.endpoints) if not e.healthy(now)]
        return [e for *_, e in sorted(healthy, key=lambda t: t[:2])] + [e for *_, e in sorted(sick, key=lambda t: t[:2])]

    def _failed(self, endpoint: EndpointState, error: ModelError) -> None:
        endpoint.failures += 1
        cooldown = min(self.max_cooldown_s, self.cooldown_s * 2 ** (endpoint.failures - 1))
        endpoint.unhealthy_until = self._clock() + cooldown
        endpoint.last_error = error.message
        logger.warning("endpoint %s failed (%s); avoiding it for %.1fs", endpoint.label, error.message, cooldown)

    def _fail_over(self, endpoint: EndpointState, error: ModelError) -> int:
        """Mark ``endpoint`` after an error worth trying the next member for; return the attempts it used.

        A non-retryable error (bad request, authentication) would fail on every member alike, so it
        is raised instead. ``complete`` and ``stream`` share this so they fail over by the same rule.
        """
        if not error.retryable:
            raise error
        self._failed(endpoint, error)
        return getattr(error, "attempts", 1)

    def _succeeded(self, endpoint: EndpointState) -> None:
        if endpoint.failures:
            logger.info("endpoint %s is answering again", endpoint.label)
        endpoint.failures = 0
        endpoint.unhealthy_until = 0.0
        endpoint.last_error = None
        endpoint.served += 1

    def _finish(self, endpoint: EndpointState, request: ChatRequest, response: ChatResponse,
                failed_attempts: int) -> ChatResponse:
        self._succeeded(endpoint)
        if response.endpoint is None:
            response.endpoint = endpoint.label
        response.attempts += failed_attempts
        if self.ledger is not None:
            self.ledger.record(request, response)
        return response

    async def complete(self, request: ChatRequest) -> ChatResponse:
        last: ModelError | None = None
        failed_attempts = 0
        for endpoint in self._order():
            endpoint.outstanding += 1
            try:
                response = await endpoint.model.complete(request)
            except ModelError as err:
                failed_attempts += self._fail_over(endpoint, err)
                last = err
                continue
            finally:
                endpoint.outstanding -= 1
            return self._finish(endpoint, request, response, failed_attempts)
        assert last is not None
        last.attempts = failed_attempts  # type: ignore[attr-defined]
        raise last

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Stream from the best member; fail over only before the first event arrived."""
        last: ModelError | None = None
        failed_attempts = 0
        for endpoint in self._order():
            endpoint.outstanding += 1
            events = endpoint.model.stream(request)
            try:
                try:
                    first = await events.__anext__()
                except StopAsyncIteration:
                    return
                except ModelError as err:
                    failed_attempts += self._fail_over(endpoint, err)
                    last = err
                    continue
                event: StreamEvent | None = first
                while event is not None:
                    if isinstance(event, StreamDone):
                        self._finish(endpoint, request, event.response, failed_attempts)
                    yield event
                    try:
                        event = await events.__anext__()
                    except StopAsyncIteration:
                        event = None
                return
            except ModelError as err:
                if err.retryable:
                    self._failed(endpoint, err)
                raise
            finally:
                endpoint.outstanding -= 1
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
        assert last is not None
        last.attempts = failed_attempts  # type: ignore[attr-defined]
        raise last

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            close = getattr(endpoint.model, "aclose", None)
            if close is not None:
                await close()


def _label(model: ChatModel, index: int) -> str:
    url = getattr(model, "base_url", None)
    return str(url) if url else f"{model.name}#{index}"
