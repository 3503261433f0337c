"""The search loop: a strategy proposes configurations, an evaluator scores them, trials accumulate.

The same loop serves the offline benchmark (the evaluator is a lookup table) and real tuning (the
evaluator runs the user's pipeline on a development set). A *trial* is one evaluation request;
what counts toward a search's trial budget is every configuration sent to the evaluator, whether
the evaluator answered it or rejected it — a wasted evaluation costs as much as a useful one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from agentflow.budget.space import AllocationSpace, Config

if TYPE_CHECKING:
    from agentflow.budget.strategies.base import SearchStrategy

log = logging.getLogger(__name__)


class Evaluation(BaseModel):
    """What an evaluator answers for one configuration."""

    #: the configuration actually evaluated (an evaluator may snap to the nearest one it can run);
    #: ``None`` when it rejected the request
    config: Config | None
    scores: dict[str, float] = Field(default_factory=dict)
    cost: float = 0.0
    note: str | None = None


@runtime_checkable
class Evaluator(Protocol):
    """Scores configurations; ``objective`` names the score to maximise."""

    objective: str

    async def evaluate(self, config: Config) -> Evaluation: ...


class Trial(BaseModel):
    """One evaluation in a search's history."""

    index: int
    proposed: Config
    #: what was evaluated; ``None`` when the evaluator rejected the proposal
    config: Config | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    #: the objective's value, ``None`` when rejected
    score: float | None = None
    cost: float = 0.0
    note: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.score is not None


class SearchResult(BaseModel):
    strategy: str
    trials: list[Trial]
    #: why the search stopped before its trial budget, if it did
    stopped_early: str | None = None
    #: proposals that broke the budget or the space (a strategy bug when non-zero)
    infeasible: int = 0
    #: strategy diagnostics (LLM calls, dropped proposals and why)
    diagnostics: dict[str, object] = Field(default_factory=dict)

    @property
    def best(self) -> Trial | None:
        ok = [t for t in self.trials if t.score is not None]
        return max(ok, key=lambda t: t.score) if ok else None  # type: ignore[arg-type,return-value]

    def best_so_far(self) -> list[float | None]:
        out: list[float | None] = []
        best: float | None = None
        for t in self.trials:
            if t.score is not None and (best is None or t.score > best):
                best = t.score
            out.append(best)
        return out


TrialCallback = Callable[[Trial], Awaitable[None] | None]


async def run_search(strategy: SearchStrategy, evaluator: Evaluator, trials: int, *,
                     space: AllocationSpace | None = None,
                     on_trial: TrialCallback | None = None) -> SearchResult:
    """Run ``strategy`` against ``evaluator`` for at most ``trials`` evaluations.

    Every proposal is checked against the space before it is evaluated; an infeasible one is
    recorded as a rejected trial (and counted in ``infeasible``) instead of being run, so a faulty
    strategy shows up in the results rather than silently overspending.
    """
    if trials < 1:
        raise ValueError("trials must be >= 1")
    space = space or strategy.space
    history: list[Trial] = []
    stopped: str | None = None
    infeasible = 0
    while len(history) < trials:
        k = max(1, min(strategy.batch_size, trials - len(history)))
        proposals = await strategy.propose(list(history), k)
        if not proposals:
            stopped = f"{strategy.name} has no further configurations to propose"
            break
        for proposed in proposals[:k]:
            t0 = time.perf_counter()
            problems = space.problems(proposed)
            if problems:
                infeasible += 1
                log.warning("%s proposed an infeasible configuration: %s", strategy.name, "; ".join(problems))
                trial = Trial(index=len(history), proposed=proposed, note="infeasible: " + "; ".join(problems),
                              cost=_safe_cost(space, proposed))
                strategy.observe(proposed, {}, trial.cost, proposed=proposed)
            else:
                result = await evaluator.evaluate(proposed)
                score = result.scores.get(evaluator.objective) if result.config is not None else None
                trial = Trial(index=len(history), proposed=proposed, config=result.config,
                              scores=dict(result.scores), score=score, cost=result.cost, note=result.note)
                strategy.observe(result.config if result.config is not None else proposed,
                                 trial.scores if score is not None else {}, result.cost, proposed=proposed)
            trial.seconds = time.perf_counter() - t0
            history.append(trial)
            if on_trial is not None:
                maybe = on_trial(trial)
                if maybe is not None:
                    await maybe
            if len(history) >= trials:
                break
    return SearchResult(strategy=strategy.name, trials=history, stopped_early=stopped,
                        infeasible=infeasible, diagnostics=strategy.diagnostics())


def _safe_cost(space: AllocationSpace, config: Config) -> float:
    try:
        return space.cost(config)
    except Exception:  # an unknown model name has no cost; the trial note says why
        return float("nan")


def objective_of(scores: Mapping[str, float], objective: str) -> float | None:
    value = scores.get(objective)
    return float(value) if value is not None else None
