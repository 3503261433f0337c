"""Uniform allocation: every subtask gets an equal share of the budget, for each model tuple.

The baseline a person writes first: no feedback is used; each model combination is tried once
with the budget split evenly and every subtask drawing as many samples as its share affords. The
model tuples are visited in a seeded random order so that enumeration order does not favour a
particular answer. Once every tuple has been tried the strategy has nothing more to propose.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentflow.budget.search import Trial
from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice
from agentflow.budget.strategies.base import SearchStrategy


class UniformStrategy(SearchStrategy):
    name = "uniform"

    def __init__(self, space: AllocationSpace, *, seed: int = 0, batch_size: int = 1,
                 objective: str = "score") -> None:
        super().__init__(space, seed=seed, batch_size=batch_size, objective=objective)
        tuples = list(space.all_model_tuples())
        self.rng.shuffle(tuples)
        self._queue: list[Config] = []
        share = space.budget / len(space)
        for models in tuples:
            cfg = self._split(models, share)
            if cfg is not None:
                self._queue.append(cfg)
            else:
                self.count("model_tuples_unaffordable")

    def _split(self, models: tuple[str, ...], share: float) -> Config | None:
        space = self.space
        picks: list[SubtaskChoice] = []
        for i, m in enumerate(models):
            samples = space.max_samples_for(i, m, share)
            # a subtask whose cheapest call exceeds an equal share still gets one sample; the
            # repair below takes the excess from the others
            picks.append(SubtaskChoice(model=m, samples=samples or space.levels(i)[0]))
        return space.repair(tuple(picks))

    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        out: list[Config] = []
        while self._queue and len(out) < k:
            cfg = self.take(self._queue.pop(0))
            if cfg is not None:
                out.append(cfg)
        return out
