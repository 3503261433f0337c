"""Allocations: which model and how many samples each node gets, as the runtime consumes them.

A search over an ``AllocationSpace`` ends in a configuration (one choice per subtask); the
workforce needs it per *node*. ``BudgetAllocator`` is that mapping: explicit per-node entries
first, then per node kind (a subtask of the search space is usually a kind of node: "retrieve",
"answer", ...), then a default. It is a pydantic model, so an allocation found offline can be
saved with a run configuration and loaded for later runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from agentflow.budget.search import Evaluator, SearchResult, run_search
from agentflow.budget.space import AllocationSpace, Config
from agentflow.errors import ConfigurationError
from agentflow.llm.base import ChatModel

Aggregation = Literal["vote", "best_of_n", "fuse"]


class Allocation(BaseModel):
    """One node's share of test-time compute."""

    model: str
    samples: int = Field(default=1, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    #: how the samples become one answer
    aggregation: Aggregation = "vote"


class BudgetAllocator(BaseModel):
    """Allocation lookup: by node id, then by node kind, then the default."""

    default: Allocation | None = None
    by_kind: dict[str, Allocation] = Field(default_factory=dict)
    by_node: dict[str, Allocation] = Field(default_factory=dict)

    def for_node(self, node_id: str | None = None, kind: str | None = None) -> Allocation | None:
        if node_id is not None and node_id in self.by_node:
            return self.by_node[node_id]
        if kind is not None and kind in self.by_kind:
            return self.by_kind[kind]
        return self.default

    @classmethod
    def from_config(cls, space: AllocationSpace, config: Config, *, aggregation: Aggregation = "vote",
                    max_tokens: int | None = None, default: Allocation | None = None) -> BudgetAllocator:
        """Per-kind allocations from a configuration of ``space`` (subtask names become kinds)."""
        problems = space.problems(config)
        if problems:
            raise ConfigurationError("cannot allocate an infeasible configuration: " + "; ".join(problems),
                                     hint="pass a configuration proposed by a search over this space")
        return cls(default=default, by_kind={
            s.name: Allocation(model=c.model, samples=c.samples, max_tokens=max_tokens, aggregation=aggregation)
            for s, c in zip(space.subtasks, config, strict=True)
        })

    @classmethod
    async def search(cls, space: AllocationSpace, evaluator: Evaluator, *, strategy: str = "insight",
                     trials: int = 30, seed: int = 0, model: ChatModel | None = None,
                     aggregation: Aggregation = "vote") -> tuple[BudgetAllocator, SearchResult]:
        """Search ``space`` with ``evaluator`` (e.g. the pipeline on a development set) and return
        the best configuration's allocation together with the search record."""
        from agentflow.budget.strategies import make_strategy

        result = await run_search(make_strategy(strategy, space, seed=seed, model=model), evaluator, trials,
                                  space=space)
        best = result.best
        if best is None or best.config is None:
            raise ConfigurationError(f"the {strategy} search found no scored configuration in {trials} trials",
                                     hint="check that the evaluator returns the objective score, or raise trials")
        chosen = space.coerce(best.config)
        if space.problems(chosen):  # the evaluator ran something off the space: use what was asked
            chosen = best.proposed
        return cls.from_config(space, chosen, aggregation=aggregation), result

    def kinds(self) -> Sequence[str]:
        return list(self.by_kind)
