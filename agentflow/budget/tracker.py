"""Budget accounting and enforcement during a run.

Before a model call the tracker *plans* it: it estimates the call's cost as an upper bound (the
prompt's tokens from its text, the generation at ``max_tokens`` per sample — the plan pins
``max_tokens`` so the bound holds) and *reserves* that amount. If the call does not fit what is
left, it degrades, in this order, and records why:

1. fewer samples of the same model, down to one;
2. the next smaller registered model (largest first), again with as many of the requested
   samples as fit.

Only when one sample of the smallest eligible model does not fit does it raise
``BudgetExceededError``. After the call, ``commit`` books the actual cost from the response's
usage and releases the reservation. Reservations are taken without awaiting in between, so
concurrent nodes can never jointly overbook: spent plus reserved never exceeds the budget.

Prompt tokens are estimated from characters. The default assumes at most one token per three
characters (true of English and code under BPE tokenizers) and the tracker learns each model's
real ratio from usage, widening the estimate whenever a prompt tokenizes worse. An actual cost
above its reservation (a worse-than-ever tokenization) is recorded as an overrun; pass an exact
``token_counter`` to rule that out.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Iterable

from pydantic import BaseModel, Field

from agentflow.budget.cost import CostModel, FlopsCost
from agentflow.budget.events import BudgetDegradedEvent, BudgetExhaustedEvent, BudgetSpentEvent, Degradation
from agentflow.budget.registry import ModelRegistry
from agentflow.errors import BudgetExceededError, ConfigurationError
from agentflow.llm.types import ChatRequest, ChatResponse
from agentflow.runs.events import Event, EventSink

log = logging.getLogger(__name__)

#: tokens a chat template adds around each message
MESSAGE_OVERHEAD_TOKENS = 4


class CallPlan(BaseModel):
    """What the tracker allows a call to be."""

    model: str
    samples: int
    max_tokens: int
    prompt_tokens: int
    estimated_cost: float
    degradation: Degradation | None = None
    #: what the prompt estimate was made from (lets the tracker learn the real token ratio)
    prompt_chars: int = 0
    messages: int = 0

    def apply(self, request: ChatRequest) -> ChatRequest:
        """The request with the plan's model, ``n`` and ``max_tokens``."""
        return request.model_copy(update={"model": self.model, "n": self.samples, "max_tokens": self.max_tokens})


class Reservation(BaseModel):
    id: int
    node_id: str | None = None
    plan: CallPlan
    open: bool = True


class SpendRecord(BaseModel):
    node_id: str | None = None
    model: str
    samples: int
    estimated_cost: float
    actual_cost: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    overrun: bool = False


class BudgetSummary(BaseModel):
    budget: float
    unit: str
    spent: float
    reserved: float
    remaining: float
    calls: int
    degradations: list[Degradation] = Field(default_factory=list)
    overruns: int = 0
    by_node: dict[str, float] = Field(default_factory=dict)
    by_model: dict[str, float] = Field(default_factory=dict)


def request_text_chars(request: ChatRequest) -> tuple[int, int]:
    """Characters of everything that becomes prompt tokens, and the number of messages."""
    chars = 0
    for m in request.messages:
        chars += len(m.content or "")
        for call in m.tool_calls or ():
            chars += len(call.name) + len(call.raw_arguments or "")
    if request.tools:
        chars += len(json.dumps([t.to_openai() for t in request.tools]))
    if request.output_schema is not None:
        chars += len(json.dumps(request.output_schema.json_schema))
    return chars, len(request.messages)


class BudgetTracker:
    """Plans, reserves and books model calls against one budget (see the module docstring)."""

    def __init__(self, budget: float, registry: ModelRegistry, cost_model: CostModel | None = None, *,
                 default_max_tokens: int = 1024, chars_per_token: float = 3.0,
                 token_counter: Callable[[ChatRequest], int] | None = None,
                 allowed_models: Iterable[str] | None = None, sink: EventSink | None = None,
                 run_id: str | None = None) -> None:
        if not budget > 0 or not math.isfinite(budget):
            raise ConfigurationError(f"budget must be a positive number, got {budget}", hint="pass --budget > 0")
        if default_max_tokens < 1:
            raise ConfigurationError("default_max_tokens must be >= 1", hint="pass a positive token cap")
        self.budget = float(budget)
        self.registry = registry
        self.cost_model: CostModel = cost_model or FlopsCost()
        self.default_max_tokens = default_max_tokens
        self.token_counter = token_counter
        self.allowed_models = set(allowed_models) if allowed_models is not None else None
        self.sink = sink
        self.run_id = run_id
        self._chars_per_token: dict[str, float] = {}
        self._default_cpt = chars_per_token
        self._ids = itertools.count(1)
        self._open: dict[int, Reservation] = {}
        self.spent = 0.0
        self.records: list[SpendRecord] = []
        self.degradations: list[Degradation] = []

    # --- state ------------------------------------------------------------------------------

    @property
    def reserved(self) -> float:
        return sum(r.plan.estimated_cost for r in self._open.values())

    @property
    def remaining(self) -> float:
        return self.budget - self.spent - self.reserved

    @property
    def overruns(self) -> int:
        return sum(r.overrun for r in self.records)

    def summary(self) -> BudgetSummary:
        by_node: dict[str, float] = {}
        by_model: dict[str, float] = {}
        for r in self.records:
            by_node[r.node_id or ""] = by_node.get(r.node_id or "", 0.0) + r.actual_cost
            by_model[r.model] = by_model.get(r.model, 0.0) + r.actual_cost
        return BudgetSummary(budget=self.budget, unit=self.cost_model.unit, spent=self.spent,
                             reserved=self.reserved, remaining=self.remaining, calls=len(self.records),
                             degradations=list(self.degradations), overruns=self.overruns,
                             by_node=by_node, by_model=by_model)

    # --- estimates --------------------------------------------------------------------------

    def prompt_tokens(self, request: ChatRequest, model: str) -> int:
        """Upper-bound estimate of the request's prompt tokens on ``model``."""
        if self.token_counter is not None:
            return int(self.token_counter(request))
        chars, messages = request_text_chars(request)
        cpt = self._chars_per_token.get(model, self._default_cpt)
        return math.ceil(chars / cpt) + MESSAGE_OVERHEAD_TOKENS * messages

    def estimate(self, model: str, request: ChatRequest, samples: int, max_tokens: int | None = None) -> float:
        """Upper bound of a call's cost: ``samples`` generations of ``max_tokens`` each."""
        cap = max_tokens or request.max_tokens or self.default_max_tokens
        spec = self.registry.get(model)
        return self.cost_model.cost(spec, self.prompt_tokens(request, model), samples * cap)

    # --- planning and reservations ----------------------------------------------------------

    def _candidates(self, model: str, among: Iterable[str] | None) -> list[str]:
        allowed = set(among) if among is not None else self.allowed_models
        smaller = [s.name for s in self.registry.smaller_than(model, among=allowed)]
        return [model, *smaller]

    def plan(self, model: str, request: ChatRequest, samples: int, *, node_id: str | None = None,
             max_tokens: int | None = None, candidates: Iterable[str] | None = None) -> CallPlan:
        """The most expensive variant of the call that fits (see the module docstring).

        ``candidates`` limits which smaller models a degradation may switch to (for example the
        models a pool can serve). Raises ``BudgetExceededError`` when nothing fits.
        """
        if samples < 1:
            raise ConfigurationError(f"samples must be >= 1, got {samples}", hint="ask for at least one sample")
        self.registry.get(model)  # unknown model: a clear ConfigurationError
        cap = max_tokens or request.max_tokens or self.default_max_tokens
        remaining = self.remaining
        requested = self.estimate(model, request, samples, cap)
        cheapest = requested
        for m in self._candidates(model, candidates):
            for s in range(samples, 0, -1):
                cost = self.estimate(m, request, s, cap)
                cheapest = min(cheapest, cost)
                if cost <= remaining + 1e-9:
                    degradation = None
                    if m != model or s != samples:
                        if m == model:
                            why = (f"{samples} samples of {model} (est. {requested:.4g}) exceed the remaining "
                                   f"{remaining:.4g} {self.cost_model.unit}; lowered to {s}")
                        else:
                            why = (f"even 1 sample of {model} exceeds the remaining {remaining:.4g} "
                                   f"{self.cost_model.unit} (asked: {samples} samples, est. {requested:.4g}); "
                                   f"switched to the smaller {m} with {s} sample{'s' if s > 1 else ''}")
                        degradation = Degradation(node_id=node_id, from_model=model, to_model=m,
                                                  from_samples=samples, to_samples=s, reason=why,
                                                  estimated_cost=cost, remaining=remaining)
                    chars, messages = request_text_chars(request)
                    return CallPlan(model=m, samples=s, max_tokens=cap,
                                    prompt_tokens=self.prompt_tokens(request, m), estimated_cost=cost,
                                    degradation=degradation, prompt_chars=chars, messages=messages)
        raise BudgetExceededError(
            f"node {node_id or '?'}: no model fits the remaining budget ({remaining:.4g} of {self.budget:.4g} "
            f"{self.cost_model.unit}); the cheapest option would cost {cheapest:.4g}",
            hint="raise the budget (--budget), lower max_tokens, or register a smaller model",
        )

    async def reserve(self, model: str, request: ChatRequest, samples: int, *, node_id: str | None = None,
                      max_tokens: int | None = None, candidates: Iterable[str] | None = None) -> Reservation:
        """Plan the call and hold its estimated cost until ``commit`` or ``release``."""
        try:
            plan = self.plan(model, request, samples, node_id=node_id, max_tokens=max_tokens, candidates=candidates)
        except BudgetExceededError:
            cap = max_tokens or request.max_tokens or self.default_max_tokens
            smallest = self._candidates(model, candidates)[-1]
            await self._emit(BudgetExhaustedEvent(node_id=node_id, model=model, samples=samples,
                                                  cheapest_cost=self.estimate(smallest, request, 1, cap),
                                                  remaining=self.remaining, budget=self.budget))
            raise
        # no await between planning and holding: concurrent reservations cannot overbook
        reservation = Reservation(id=next(self._ids), node_id=node_id, plan=plan)
        self._open[reservation.id] = reservation
        if plan.degradation is not None:
            self.degradations.append(plan.degradation)
            log.info("budget: %s", plan.degradation.reason)
            await self._emit(BudgetDegradedEvent(**plan.degradation.model_dump(exclude={"node_id"}), node_id=node_id))
        return reservation

    async def commit(self, reservation: Reservation, response: ChatResponse) -> float:
        """Book the call's actual cost (from ``response.usage``) and release its reservation."""
        if not reservation.open:
            raise ConfigurationError("reservation already closed", hint="commit or release each reservation once")
        plan = reservation.plan
        usage = response.usage
        if usage.prompt_tokens == 0 and usage.completion_tokens == 0:
            actual = plan.estimated_cost  # the server reported no usage: book the bound
        else:
            actual = self.cost_model.cost(self.registry.get(plan.model), usage.prompt_tokens,
                                          usage.completion_tokens, cached_tokens=usage.cached_tokens)
            self._learn(plan, usage.prompt_tokens)
        self._close(reservation)
        overrun = actual > plan.estimated_cost + 1e-9
        self.spent += actual
        record = SpendRecord(node_id=reservation.node_id, model=plan.model, samples=plan.samples,
                             estimated_cost=plan.estimated_cost, actual_cost=actual,
                             prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                             overrun=overrun)
        self.records.append(record)
        if overrun:
            log.warning("budget: call on %s cost %.4g, above its reservation %.4g", plan.model, actual,
                        plan.estimated_cost)
        await self._emit(BudgetSpentEvent(node_id=reservation.node_id, model=plan.model, samples=plan.samples,
                                          estimated_cost=plan.estimated_cost, actual_cost=actual, spent=self.spent,
                                          budget=self.budget, unit=self.cost_model.unit, overrun=overrun))
        return actual

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation whose call failed before producing a response."""
        if reservation.open:
            self._close(reservation)

    def _close(self, reservation: Reservation) -> None:
        reservation.open = False
        self._open.pop(reservation.id, None)

    def _learn(self, plan: CallPlan, prompt_tokens: int) -> None:
        """Tighten the model's chars-per-token assumption when a prompt tokenized worse than it
        allowed for (never loosen it: the estimate must stay an upper bound)."""
        if self.token_counter is not None or plan.prompt_chars <= 0:
            return
        text_tokens = prompt_tokens - MESSAGE_OVERHEAD_TOKENS * plan.messages
        if text_tokens <= 0:
            return
        observed = plan.prompt_chars / text_tokens
        current = self._chars_per_token.get(plan.model, self._default_cpt)
        if observed < current:
            self._chars_per_token[plan.model] = max(0.5, observed * 0.9)

    async def _emit(self, event: Event) -> None:
        if self.sink is None:
            return
        if self.run_id and event.run_id is None:
            event.run_id = self.run_id
        try:
            await self.sink(event)
        except Exception:  # an event sink's failure must not break budget enforcement
            log.exception("budget event sink failed")
