"""Usage accounting: every model call's tokens and latency, attributable to run, node and role."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from pydantic import BaseModel, Field

from agentflow.llm.types import CallContext, ChatRequest, ChatResponse, Latency, Usage


class UsageRecord(BaseModel):
    context: CallContext
    model: str
    usage: Usage
    latency: Latency
    n: int = 1
    endpoint: str | None = None
    timestamp: float = Field(default_factory=time.time)


class UsageLedger:
    """Collects ``UsageRecord``s and answers totals by any attribution key.

    A ledger is passed in (never global) so that concurrent runs keep separate books. Listeners
    let the event log or a budget tracker see each record as it is made.
    """

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self._listeners: list[Callable[[UsageRecord], None]] = []

    def subscribe(self, listener: Callable[[UsageRecord], None]) -> None:
        self._listeners.append(listener)

    def record(self, request: ChatRequest, response: ChatResponse) -> UsageRecord:
        rec = UsageRecord(
            context=request.context,
            model=response.model,
            usage=response.usage,
            latency=response.latency,
            n=request.n,
            endpoint=response.endpoint,
        )
        self.records.append(rec)
        for listener in self._listeners:
            listener(rec)
        return rec

    def total(self) -> Usage:
        out = Usage()
        for rec in self.records:
            out = out + rec.usage
        return out

    def by(self, key: str) -> dict[str | None, Usage]:
        """Totals grouped by a ``CallContext`` field (``run_id``, ``node_id``, ``role``) or ``model``."""
        groups: dict[str | None, Usage] = defaultdict(Usage)
        for rec in self.records:
            k = rec.model if key == "model" else getattr(rec.context, key)
            groups[k] = groups[k] + rec.usage
        return dict(groups)

    def calls(self) -> int:
        return len(self.records)
