"""Seeded synthetic allocation tasks that behave like AgentTTS's measured ones.

Measured tables need days of GPU time; the generator produces tables with the same three
properties AgentTTS found in its pilot experiments, so strategies can be compared over many
seeds in seconds:

1. **Saturation.** For a fixed model, quality as a function of sample count follows
   ``q(S) = a - (a - s) * exp(-(S - 1) / tau)``, i.e. ``a - b*exp(-S/tau)``: one sample gives
   ``s``, more samples approach the ceiling ``a`` with diminishing returns. Smaller models start
   lower and need more samples (larger ``tau``).
2. **Per-subtask model preference.** Each subtask has a preferred candidate (drawn at random, not
   always the largest); a candidate's ceiling drops with its rank distance from it. Subtasks never
   all prefer the same candidate rank.
3. **Coupling.** Subtasks form a chain; subtask ``i`` receives the quality ``u`` of its upstream
   result. A weak upstream lowers the downstream ceiling (``a * (1 - lambda * (1 - u))``) and makes
   the downstream need more samples (``tau * (1 + kappa * (1 - u))``), so how much budget a node
   needs depends on what was spent before it.

The end-to-end score is the last subtask's quality, plus Gaussian noise (a finite development
set), clipped to [0, 1]. Costs use the space's cost model (AgentTTS FLOPs by default).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from agentflow.budget.offline.table import TTSTable
from agentflow.budget.registry import ModelRegistry, ModelSpec
from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice, SubtaskSpace

#: two model families with the parameter counts AgentTTS used
FAMILIES: dict[str, list[tuple[str, float]]] = {
    "llama": [("llama-3b", 3e9), ("llama-8b", 8e9), ("llama-70b", 70e9)],
    "qwen": [("qwen-7b", 7e9), ("qwen-32b", 32e9), ("qwen-72b", 72e9)],
}
STAGE_NAMES = ["retrieve", "decompose", "select_tools", "reason", "code", "verify", "answer"]
PROMPT_TOKENS = [256, 512, 1024, 2048]
TOKENS_PER_SAMPLE = [32, 64, 128, 256]


@dataclass(frozen=True)
class CurveParams:
    """Quality curve of one candidate model on one subtask (before coupling)."""

    ceiling: float  # a
    single: float  # s = q(1)
    tau: float


@dataclass
class SubtaskTruth:
    name: str
    models: list[str]
    #: index into ``models`` (ascending size) of the preferred candidate
    preferred: int
    curves: dict[str, CurveParams]
    #: how strongly a weak upstream lowers this subtask's ceiling (0 for the first subtask)
    coupling_ceiling: float
    #: how strongly a weak upstream raises the samples this subtask needs
    coupling_tau: float


@dataclass
class SyntheticTask:
    """A generated problem: the space strategies search, the table that answers, and the truth."""

    seed: int
    space: AllocationSpace
    table: TTSTable
    truth: list[SubtaskTruth]
    noise: float
    budget_ratio: float
    extras: dict[str, float] = field(default_factory=dict)

    def stage_quality(self, config: Config) -> list[float]:
        """Noise-free quality after each subtask (the chain's ``u`` values)."""
        u = 1.0
        out = []
        for sub, choice in zip(self.truth, config, strict=True):
            u = float(_quality(sub, sub.curves[choice.model], np.array([choice.samples], dtype=float),
                               np.array([u]))[0])
            out.append(u)
        return out

    def true_score(self, config: Config) -> float:
        """Noise-free end-to-end score."""
        return self.stage_quality(config)[-1]


def _quality(sub: SubtaskTruth, curve: CurveParams, samples: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    weak = 1.0 - upstream
    scale = 1.0 - sub.coupling_ceiling * weak
    ceiling = curve.ceiling * scale
    single = curve.single * scale
    tau = curve.tau * (1.0 + sub.coupling_tau * weak)
    return ceiling - (ceiling - single) * np.exp(-(samples - 1.0) / tau)


def generate_task(seed: int, *, n_subtasks: int | None = None, noise: float = 0.004,
                  budget_ratio: float | None = None, max_samples: int = 64) -> SyntheticTask:
    """Generate the allocation task for ``seed`` (same seed, same task).

    ``budget_ratio`` sets the budget as a fraction of the cost of the best configuration without
    a budget, sampled to its saturation point (default: drawn from [0.3, 0.7]).
    """
    rng = random.Random(seed)
    k = n_subtasks if n_subtasks is not None else rng.choice([2, 3])
    if not 1 <= k <= len(STAGE_NAMES):
        raise ValueError(f"n_subtasks must be in 1..{len(STAGE_NAMES)}")
    registry = ModelRegistry(ModelSpec(name=n, params=p) for fam in FAMILIES.values() for n, p in fam)

    picks = sorted(rng.sample(range(len(STAGE_NAMES)), k))
    names = [STAGE_NAMES[i] for i in picks]
    families = [rng.choice(list(FAMILIES)) for _ in range(k)]
    candidates = [[n for n, _ in FAMILIES[f]] for f in families]
    # preferred candidate rank per subtask; never the same rank everywhere (finding 2)
    preferred = [rng.randrange(len(c)) for c in candidates]
    if k > 1 and len(set(preferred)) == 1:
        j = rng.randrange(k)
        preferred[j] = rng.choice([r for r in range(len(candidates[j])) if r != preferred[j]])

    truth: list[SubtaskTruth] = []
    subtasks: list[SubtaskSpace] = []
    for i in range(k):
        models = candidates[i]
        params = [registry.get(m).params for m in models]
        top = max(params)
        best_ceiling = rng.uniform(0.80, 0.97)
        drop = rng.uniform(0.06, 0.20)
        single_gap = rng.uniform(0.25, 0.55)
        tau_top = rng.uniform(1.0, 3.0)
        tau_growth = rng.uniform(0.2, 0.5)
        curves = {}
        for r, (m, p) in enumerate(zip(models, params, strict=True)):
            ceiling = best_ceiling - drop * abs(r - preferred[i]) - rng.uniform(0.0, 0.02)
            gap = min(0.85, single_gap * (top / p) ** 0.2)
            curves[m] = CurveParams(ceiling=ceiling, single=ceiling * (1.0 - gap),
                                    tau=tau_top * (top / p) ** tau_growth)
        truth.append(SubtaskTruth(
            name=names[i], models=models, preferred=preferred[i], curves=curves,
            coupling_ceiling=0.0 if i == 0 else rng.uniform(0.3, 0.7),
            coupling_tau=0.0 if i == 0 else rng.uniform(0.5, 2.0),
        ))
        subtasks.append(SubtaskSpace(
            name=names[i], models=models, prompt_tokens=rng.choice(PROMPT_TOKENS),
            tokens_per_sample=rng.choice(TOKENS_PER_SAMPLE), max_samples=max_samples,
            description=f"stage {i + 1} of {k}: {names[i].replace('_', ' ')}",
        ))

    # The budget is a fraction of what the best configuration would cost without any budget:
    # every subtask on its preferred model, sampled up to its saturation point (99% of the way
    # from one sample to the ceiling). It therefore binds: the search has to trade samples against
    # models across subtasks.
    ratio = budget_ratio if budget_ratio is not None else rng.uniform(0.3, 0.7)
    free_space = AllocationSpace(subtasks, budget=math.inf, registry=registry)
    unconstrained = 0.0
    for i in range(k):
        best = truth[i].models[truth[i].preferred]
        saturated = 1.0 + truth[i].curves[best].tau * math.log(100.0)
        level = free_space.snap(i, math.ceil(saturated))
        unconstrained += free_space.choice_cost(i, SubtaskChoice(model=best, samples=level))
    budget = max(ratio * unconstrained, free_space.min_cost() * 1.5)
    space = AllocationSpace(subtasks, budget=budget, registry=registry)

    table = TTSTable(names, objective="score")
    np_rng = np.random.default_rng(seed)
    levels = [np.array(space.levels(i), dtype=float) for i in range(k)]
    grids = np.meshgrid(*levels, indexing="ij")
    sample_cols = [g.reshape(-1) for g in grids]
    for models in space.all_model_tuples():
        u = np.ones_like(sample_cols[0])
        stage_cols: dict[str, np.ndarray] = {}
        cost = np.zeros_like(u)
        for i, m in enumerate(models):
            u = _quality(truth[i], truth[i].curves[m], sample_cols[i], u)
            stage_cols[f"stage_{names[i]}"] = u
            unit = np.array([space.choice_cost(i, SubtaskChoice(model=m, samples=int(s))) for s in levels[i]])
            cost = cost + unit[np.searchsorted(levels[i], sample_cols[i])]
        score = np.clip(u + np_rng.normal(0.0, noise, size=u.shape), 0.0, 1.0) if noise > 0 else u
        table.add_block(models, np.stack(sample_cols, axis=1), cost, {"score": score, **stage_cols})
    return SyntheticTask(seed=seed, space=space, table=table, truth=truth, noise=noise, budget_ratio=ratio)
