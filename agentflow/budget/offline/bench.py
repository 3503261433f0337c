"""The offline TTS benchmark: every strategy on the same seeded synthetic tasks, compared by how
fast their best-so-far score approaches each table's optimum.

Library code: it returns a ``BenchReport`` (pydantic, JSON round-trip) and prints nothing; the
``agentflow bench tts`` command and ``benchmarks/tts/run.py`` render it.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from agentflow.budget.offline.generator import SyntheticTask, generate_task
from agentflow.budget.offline.metrics import auc, normalized_curve, trials_to
from agentflow.budget.offline.table import LookupEnvironment
from agentflow.budget.search import run_search
from agentflow.budget.strategies import STRATEGIES, make_strategy
from agentflow.errors import ConfigurationError
from agentflow.llm.base import ChatModel

log = logging.getLogger(__name__)

#: the order strategies appear in reports
DEFAULT_STRATEGIES = ["uniform", "random", "grid", "bayesian", "genetic", "insight", "llm-zero-shot", "agenttts"]
#: LLM-driven searches of different seeds run concurrently (they wait on the model, not the CPU)
LLM_CONCURRENCY = 4


class StrategyRun(BaseModel):
    """One strategy over all seeds."""

    name: str
    seeds: list[int]
    #: per seed: best-so-far divided by the table optimum, one value per trial
    curves: list[list[float]]
    auc: list[float]
    trials_to_95: list[int | None]
    trials_to_99: list[int | None]
    final: list[float]
    infeasible: int = 0
    stopped_early: int = 0
    seconds: float = 0.0
    #: per seed, the strategy's counters (LLM calls, drops, repairs, ...)
    counters: list[dict[str, int]] = Field(default_factory=list)
    #: a few diagnostic notes (the first seeds' last notes)
    notes: list[str] = Field(default_factory=list)

    def summary(self, trials: int) -> dict[str, Any]:
        def censored(values: list[int | None]) -> dict[str, Any]:
            reached = [v for v in values if v is not None]
            filled = [v if v is not None else trials for v in values]
            return {
                "mean": statistics.fmean(filled) if filled else None,
                "median": statistics.median(filled) if filled else None,
                "reached": len(reached),
                "censored": len(values) - len(reached),
            }

        totals: dict[str, int] = {}
        for c in self.counters:
            for k, v in c.items():
                totals[k] = totals.get(k, 0) + v
        return {
            "strategy": self.name,
            "auc": statistics.fmean(self.auc) if self.auc else None,
            "trials_to_95": censored(self.trials_to_95),
            "trials_to_99": censored(self.trials_to_99),
            "final": statistics.fmean(self.final) if self.final else None,
            "infeasible": self.infeasible,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds,
            "counters": totals,
        }


class TaskInfo(BaseModel):
    seed: int
    subtasks: list[str]
    budget: float
    optimum: float
    optimum_config: dict[str, dict[str, Any]]
    rows: int


class BenchReport(BaseModel):
    seeds: list[int]
    trials: int
    n_subtasks: int | None = None
    noise: float
    max_distance: float
    model: str | None = None
    strategies: list[StrategyRun] = Field(default_factory=list)
    #: strategy name -> why it did not run
    skipped: dict[str, str] = Field(default_factory=dict)
    tasks: list[TaskInfo] = Field(default_factory=list)
    seconds: float = 0.0

    def summaries(self) -> list[dict[str, Any]]:
        return [s.summary(self.trials) for s in self.strategies]

    def to_json_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["summary"] = self.summaries()
        return data


ProgressFn = Callable[[str, int, int], None]


async def run_tts_bench(*, seeds: int | Sequence[int] = 20, trials: int = 100,
                        strategies: Sequence[str] | None = None, model: ChatModel | None = None,
                        n_subtasks: int | None = None, noise: float = 0.004, max_distance: float = 0.25,
                        progress: ProgressFn | None = None) -> BenchReport:
    """Run ``strategies`` on ``seeds`` synthetic tasks for ``trials`` evaluations each.

    LLM-driven strategies run only when ``model`` is given; otherwise they are listed in
    ``skipped`` with the reason.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ConfigurationError("no seeds to run", hint="pass --seeds 1 or more")
    if trials < 1:
        raise ConfigurationError("trials must be at least 1", hint="pass --trials 1 or more")
    names = list(strategies) if strategies else list(DEFAULT_STRATEGIES)
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ConfigurationError(f"unknown strategies: {', '.join(unknown)}",
                                 hint=f"choose from: {', '.join(STRATEGIES)}")

    started = time.perf_counter()
    report = BenchReport(seeds=seed_list, trials=trials, n_subtasks=n_subtasks, noise=noise,
                         max_distance=max_distance, model=getattr(model, "name", None) if model else None)
    tasks: dict[int, SyntheticTask] = {}
    for seed in seed_list:
        task = generate_task(seed, n_subtasks=n_subtasks, noise=noise)
        tasks[seed] = task
        config, value, _ = task.table.optimum(task.space.budget) or (None, 0.0, 0.0)
        report.tasks.append(TaskInfo(seed=seed, subtasks=task.space.names, budget=task.space.budget,
                                     optimum=value,
                                     optimum_config=task.space.config_to_dict(config) if config else {},
                                     rows=len(task.table)))

    for name in names:
        cls = STRATEGIES[name]
        if cls.uses_llm and model is None:
            report.skipped[name] = "no model configured (pass --base-url and --model to run LLM strategies)"
            continue
        missing = cls.missing_dependency()
        if missing:
            report.skipped[name] = missing
            continue
        report.strategies.append(await _run_strategy(name, tasks, seed_list, trials, model, max_distance, progress))
    report.seconds = time.perf_counter() - started
    return report


async def _run_strategy(name: str, tasks: dict[int, SyntheticTask], seeds: list[int], trials: int,
                        model: ChatModel | None, max_distance: float, progress: ProgressFn | None) -> StrategyRun:
    started = time.perf_counter()
    done = 0

    async def one(seed: int) -> tuple[int, Any]:
        nonlocal done
        task = tasks[seed]
        env = LookupEnvironment(task.table, task.space.budget, max_distance=max_distance)
        strategy = make_strategy(name, task.space, seed=seed, model=model)
        result = await run_search(strategy, env, trials)
        done += 1
        if progress is not None:
            progress(name, done, len(seeds))
        return seed, result

    if STRATEGIES[name].uses_llm:
        gate = asyncio.Semaphore(LLM_CONCURRENCY)

        async def gated(seed: int) -> tuple[int, Any]:
            async with gate:
                return await one(seed)

        results = dict(await asyncio.gather(*(gated(s) for s in seeds)))
    else:
        results = dict([await one(s) for s in seeds])

    run = StrategyRun(name=name, seeds=seeds, curves=[], auc=[], trials_to_95=[], trials_to_99=[], final=[])
    for seed in seeds:
        result = results[seed]
        optimum = tasks[seed].table.optimum(tasks[seed].space.budget)
        curve = normalized_curve([t.score for t in result.trials], optimum[1] if optimum else 1.0, trials)
        run.curves.append([round(v, 4) for v in curve])
        run.auc.append(auc(curve))
        run.trials_to_95.append(trials_to(curve, 0.95))
        run.trials_to_99.append(trials_to(curve, 0.99))
        run.final.append(curve[-1])
        run.infeasible += result.infeasible
        run.stopped_early += int(result.stopped_early is not None)
        diag = result.diagnostics
        run.counters.append(dict(diag.get("counters", {})))
        if len(run.notes) < 12:
            run.notes.extend(str(n) for n in list(diag.get("notes", []))[-3:])
    run.seconds = time.perf_counter() - started
    return run
