"""A table of measured configurations and the lookup environment that answers from it.

Running a multi-stage pipeline on a development set for every configuration a search proposes is
what makes allocation search expensive; offline, the same search runs against a table of
configurations measured once. ``LookupEnvironment`` follows AgentTTS's lookup semantics so
results are comparable with the paper's:

1. only rows with the *same model tuple* as the proposal are candidates;
2. only rows whose cost is within the budget count;
3. among them, the rows nearest in sample counts by *normalized L1 distance*
   (``sum_i |s_i - t_i| / n_i``, ``n_i`` the largest sample count the table holds for subtask
   ``i``'s model) are the match;
4. a match farther than ``max_distance`` is a rejection (the table cannot answer that proposal);
5. ties are resolved in the proposal's favour: the best-scoring tied row is returned.

The table can be built from measurements (``TTSTable.from_records``) or by the synthetic generator.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentflow.budget.search import Evaluation
from agentflow.budget.space import Config, SubtaskChoice
from agentflow.errors import ConfigurationError


class _Block:
    """All rows of one model tuple, as arrays."""

    __slots__ = ("samples", "cost", "metrics", "norm")

    def __init__(self, samples: np.ndarray, cost: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        self.samples = samples  # (n, K) int
        self.cost = cost  # (n,)
        self.metrics = metrics  # name -> (n,)
        self.norm = np.maximum(samples.max(axis=0), 1).astype(float)  # (K,)


class TTSTable:
    """Rows of ``(model tuple, sample tuple) -> cost, metrics``."""

    def __init__(self, subtasks: Sequence[str], objective: str = "score") -> None:
        if not subtasks:
            raise ConfigurationError("a table needs at least one subtask", hint="name the subtasks")
        self.subtasks = list(subtasks)
        self.objective = objective
        self._blocks: dict[tuple[str, ...], _Block] = {}

    # --- construction -----------------------------------------------------------------------

    def add_block(self, models: Sequence[str], samples: np.ndarray, cost: np.ndarray,
                  metrics: Mapping[str, np.ndarray]) -> None:
        """Add all rows of one model tuple at once (the generator's fast path)."""
        models = tuple(models)
        samples = np.asarray(samples, dtype=np.int64).reshape(-1, len(self.subtasks))
        cost = np.asarray(cost, dtype=float).reshape(-1)
        if self.objective not in metrics:
            raise ConfigurationError(f"rows lack the objective metric {self.objective!r}",
                                     hint="include it in every row's scores")
        arrays = {k: np.asarray(v, dtype=float).reshape(-1) for k, v in metrics.items()}
        if len(models) != len(self.subtasks) or any(len(a) != len(cost) for a in arrays.values()) \
                or len(samples) != len(cost):
            raise ConfigurationError("table block shapes do not agree", hint="one cost and score per row")
        if models in self._blocks:
            old = self._blocks[models]
            samples = np.concatenate([old.samples, samples])
            cost = np.concatenate([old.cost, cost])
            if set(old.metrics) != set(arrays):
                raise ConfigurationError("rows of one model tuple must carry the same metrics",
                                         hint="measure the same metrics for every configuration")
            arrays = {k: np.concatenate([old.metrics[k], arrays[k]]) for k in arrays}
        self._blocks[models] = _Block(samples, cost, arrays)

    @classmethod
    def from_records(cls, subtasks: Sequence[str], records: Iterable[Mapping[str, Any]],
                     objective: str = "score") -> TTSTable:
        """Build from ``{"config": {subtask: {"model", "samples"}}, "cost": float, "scores": {...}}``."""
        grouped: dict[tuple[str, ...], list[tuple[list[int], float, Mapping[str, float]]]] = {}
        for n, rec in enumerate(records):
            try:
                cfg = rec["config"]
                models = tuple(str(cfg[s]["model"]) for s in subtasks)
                samples = [int(cfg[s]["samples"]) for s in subtasks]
                cost = float(rec["cost"])
                scores = {k: float(v) for k, v in rec["scores"].items()}
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigurationError(f"table record {n} is malformed: {exc!r}",
                                         hint='each record needs "config", "cost" and "scores"') from None
            grouped.setdefault(models, []).append((samples, cost, scores))
        table = cls(subtasks, objective)
        for models, rows in grouped.items():
            names = sorted(rows[0][2])
            table.add_block(models, np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                            {k: np.array([r[2].get(k, np.nan) for r in rows]) for k in names})
        return table

    def to_records(self) -> list[dict[str, Any]]:
        out = []
        for models, block in self._blocks.items():
            for j in range(len(block.cost)):
                out.append({
                    "config": {s: {"model": m, "samples": int(block.samples[j, i])}
                               for i, (s, m) in enumerate(zip(self.subtasks, models, strict=True))},
                    "cost": float(block.cost[j]),
                    "scores": {k: float(v[j]) for k, v in block.metrics.items()},
                })
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"subtasks": self.subtasks, "objective": self.objective,
                                          "records": self.to_records()}))

    @classmethod
    def load(cls, path: str | Path) -> TTSTable:
        try:
            data = json.loads(Path(path).read_text())
            return cls.from_records(data["subtasks"], data["records"], data.get("objective", "score"))
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ConfigurationError(f"cannot read table {path}: {exc!r}",
                                     hint="write it with TTSTable.save") from None

    # --- queries ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(b.cost) for b in self._blocks.values())

    def model_tuples(self) -> list[tuple[str, ...]]:
        return list(self._blocks)

    def rows(self, models: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]] | None:
        block = self._blocks.get(tuple(models))
        return None if block is None else (block.samples, block.cost, block.metrics)

    def optimum(self, budget: float) -> tuple[Config, float, float] | None:
        """The best row within ``budget``: ``(config, objective value, cost)``."""
        best: tuple[Config, float, float] | None = None
        for models, block in self._blocks.items():
            mask = block.cost <= budget + 1e-9
            if not mask.any():
                continue
            values = np.where(mask, block.metrics[self.objective], -np.inf)
            j = int(np.argmax(values))
            if best is None or values[j] > best[1]:
                best = (self._config(models, block.samples[j]), float(values[j]), float(block.cost[j]))
        return best

    def _config(self, models: Sequence[str], samples: np.ndarray) -> Config:
        return tuple(SubtaskChoice(model=m, samples=int(s)) for m, s in zip(models, samples, strict=True))

    def lookup(self, config: Config, budget: float, max_distance: float) -> Evaluation:
        """AgentTTS lookup (see the module docstring)."""
        models = tuple(c.model for c in config)
        block = self._blocks.get(models)
        if block is None:
            return Evaluation(config=None, note=f"no table rows for model tuple {models}")
        mask = block.cost <= budget + 1e-9
        if not mask.any():
            return Evaluation(config=None, note=f"no table row for {models} fits the budget {budget:g}")
        target = np.array([c.samples for c in config], dtype=float)
        dist = (np.abs(block.samples - target) / block.norm).sum(axis=1)
        dist = np.where(mask, dist, np.inf)
        nearest = float(dist.min())
        if nearest > max_distance:
            return Evaluation(config=None,
                              note=f"nearest row is {nearest:.3f} away (limit {max_distance:g})")
        tied = np.flatnonzero(dist <= nearest + 1e-12)
        objective = block.metrics[self.objective]
        j = int(tied[np.argmax(objective[tied])])
        return Evaluation(
            config=self._config(models, block.samples[j]),
            scores={k: float(v[j]) for k, v in block.metrics.items()},
            cost=float(block.cost[j]),
            note=None if nearest == 0 else f"answered by the nearest row ({nearest:.3f} away)",
        )


class LookupEnvironment:
    """An ``Evaluator`` answering from a ``TTSTable`` under a fixed budget."""

    def __init__(self, table: TTSTable, budget: float, *, max_distance: float = 0.25) -> None:
        if not budget > 0:
            raise ConfigurationError(f"budget must be positive, got {budget}", hint="pass a budget > 0")
        self.table = table
        self.budget = float(budget)
        self.max_distance = float(max_distance)
        self.objective = table.objective
        self.calls = 0

    async def evaluate(self, config: Config) -> Evaluation:
        self.calls += 1
        return self.table.lookup(config, self.budget, self.max_distance)

    def optimum(self) -> tuple[Config, float, float]:
        best = self.table.optimum(self.budget)
        if best is None:
            raise ConfigurationError("no table row fits the budget", hint="raise the budget")
        return best
