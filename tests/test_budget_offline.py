"""The offline environment: AgentTTS lookup semantics, the synthetic generator's properties, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from agentflow.budget.offline.generator import generate_task
from agentflow.budget.offline.metrics import auc, best_so_far, normalized_curve, trials_to
from agentflow.budget.offline.table import LookupEnvironment, TTSTable
from agentflow.budget.space import SubtaskChoice


def cfg(*pairs: tuple[str, int]):
    return tuple(SubtaskChoice(model=m, samples=s) for m, s in pairs)


def record(m1: str, s1: int, m2: str, s2: int, cost: float, score: float) -> dict:
    return {"config": {"a": {"model": m1, "samples": s1}, "b": {"model": m2, "samples": s2}},
            "cost": cost, "scores": {"score": score, "stage_a": score / 2}}


@pytest.fixture
def table() -> TTSTable:
    rows = [
        record("x", 1, "y", 1, 10, 0.50),
        record("x", 4, "y", 1, 40, 0.60),
        record("x", 8, "y", 8, 80, 0.70),
        record("x", 16, "y", 16, 160, 0.90),   # best, but expensive
        record("x", 4, "y", 4, 50, 0.55),     # tied in distance with the row below for (x6, y2)
        record("x", 8, "y", 2, 60, 0.65),
        record("z", 4, "y", 4, 45, 0.99),     # other model tuple
    ]
    return TTSTable.from_records(["a", "b"], rows)


async def test_exact_match_returns_the_row(table):
    env = LookupEnvironment(table, budget=100)
    result = await env.evaluate(cfg(("x", 4), ("y", 1)))
    assert result.config == cfg(("x", 4), ("y", 1))
    assert result.scores == {"score": 0.60, "stage_a": 0.30} and result.cost == 40
    assert result.note is None


async def test_only_the_same_model_tuple_is_considered(table):
    env = LookupEnvironment(table, budget=100, max_distance=5)
    # the x-rows (x8, y8) would match exactly; the only z-row is 2.0 away (norms 4 and 4)
    result = await env.evaluate(cfg(("z", 8), ("y", 8)))
    assert result.config == cfg(("z", 4), ("y", 4))
    missing = await env.evaluate(cfg(("w", 4), ("y", 4)))
    assert missing.config is None and "no table rows" in (missing.note or "")


async def test_rows_over_budget_are_never_returned(table):
    env = LookupEnvironment(table, budget=100, max_distance=10)
    result = await env.evaluate(cfg(("x", 16), ("y", 16)))
    assert result.cost <= 100
    assert result.config == cfg(("x", 8), ("y", 8))
    assert (await LookupEnvironment(table, budget=5).evaluate(cfg(("x", 1), ("y", 1)))).config is None


async def test_nearest_by_normalized_l1_and_rejection_beyond_distance(table):
    # norms: max samples per column within the x/y block = 16 and 16
    env = LookupEnvironment(table, budget=100, max_distance=0.3)
    near = await env.evaluate(cfg(("x", 7), ("y", 8)))   # 1/16 from (x8, y8)
    assert near.config == cfg(("x", 8), ("y", 8)) and "nearest row" in (near.note or "")
    strict = LookupEnvironment(table, budget=100, max_distance=0.05)
    rejected = await strict.evaluate(cfg(("x", 7), ("y", 8)))
    assert rejected.config is None and "limit" in (rejected.note or "")


async def test_ties_resolve_to_the_best_row(table):
    env = LookupEnvironment(table, budget=100, max_distance=1.0)
    # (x6, y3): |6-4|+|3-4| = 3 and |6-8|+|3-2| = 3 -> tie; 0.65 beats 0.55
    result = await env.evaluate(cfg(("x", 6), ("y", 3)))
    assert result.config == cfg(("x", 8), ("y", 2))
    assert result.scores["score"] == 0.65


def test_optimum_respects_the_budget(table):
    config, value, cost = table.optimum(100)
    assert value == 0.99 and cost == 45 and config == cfg(("z", 4), ("y", 4))
    assert table.optimum(1) is None


def test_table_round_trips_through_json(table, tmp_path):
    path = tmp_path / "t.json"
    table.save(path)
    again = TTSTable.load(path)
    assert len(again) == len(table)
    assert again.optimum(100) == table.optimum(100)


# --- the generator --------------------------------------------------------------------------------


def test_generator_is_deterministic_per_seed():
    a, b, c = generate_task(7), generate_task(7), generate_task(8)
    assert a.space.budget == b.space.budget and a.space.names == b.space.names
    assert a.table.optimum(a.space.budget) == b.table.optimum(b.space.budget)
    assert (a.space.budget, a.space.names) != (c.space.budget, c.space.names)


@pytest.mark.parametrize("seed", range(6))
def test_saturation_more_samples_help_less_and_less(seed):
    task = generate_task(seed, noise=0.0)
    base = task.space.cheapest()
    for i, sub in enumerate(task.space.subtasks):
        for model in sub.models:
            levels = range(1, 65)
            qualities = [task.stage_quality(base[:i] + (SubtaskChoice(model=model, samples=s),) + base[i + 1:])[i]
                         for s in levels]
            gains = np.diff(qualities)  # per sample: the curve over every count 1..64
            assert gains[0] > 0 and (gains >= -1e-12).all(), "more samples help, never hurt"
            assert (np.diff(gains) <= 1e-12).all(), "each further sample helps less than the one before"
            assert gains[-1] < 0.3 * gains[0], "and by 64 samples the curve has flattened"


def test_subtasks_prefer_different_models_at_full_sampling():
    seen_mixed = 0
    for seed in range(10):
        task = generate_task(seed, noise=0.0)
        preferred = [t.preferred for t in task.truth]
        if len(task.truth) > 1:
            assert len(set(preferred)) > 1, "subtasks never all prefer the same candidate rank"
        # the truth is visible in the table: at a saturating sample count the preferred model
        # gives its subtask the highest quality
        base = task.space.cheapest()
        for i, t in enumerate(task.truth):
            q = {m: task.stage_quality(base[:i] + (SubtaskChoice(model=m, samples=64),) + base[i + 1:])[i]
                 for m in t.models}
            assert max(q, key=q.get) == t.models[t.preferred]
        seen_mixed += len({t.models[t.preferred] for t in task.truth}) > 1
    assert seen_mixed >= 8


def test_upstream_quality_changes_what_downstream_needs():
    checked = 0
    for seed in range(12):
        task = generate_task(seed, noise=0.0)
        if len(task.space) < 2:
            continue
        checked += 1
        weak_up = SubtaskChoice(model=task.space.models_by_size(0)[0], samples=1)
        strong_up = SubtaskChoice(model=task.truth[0].models[task.truth[0].preferred], samples=64)
        rest = task.space.cheapest()[2:]
        down_model = task.truth[1].models[task.truth[1].preferred]

        def needed(up: SubtaskChoice, task=task, down_model=down_model, rest=rest) -> tuple[int, float]:
            curve = [task.stage_quality((up, SubtaskChoice(model=down_model, samples=s)) + rest)[1]
                     for s in range(1, 65)]
            top = curve[-1]
            return next(s for s, q in enumerate(curve, start=1) if q >= 0.95 * top), top

        s_weak, top_weak = needed(weak_up)
        s_strong, top_strong = needed(strong_up)
        assert top_strong > top_weak, "a stronger upstream raises the downstream ceiling"
        assert s_strong <= s_weak, "and the downstream needs no more samples to approach it"
    assert checked >= 5


def test_noise_is_small_and_seeded_and_the_budget_binds():
    clean, noisy = generate_task(3, noise=0.0), generate_task(3, noise=0.01)
    models = clean.table.model_tuples()[0]
    s_clean, _, m_clean = clean.table.rows(models)
    s_noisy, _, m_noisy = noisy.table.rows(models)
    assert (s_clean == s_noisy).all()
    diff = m_noisy["score"] - m_clean["score"]
    assert 0.003 < diff.std() < 0.02
    # the best configuration without a budget is out of reach: the search must trade off
    unconstrained = clean.table.optimum(float("inf"))
    assert unconstrained is not None and unconstrained[2] > clean.space.budget
    first = tuple(SubtaskChoice(model=m, samples=int(s)) for m, s in zip(models, s_clean[0], strict=True))
    assert clean.true_score(first) == pytest.approx(m_clean["score"][0])


# --- metrics ---------------------------------------------------------------------------------------


def test_best_so_far_auc_and_trials_to():
    assert best_so_far([None, 0.2, 0.1, None, 0.5]) == [0.0, 0.2, 0.2, 0.2, 0.5]
    curve = normalized_curve([0.4, None, 0.8, 0.99], optimum=1.0, length=6)
    assert curve == [0.4, 0.4, 0.8, 0.99, 0.99, 0.99]
    assert auc([0.5, 1.0]) == 0.75
    assert trials_to(curve, 0.95) == 4
    assert trials_to(curve, 0.995) is None
    with pytest.raises(ValueError):
        normalized_curve([0.1], optimum=0.0, length=1)
