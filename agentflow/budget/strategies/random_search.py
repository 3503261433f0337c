"""Random search: configurations drawn uniformly from the feasible set, without repeats."""

from __future__ import annotations

from collections.abc import Sequence

from agentflow.budget.search import Trial
from agentflow.budget.space import Config
from agentflow.budget.strategies.base import SearchStrategy


class RandomStrategy(SearchStrategy):
    name = "random"

    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        out: list[Config] = []
        for _ in range(k):
            cfg = self.fresh_random()
            if cfg is None:
                break
            out.append(cfg)
        return out
