"""Grid search, coarse to fine.

Pass 0 uses every 4th level of each subtask's sample ladder, pass 1 every 2nd, pass 2 all of
them; each pass covers every model tuple and skips points already visited and points over the
budget. Within a pass the points are visited in a seeded random order, so the search is anytime
(an early stop has seen a spread of the grid, not one corner of it).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from agentflow.budget.search import Trial
from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice
from agentflow.budget.strategies.base import SearchStrategy

#: points enumerated per pass at most; beyond it a pass is subsampled at random
MAX_POINTS_PER_PASS = 20000


class GridStrategy(SearchStrategy):
    name = "grid"

    def __init__(self, space: AllocationSpace, *, seed: int = 0, batch_size: int = 1,
                 objective: str = "score", strides: Sequence[int] = (4, 2, 1)) -> None:
        super().__init__(space, seed=seed, batch_size=batch_size, objective=objective)
        self.strides = list(strides)
        self._points = self._iterate()

    def _levels(self, i: int, stride: int) -> list[int]:
        levels = self.space.levels(i)
        picked = levels[::stride]
        if levels[-1] not in picked:
            picked.append(levels[-1])
        return picked

    def _iterate(self) -> Iterator[Config]:
        space = self.space
        for stride in self.strides:
            axes = [[SubtaskChoice(model=m, samples=s) for m in sub.models for s in self._levels(i, stride)]
                    for i, sub in enumerate(space.subtasks)]
            points = [p for p in itertools.islice(itertools.product(*axes), MAX_POINTS_PER_PASS)
                      if space.cost(p) <= space.budget]
            self.rng.shuffle(points)
            yield from points

    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        out: list[Config] = []
        for point in self._points:
            cfg = self.take(point)
            if cfg is not None:
                out.append(cfg)
                if len(out) >= k:
                    break
        return out
