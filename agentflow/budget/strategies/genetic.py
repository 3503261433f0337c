"""A steady-state genetic algorithm over configurations.

The population is the best ``population`` configurations evaluated so far (elitism for free);
children come from tournament selection, per-subtask uniform crossover and mutation (switch a
subtask's model while keeping its spend, or move its sample count one or two ladder levels), then
budget repair. The first generation is random.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentflow.budget.search import Trial
from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice
from agentflow.budget.strategies.base import SearchStrategy


class GeneticStrategy(SearchStrategy):
    name = "genetic"

    def __init__(self, space: AllocationSpace, *, seed: int = 0, batch_size: int = 1,
                 objective: str = "score", population: int = 10, tournament: int = 3,
                 crossover_rate: float = 0.8, mutation_rate: float = 0.3) -> None:
        super().__init__(space, seed=seed, batch_size=batch_size, objective=objective)
        self.population = population
        self.tournament = tournament
        self.crossover_rate = crossover_rate
        self.mutation_rate = mutation_rate

    def _pool(self) -> list[tuple[Config, float]]:
        scored = [(c, s) for c, s in self.results.items() if s is not None]
        scored.sort(key=lambda cs: -cs[1])
        return scored[: self.population]

    def _select(self, pool: list[tuple[Config, float]]) -> Config:
        contenders = [self.rng.choice(pool) for _ in range(min(self.tournament, len(pool)))]
        return max(contenders, key=lambda cs: cs[1])[0]

    def _mutate(self, config: Config) -> Config:
        space = self.space
        out = list(config)
        for i, choice in enumerate(out):
            if self.rng.random() >= self.mutation_rate:
                continue
            sub = space.subtasks[i]
            if len(sub.models) > 1 and self.rng.random() < 0.5:
                model = self.rng.choice([m for m in sub.models if m != choice.model])
                spend = space.choice_cost(i, choice)
                samples = space.max_samples_for(i, model, spend) or space.levels(i)[0]
                out[i] = SubtaskChoice(model=model, samples=samples)
            else:
                levels = space.levels(i)
                pos = levels.index(space.snap(i, choice.samples))
                pos = min(len(levels) - 1, max(0, pos + self.rng.choice([-2, -1, 1, 2])))
                out[i] = SubtaskChoice(model=choice.model, samples=levels[pos])
        return tuple(out)

    def _child(self, pool: list[tuple[Config, float]]) -> Config | None:
        a = self._select(pool)
        if self.rng.random() < self.crossover_rate:
            b = self._select(pool)
            child = tuple(x if self.rng.random() < 0.5 else y for x, y in zip(a, b, strict=True))
        else:
            child = a
        return self.space.repair(self._mutate(child))

    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        out: list[Config] = []
        pool = self._pool()
        while len(out) < k:
            cfg: Config | None = None
            if len(pool) >= min(self.population, 2) and len(self.results) >= self.population:
                for _ in range(50):
                    child = self._child(pool)
                    if child is not None and (cfg := self.take(child)) is not None:
                        break
                else:
                    self.count("stale_generations")
            if cfg is None:
                cfg = self.fresh_random()
            if cfg is None:
                break
            out.append(cfg)
        return out
