"""The interface every search strategy implements, and the helpers they share.

``propose(history, k)`` returns up to ``k`` feasible configurations (an empty list means the
strategy has nothing left to try); ``observe(config, scores, cost)`` reports one evaluation back.
Strategies are async because some of them ask an LLM; the rest simply never await.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from agentflow.budget.search import Trial
from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice


class SearchStrategy(ABC):
    """Base class: keeps the space, a seeded RNG, the set of configurations already proposed, and
    a diagnostics record; subclasses implement ``propose``."""

    name: ClassVar[str] = "strategy"
    #: whether the strategy needs a ChatModel (the bench skips it when none is configured)
    uses_llm: ClassVar[bool] = False

    def __init__(self, space: AllocationSpace, *, seed: int = 0, batch_size: int = 1,
                 objective: str = "score") -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.space = space
        self.seed = seed
        self.rng = random.Random(seed)
        self.batch_size = batch_size
        self.objective = objective
        #: every configuration this strategy has proposed (proposals never repeat where avoidable)
        self.proposed: set[Config] = set()
        #: evaluated configurations and their objective values (None when rejected)
        self.results: dict[Config, float | None] = {}
        self._notes: list[str] = []
        self._counters: dict[str, int] = {}

    @classmethod
    def missing_dependency(cls) -> str | None:
        """Why this strategy cannot run in this environment (a missing package), or ``None``."""
        return None

    @abstractmethod
    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        """Up to ``k`` new feasible configurations."""

    def observe(self, config: Config, scores: Mapping[str, float], cost: float, *,
                proposed: Config | None = None) -> None:
        """Record one evaluation. ``config`` is what was evaluated, ``proposed`` what was asked for."""
        value = scores.get(self.objective)
        score = float(value) if value is not None else None
        self.results[config] = score
        if proposed is not None and proposed != config:
            self.results.setdefault(proposed, score)
        self.on_result(proposed if proposed is not None else config, config, score, cost)

    def on_result(self, proposed: Config, config: Config, score: float | None,  # noqa: B027 - optional hook
                  cost: float) -> None:
        """Hook for stateful strategies; the default does nothing."""

    # --- diagnostics ------------------------------------------------------------------------

    def note(self, message: str) -> None:
        """Record why something was dropped or changed (kept short: the last 200 notes)."""
        self._notes.append(message)
        if len(self._notes) > 200:
            del self._notes[:-200]

    def count(self, key: str, by: int = 1) -> None:
        self._counters[key] = self._counters.get(key, 0) + by

    def diagnostics(self) -> dict[str, Any]:
        return {"counters": dict(self._counters), "notes": list(self._notes[-20:])}

    # --- helpers ----------------------------------------------------------------------------

    def take(self, config: Config) -> Config | None:
        """Mark ``config`` as proposed unless it was proposed before (then ``None``)."""
        if config in self.proposed:
            return None
        self.proposed.add(config)
        return config

    def best(self) -> tuple[Config, float] | None:
        scored = [(c, s) for c, s in self.results.items() if s is not None]
        if not scored:
            return None
        return max(scored, key=lambda cs: cs[1])

    def random_config(self, *, attempts: int = 64) -> Config:
        """A uniformly drawn candidate model and ladder level per subtask, feasible.

        Rejection sampling keeps the draw uniform over the feasible set; after ``attempts``
        misses the last draw is repaired (lower sample counts), which always succeeds when the
        space is valid because its cheapest configuration fits.
        """
        space = self.space
        draw: Config = ()
        for _ in range(attempts):
            draw = tuple(
                SubtaskChoice(model=self.rng.choice(s.models), samples=self.rng.choice(space.levels(i)))
                for i, s in enumerate(space.subtasks)
            )
            if space.cost(draw) <= space.budget:
                return draw
        repaired = space.repair(draw)
        return repaired if repaired is not None else space.cheapest()

    def neighbour(self, config: Config) -> Config | None:
        """A small random change of ``config``: one subtask moves one or two ladder levels, or
        switches model at the same spend; repaired to fit the budget."""
        space = self.space
        i = self.rng.randrange(len(space))
        choice = config[i]
        sub = space.subtasks[i]
        if len(sub.models) > 1 and self.rng.random() < 0.4:
            model = self.rng.choice([m for m in sub.models if m != choice.model])
            samples = space.max_samples_for(i, model, space.choice_cost(i, choice)) or space.levels(i)[0]
            new = SubtaskChoice(model=model, samples=samples)
        else:
            levels = space.levels(i)
            pos = min(len(levels) - 1, max(0, space.level_index(i, choice.samples) + self.rng.choice([-2, -1, 1, 2])))
            new = SubtaskChoice(model=choice.model, samples=levels[pos])
        return space.repair(tuple(new if j == i else c for j, c in enumerate(config)))

    def fresh_neighbour(self, config: Config, *, tries: int = 50) -> Config | None:
        """An unproposed neighbour of ``config``, else an unproposed random configuration."""
        for _ in range(tries):
            cand = self.neighbour(config)
            if cand is not None and self.take(cand) is not None:
                return cand
        return self.fresh_random()

    def fresh_random(self, *, tries: int = 200) -> Config | None:
        """A random feasible configuration not proposed before (``None`` if none turns up)."""
        for _ in range(tries):
            cfg = self.take(self.random_config())
            if cfg is not None:
                return cfg
        return None
