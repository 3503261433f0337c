"""Bayesian optimisation with optuna's TPE sampler.

Each subtask contributes two parameters: its model (categorical) and its sample-ladder index
(ordinal integer). TPE does not know the budget; two ways of handling it are offered:

* ``"repair"`` (default): a suggestion over the budget is repaired (``AllocationSpace.repair``
  lowers sample counts until it fits); the repaired configuration is evaluated, the suggestion is
  credited with its score, and the repaired point is added to the study as well. This is the stronger baseline
  on our benchmark: repaired points sit on the budget boundary, where optima usually are.
* ``"constraint"``: the suggestion is told to the study as infeasible (``Trial.set_constraint``
  with the excess cost) without being evaluated, so TPE learns the feasible region itself.

Either way a suggestion the study has already measured is answered with the known value instead
of spending an evaluation on a repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from agentflow.budget.search import Trial
from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice
from agentflow.budget.strategies.base import SearchStrategy
from agentflow.errors import ConfigurationError

#: suggestions that cannot be evaluated (over budget, repeats) before a random draw is used
MAX_MISSES = 16


class BayesianStrategy(SearchStrategy):
    name = "bayesian"

    def __init__(self, space: AllocationSpace, *, seed: int = 0, batch_size: int = 1,
                 objective: str = "score", n_startup_trials: int = 10, multivariate: bool = True,
                 budget_handling: Literal["repair", "constraint"] = "repair") -> None:
        super().__init__(space, seed=seed, batch_size=batch_size, objective=objective)
        if budget_handling not in ("repair", "constraint"):
            raise ConfigurationError(f"unknown budget_handling {budget_handling!r}",
                                     hint='use "repair" or "constraint"')
        self.budget_handling = budget_handling
        try:
            import optuna
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigurationError("the bayesian strategy needs optuna",
                                     hint="pip install optuna") from None
        self._optuna = optuna
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                             multivariate=multivariate)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self._dists: dict[str, Any] = {}
        for i, s in enumerate(space.subtasks):
            self._dists[f"model_{i}"] = optuna.distributions.CategoricalDistribution(list(s.models))
            self._dists[f"level_{i}"] = optuna.distributions.IntDistribution(0, len(space.levels(i)) - 1)
        #: asked trials awaiting their evaluation, by configuration
        self._pending: dict[Config, list[tuple[Any, bool]]] = {}

    @classmethod
    def missing_dependency(cls) -> str | None:
        import importlib.util

        return None if importlib.util.find_spec("optuna") else "optuna is not installed (pip install optuna)"

    def _to_config(self, params: dict[str, Any]) -> Config:
        return tuple(
            SubtaskChoice(model=params[f"model_{i}"], samples=self.space.levels(i)[params[f"level_{i}"]])
            for i in range(len(self.space))
        )

    def _to_params(self, config: Config) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, c in enumerate(config):
            out[f"model_{i}"] = c.model
            out[f"level_{i}"] = self.space.level_index(i, c.samples)
        return out

    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        out: list[Config] = []
        misses = 0
        while len(out) < k and misses < MAX_MISSES:
            trial = self.study.ask(fixed_distributions=self._dists)
            config = self._to_config(trial.params)
            excess = self.space.cost(config) - self.space.budget
            repaired = False
            if excess > 0:
                self.count("over_budget_suggestions")
                fixed = self.space.repair(config) if self.budget_handling == "repair" else None
                if fixed is None:
                    trial.set_constraint("budget", excess)
                    self.study.tell(trial, 0.0)
                    misses += 1
                    continue
                config, repaired = fixed, True
            trial.set_constraint("budget", 0.0)
            if config in self.proposed:
                known = self.results.get(config)
                if known is not None:
                    self.study.tell(trial, known)
                else:
                    self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
                self.count("repeat_suggestions")
                misses += 1
                continue
            self.take(config)
            self._pending.setdefault(config, []).append((trial, repaired))
            out.append(config)
        while len(out) < k:
            # the sampler keeps suggesting points it cannot use: draw an unseen configuration
            cfg = self.fresh_random()
            if cfg is None:
                break
            self.count("random_fallback")
            out.append(cfg)
        return out

    def on_result(self, proposed: Config, config: Config, score: float | None, cost: float) -> None:
        waiting = self._pending.get(proposed)
        if waiting:
            trial, repaired = waiting.pop(0)
            if not waiting:
                del self._pending[proposed]
            if score is not None and config == proposed and not repaired:
                self.study.tell(trial, score)
                return
            if score is not None and repaired:
                # the suggestion is credited with what its repair scored, so TPE learns what
                # asking for that region yields; the repaired point is added below as well
                self.study.tell(trial, score)
            else:
                self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        if score is not None:
            # a repaired suggestion, a random fallback, or the evaluator ran a different
            # configuration: teach the study what was actually measured
            self.study.add_trial(self._optuna.trial.create_trial(
                params=self._to_params(config), distributions=self._dists, value=score,
                constraints={"budget": 0.0}))
