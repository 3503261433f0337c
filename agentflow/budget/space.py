"""The allocation space: per subtask a model and a sample count, under one total budget.

A *configuration* assigns every subtask (a node, or a kind of node) one ``SubtaskChoice`` — a
model and a number of samples. Its cost is the sum of the subtasks' call costs under the space's
cost model, and it is *feasible* when that sum is within the budget. Every search strategy
proposes configurations from this space, and only feasible ones; the space is where that rule,
the candidate lists and the sample ladder live, so no strategy re-implements them.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentflow.budget.cost import CostModel, FlopsCost, estimate_call
from agentflow.budget.registry import ModelRegistry
from agentflow.errors import ConfigurationError


class SubtaskChoice(BaseModel):
    """The model and sample count for one subtask."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    model: str
    samples: int = Field(ge=1)

    def __str__(self) -> str:
        return f"{self.model}x{self.samples}"


#: one choice per subtask, in the space's subtask order
Config = tuple[SubtaskChoice, ...]


def default_sample_ladder(max_samples: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ... up to ``max_samples`` (which is always included).

    Roughly geometric with ratio sqrt(2): gains from sampling saturate, so the interesting
    differences are relative ones, and a ladder keeps neighbouring configurations distinguishable.
    """
    levels = {1}
    k = 1
    while k <= max_samples:
        levels.add(k)
        if k + k // 2 <= max_samples and k >= 2:
            levels.add(k + k // 2)
        k *= 2
    if max_samples >= 3:
        levels.add(3)
    levels.add(max_samples)
    return sorted(x for x in levels if x <= max_samples)


class SubtaskSpace(BaseModel):
    """Candidates and token profile of one subtask."""

    name: str = Field(min_length=1)
    #: candidate model names, each registered in the space's registry
    models: list[str] = Field(min_length=1)
    #: average prompt length (Np) of one call of this subtask
    prompt_tokens: int = Field(ge=0)
    #: average generated tokens per sample (Nd)
    tokens_per_sample: int = Field(ge=1)
    max_samples: int = Field(default=64, ge=1)
    #: the sample counts allowed; ``None`` means ``default_sample_ladder(max_samples)``
    sample_levels: list[int] | None = None
    description: str = ""

    @field_validator("models")
    @classmethod
    def _unique_models(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("candidate models must be unique")
        return value

    @model_validator(mode="after")
    def _levels(self) -> SubtaskSpace:
        if self.sample_levels is not None:
            levels = sorted(set(self.sample_levels))
            if not levels or levels[0] < 1 or levels[-1] > self.max_samples:
                raise ValueError(f"sample_levels must lie within 1..{self.max_samples}")
            self.sample_levels = levels
        return self

    def levels(self) -> list[int]:
        return list(self.sample_levels) if self.sample_levels else default_sample_ladder(self.max_samples)


class AllocationSpace:
    """Subtasks, their candidates, a budget and a cost model: the search problem.

    Raises ``ConfigurationError`` at construction when a candidate model is not registered or when
    not even the cheapest configuration fits the budget (no strategy could propose anything).
    """

    def __init__(self, subtasks: Sequence[SubtaskSpace], budget: float, registry: ModelRegistry,
                 cost_model: CostModel | None = None) -> None:
        if not subtasks:
            raise ConfigurationError("an allocation space needs at least one subtask",
                                     hint="describe each node or node kind as a SubtaskSpace")
        names = [s.name for s in subtasks]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"subtask names must be unique, got {names}",
                                     hint="rename the duplicated subtask")
        if not budget > 0:
            raise ConfigurationError(f"budget must be positive, got {budget}", hint="pass a budget > 0")
        for s in subtasks:
            for m in s.models:
                registry.get(m)  # raises a ConfigurationError naming the missing model
        self.subtasks: list[SubtaskSpace] = list(subtasks)
        self.budget = float(budget)
        self.registry = registry
        self.cost_model: CostModel = cost_model or FlopsCost()
        self._levels = [s.levels() for s in self.subtasks]
        self._cost_cache: dict[tuple[int, str, int], float] = {}
        if self.min_cost() > self.budget:
            raise ConfigurationError(
                f"budget {self.budget:g} is below the cheapest configuration ({self.min_cost():.4g} "
                f"{self.cost_model.unit})",
                hint="raise the budget or add cheaper candidate models",
            )

    # --- shape ------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.subtasks]

    def __len__(self) -> int:
        return len(self.subtasks)

    def levels(self, i: int) -> list[int]:
        return self._levels[i]

    def snap(self, i: int, samples: int) -> int:
        """The allowed sample count nearest to ``samples`` (ties go to the smaller, cheaper one)."""
        levels = self._levels[i]
        pos = bisect.bisect_left(levels, samples)
        if pos == 0:
            return levels[0]
        if pos == len(levels):
            return levels[-1]
        lo, hi = levels[pos - 1], levels[pos]
        return lo if samples - lo <= hi - samples else hi

    def level_index(self, i: int, samples: int) -> int:
        return self._levels[i].index(self.snap(i, samples))

    # --- cost -------------------------------------------------------------------------------

    def choice_cost(self, i: int, choice: SubtaskChoice) -> float:
        key = (i, choice.model, choice.samples)
        cached = self._cost_cache.get(key)
        if cached is None:
            s = self.subtasks[i]
            cached = estimate_call(self.cost_model, self.registry.get(choice.model), s.prompt_tokens,
                                   s.tokens_per_sample, choice.samples)
            self._cost_cache[key] = cached
        return cached

    def cost(self, config: Config) -> float:
        self._check_shape(config)
        return sum(self.choice_cost(i, c) for i, c in enumerate(config))

    def feasible(self, config: Config) -> bool:
        return not self.problems(config)

    def problems(self, config: Config) -> list[str]:
        """Why a configuration cannot be proposed (empty when it can)."""
        if len(config) != len(self.subtasks):
            return [f"expected {len(self.subtasks)} subtask choices, got {len(config)}"]
        out: list[str] = []
        for i, (s, c) in enumerate(zip(self.subtasks, config, strict=True)):
            if c.model not in s.models:
                out.append(f"{s.name}: model {c.model!r} is not a candidate ({', '.join(s.models)})")
            if c.samples not in self._levels[i]:
                out.append(f"{s.name}: {c.samples} samples is not an allowed level")
        if not out:
            total = self.cost(config)
            if total > self.budget + 1e-9:
                out.append(f"cost {total:.4g} exceeds the budget {self.budget:.4g}")
        return out

    def min_cost(self) -> float:
        return sum(min(self.choice_cost(i, SubtaskChoice(model=m, samples=self._levels[i][0]))
                       for m in s.models) for i, s in enumerate(self.subtasks))

    def cheapest(self) -> Config:
        out = []
        for i, s in enumerate(self.subtasks):
            options = [SubtaskChoice(model=m, samples=self._levels[i][0]) for m in s.models]
            out.append(min(options, key=lambda c, i=i: self.choice_cost(i, c)))
        return tuple(out)

    def max_samples_for(self, i: int, model: str, spend: float) -> int | None:
        """Largest allowed sample count of ``model`` on subtask ``i`` costing at most ``spend``."""
        best = None
        for level in self._levels[i]:
            if self.choice_cost(i, SubtaskChoice(model=model, samples=level)) <= spend + 1e-9:
                best = level
            else:
                break
        return best

    def models_by_size(self, i: int) -> list[str]:
        """Subtask ``i``'s candidates, smallest first."""
        return sorted(self.subtasks[i].models, key=lambda m: self.registry.get(m).params)

    # --- repair -----------------------------------------------------------------------------

    def coerce(self, config: Config) -> Config:
        """Snap every sample count onto the subtask's ladder (models untouched)."""
        return tuple(SubtaskChoice(model=c.model, samples=self.snap(i, c.samples)) for i, c in enumerate(config))

    def repair(self, config: Config) -> Config | None:
        """Make an over-budget configuration feasible by lowering sample counts.

        Repeatedly lowers by one level the subtask whose current choice costs the most, which
        keeps the models (the decisive choice) and removes budget where there is most of it.
        Returns ``None`` when even one sample everywhere does not fit.
        """
        config = self.coerce(config)
        if any(c.model not in s.models for c, s in zip(config, self.subtasks, strict=True)):
            return None
        current = list(config)
        total = self.cost(tuple(current))
        while total > self.budget + 1e-9:
            candidates = [i for i, c in enumerate(current) if self._levels[i].index(c.samples) > 0]
            if not candidates:
                return None
            i = max(candidates, key=lambda j: self.choice_cost(j, current[j]))
            pos = self._levels[i].index(current[i].samples)
            before = self.choice_cost(i, current[i])
            current[i] = SubtaskChoice(model=current[i].model, samples=self._levels[i][pos - 1])
            total += self.choice_cost(i, current[i]) - before
        return tuple(current)

    # --- (de)serialization ------------------------------------------------------------------

    def config_to_dict(self, config: Config) -> dict[str, dict[str, Any]]:
        return {s.name: {"model": c.model, "samples": c.samples}
                for s, c in zip(self.subtasks, config, strict=True)}

    def config_from_dict(self, data: Mapping[str, Any]) -> Config:
        """Inverse of ``config_to_dict``; raises ``ValueError`` naming what is missing or wrong."""
        out = []
        for s in self.subtasks:
            entry = data.get(s.name)
            if not isinstance(entry, Mapping):
                raise ValueError(f"missing subtask {s.name!r}")
            out.append(SubtaskChoice(model=str(entry.get("model")), samples=int(entry.get("samples", 0))))
        return tuple(out)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (for reports and LLM prompts)."""
        return {
            "budget": self.budget,
            "cost_unit": self.cost_model.unit,
            "subtasks": [
                {
                    "name": s.name,
                    "description": s.description,
                    "models": [{"name": m, "params": self.registry.get(m).params} for m in s.models],
                    "prompt_tokens": s.prompt_tokens,
                    "tokens_per_sample": s.tokens_per_sample,
                    "sample_levels": self._levels[i],
                }
                for i, s in enumerate(self.subtasks)
            ],
        }

    def format_config(self, config: Config) -> str:
        return ", ".join(f"{s.name}={c}" for s, c in zip(self.subtasks, config, strict=True))

    def _check_shape(self, config: Config) -> None:
        if len(config) != len(self.subtasks):
            raise ValueError(f"expected {len(self.subtasks)} subtask choices, got {len(config)}")

    def all_model_tuples(self) -> Iterable[tuple[str, ...]]:
        return itertools.product(*(s.models for s in self.subtasks))
