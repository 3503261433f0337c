"""Applying an allocation at run time: sample S times in one request, aggregate, stay in budget.

``sample_and_aggregate`` is the unit the workforce calls for a node: it asks the tracker for a
plan (possibly degraded), sends *one* request with ``n=S`` — vLLM prefills the prompt once for
all samples — tops up if a server returned fewer choices than asked, and combines the samples by
majority vote, best-of-N or an LLM fuse step. Critic and fuse calls are budgeted too; when one
does not fit or fails, the result falls back to the vote and says why.

``BudgetedModel`` wraps a ``ChatModel`` so that every call a worker makes goes through
``sample_and_aggregate`` with the node's allocation: the worker's tool-calling loop runs
unchanged, each of its model turns sampled and aggregated (samples that call tools vote by their
calls) and paid for from the shared budget.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from agentflow.budget.aggregate import (
    Scorer,
    Selection,
    best_of_n,
    choice_key,
    critic_request,
    fuse_request,
    majority_vote,
    normalize_answer,
    parse_critic_scores,
)
from agentflow.budget.allocator import Allocation
from agentflow.budget.tracker import BudgetTracker, Degradation, Reservation
from agentflow.errors import BudgetExceededError, ModelError
from agentflow.llm.base import ChatModel, stream_from_complete
from agentflow.llm.types import ChatRequest, ChatResponse, Choice, Latency, StreamEvent, Usage

log = logging.getLogger(__name__)

Method = Literal["vote", "best_of_n", "fuse"]


class AggregationDetails(BaseModel):
    """How a node's answer was produced (recorded with the node's result)."""

    method_requested: Method
    method_used: Literal["single", "vote", "best_of_n", "fuse"]
    model: str
    samples_requested: int
    samples_planned: int
    samples_received: int
    chosen_index: int | None = None
    chosen: Choice | None = None
    #: normalized answer -> votes
    votes: dict[str, int] = Field(default_factory=dict)
    agreement: float | None = None
    scores: list[float | None] = Field(default_factory=list)
    #: why the requested method was not used, or why fewer samples arrived
    notes: list[str] = Field(default_factory=list)
    degradations: list[Degradation] = Field(default_factory=list)
    #: the budget's unit spent by this node's calls (sampling plus critic/fuse)
    cost: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    model_calls: int = 0


async def _budgeted_call(backend: ChatModel, request: ChatRequest, *, tracker: BudgetTracker | None,
                         model_name: str, samples: int, node_id: str | None, candidates: Sequence[str] | None,
                         resolve: Callable[[str], ChatModel | None] | None = None,
                         ) -> tuple[ChatResponse, Reservation | None, ChatModel, float]:
    """Reserve (maybe degraded), call the backend of the planned model, commit; returns the
    response, the reservation, the backend used and the booked cost."""
    reservation: Reservation | None = None
    if tracker is not None:
        reservation = await tracker.reserve(model_name, request, samples, node_id=node_id, candidates=candidates)
        request = reservation.plan.apply(request)
        if reservation.plan.model != model_name and resolve is not None:
            backend = resolve(reservation.plan.model) or backend
    else:
        request = request.model_copy(update={"n": samples})
    try:
        response = await backend.complete(request)
    except BaseException:
        if tracker is not None and reservation is not None:
            tracker.release(reservation)
        raise
    cost = 0.0
    if tracker is not None and reservation is not None:
        cost = await tracker.commit(reservation, response)
    return response, reservation, backend, cost


async def sample_and_aggregate(
    model: ChatModel,
    request: ChatRequest,
    samples: int,
    method: Method = "vote",
    *,
    tracker: BudgetTracker | None = None,
    model_name: str | None = None,
    resolve: Callable[[str], ChatModel | None] | None = None,
    candidates: Sequence[str] | None = None,
    scorer: Scorer | None = None,
    critic: ChatModel | None = None,
    fuse_model: ChatModel | None = None,
    normalize: Callable[[str | None], str] = normalize_answer,
    top_up: bool = True,
) -> tuple[str, AggregationDetails]:
    """Draw ``samples`` answers to ``request`` in one call and combine them by ``method``.

    Args:
        model: the backend for the allocated model.
        model_name: the allocated model's registry name (default ``request.model`` or ``model.name``).
        resolve: maps a registry name to a backend, used when the tracker degrades to a smaller
            model; without it the same backend is called with ``request.model`` set to that name
            (right for a pool or a server that serves several models).
        candidates: registry names a degradation may switch to (default: all smaller ones).
        scorer: for ``best_of_n``, a callable scoring one answer; else ``critic`` judges them.
        fuse_model: for ``fuse``, the model that writes the fused answer (default ``model``).

    Returns the chosen text and the details; ``details.chosen`` is the full chosen choice (its
    tool calls or parsed structured output included).

    Raises ``BudgetExceededError`` only when not even one sample of the smallest eligible model
    fits the remaining budget; model errors of the sampling call propagate unchanged.
    """
    if samples < 1:
        raise ValueError("samples must be >= 1")
    name = model_name or request.model or model.name
    node_id = request.context.node_id
    details = AggregationDetails(method_requested=method, method_used="single", model=name,
                                 samples_requested=samples, samples_planned=samples, samples_received=0)

    async def call(backend: ChatModel, req: ChatRequest, m: str, n: int, *,
                   fixed: bool = False) -> tuple[ChatResponse, str, int, ChatModel]:
        """One budgeted call; ``fixed`` calls (critic, fuse) may lower nothing but fail to fit."""
        response, reservation, used, cost = await _budgeted_call(
            backend, req, tracker=tracker, model_name=m, samples=n, node_id=node_id,
            candidates=[] if fixed else candidates, resolve=None if fixed else resolve)
        details.model_calls += 1
        details.usage = details.usage + response.usage
        details.latency_s += response.latency.total_s
        details.cost += cost
        if reservation is not None and reservation.plan.degradation is not None:
            details.degradations.append(reservation.plan.degradation)
        planned_model = reservation.plan.model if reservation else m
        planned_n = reservation.plan.samples if reservation else n
        return response, planned_model, planned_n, used

    def charged_as(role_model: ChatModel, fallback: str) -> str:
        # a critic or fuse model missing from the registry is charged as the sampled model
        return role_model.name if tracker is not None and role_model.name in tracker.registry else fallback

    response, planned_model, planned_n, backend = await call(model, request, name, samples)
    details.model = planned_model
    details.samples_planned = planned_n
    choices = list(response.choices)
    if top_up and 0 < len(choices) < planned_n:
        missing = planned_n - len(choices)
        details.notes.append(f"the server returned {len(choices)} of {planned_n} samples; asked for {missing} more")
        try:
            extra, _, _, _ = await call(backend, request.model_copy(update={"model": planned_model}),
                                        planned_model, missing, fixed=True)
            choices += list(extra.choices)
        except (BudgetExceededError, ModelError) as exc:
            details.notes.append(f"top-up failed ({type(exc).__name__}); aggregating {len(choices)} samples")
    choices = [c.model_copy(update={"index": i}) for i, c in enumerate(choices)]
    details.samples_received = len(choices)
    if not choices:
        details.notes.append("the model returned no choices")
        return "", details

    texts = [c.text or "" for c in choices]
    vote = majority_vote([choice_key(c, normalize) for c in choices])
    details.votes = dict(vote.counts)
    details.agreement = vote.agreement
    chosen = vote.chosen_index
    used: Literal["single", "vote", "best_of_n"] = "vote" if len(choices) > 1 else "single"

    if len(choices) > 1 and method == "best_of_n":
        try:
            if scorer is not None:
                selection = await best_of_n(texts, scorer)
            elif critic is not None:
                critic_response, _, _, _ = await call(
                    critic, critic_request(request.messages, texts, context=request.context),
                    charged_as(critic, planned_model), 1, fixed=True)
                scores = parse_critic_scores(critic_response, len(texts))
                selection = Selection(chosen_index=max(range(len(scores)), key=lambda i: (scores[i], -i)),
                                      scores=list(scores))
            else:
                raise ValueError("best_of_n needs a scorer or a critic model")
            chosen, used = selection.chosen_index, "best_of_n"
            details.scores = selection.scores
        except (ValueError, ModelError, BudgetExceededError) as exc:
            details.notes.append(f"best-of-N fell back to majority vote: {type(exc).__name__}: {exc}")
    elif len(choices) > 1 and method == "fuse":
        fuser = fuse_model or backend
        try:
            fuse_response, _, _, _ = await call(
                fuser, fuse_request(request.messages, texts, max_tokens=request.max_tokens, context=request.context),
                charged_as(fuser, planned_model), 1, fixed=True)
            text = fuse_response.text.strip()
            if not text:
                raise ValueError("fuse step returned empty content")
            details.chosen_index = None
            details.chosen = Choice(index=len(choices), text=text, finish_reason=fuse_response.first.finish_reason)
            details.method_used = "fuse"
            return text, details
        except (ValueError, ModelError, BudgetExceededError) as exc:
            details.notes.append(f"fuse step fell back to majority vote: {type(exc).__name__}: {exc}")

    details.method_used = used
    details.chosen_index = chosen
    details.chosen = choices[chosen]
    return texts[chosen], details


class BudgetedModel:
    """A ``ChatModel`` that applies one node's ``Allocation`` under a shared ``BudgetTracker``.

    Each ``complete`` draws ``allocation.samples`` samples (or ``request.n`` when the caller
    asks for more than one), aggregates them, and returns a response with the single chosen
    choice, the summed usage of every call involved, and ``details`` of the last aggregation.
    """

    def __init__(self, inner: ChatModel, *, allocation: Allocation | None = None,
                 tracker: BudgetTracker | None = None, resolve: Callable[[str], ChatModel] | None = None,
                 candidates: Sequence[str] | None = None, critic: ChatModel | None = None,
                 scorer: Scorer | None = None, fuse_model: ChatModel | None = None) -> None:
        self.inner = inner
        self.allocation = allocation
        self.tracker = tracker
        self.resolve = resolve
        self.candidates = candidates
        self.critic = critic
        self.scorer = scorer
        self.fuse_model = fuse_model
        self.name = allocation.model if allocation is not None else inner.name
        self.history: list[AggregationDetails] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        alloc = self.allocation
        samples = request.n if request.n > 1 else (alloc.samples if alloc else 1)
        method: Method = alloc.aggregation if alloc else "vote"
        if alloc is not None and alloc.max_tokens is not None and request.max_tokens is None:
            request = request.model_copy(update={"max_tokens": alloc.max_tokens})
        name = alloc.model if alloc is not None else (request.model or self.inner.name)
        backend = self.inner
        if alloc is not None and self.resolve is not None and alloc.model != self.inner.name:
            backend = self.resolve(alloc.model)
        text, details = await sample_and_aggregate(
            backend, request, samples, method, tracker=self.tracker, model_name=name, resolve=self.resolve,
            candidates=self.candidates, scorer=self.scorer, critic=self.critic, fuse_model=self.fuse_model,
        )
        self.history.append(details)
        chosen = (details.chosen or Choice(text=text, finish_reason="stop")).model_copy(update={"index": 0})
        return ChatResponse(choices=[chosen], usage=details.usage,
                            latency=Latency(total_s=details.latency_s, ttft_s=details.latency_s),
                            model=details.model)

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        return stream_from_complete(self, request)


__all__ = ["AggregationDetails", "BudgetedModel", "Method", "sample_and_aggregate"]
