"""Cost models, the model registry and the allocation space."""

from __future__ import annotations

import pytest

from agentflow.budget.cost import (
    DollarCost,
    FlopsCost,
    TokenCost,
    cost_model_by_name,
    estimate_call,
    flops_cost,
)
from agentflow.budget.registry import ModelPrice, ModelRegistry, ModelSpec, guess_params
from agentflow.budget.space import AllocationSpace, SubtaskChoice, SubtaskSpace, default_sample_ladder
from agentflow.errors import ConfigurationError


def spec(name: str, params: float, **kw) -> ModelSpec:
    return ModelSpec(name=name, params=params, **kw)


# --- FLOPs formula: cost = (M/3e9) * (Np + S*Nd) / 64 - 2 -----------------------------------------


def test_unit_call_costs_exactly_one():
    # 3B params, 128 prompt tokens, one sample of 64 tokens: (1) * (192) / 64 - 2 = 1
    assert flops_cost(3e9, 128, 64) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("params", "np_", "nd", "s", "expected"),
    [
        (70e9, 1024, 128, 4, 558.0),          # 70/3 * (1024 + 512) / 64 - 2 = 23.333.. * 24 - 2
        (8e9, 256, 64, 1, 8 / 3 * 5 - 2),     # 8/3 * 320 / 64 - 2 = 11.333..
        (7e9, 2048, 128, 10, 7 / 3 * 52 - 2),  # (2048 + 1280) / 64 = 52
        (3e9, 2048, 256, 64, 1 * (2048 + 16384) / 64 - 2),
    ],
)
def test_flops_formula_hand_computed(params, np_, nd, s, expected):
    cost = FlopsCost()
    assert estimate_call(cost, spec("m", params), np_, nd, s) == pytest.approx(expected)
    # the prompt is counted once however many samples share it
    assert cost.cost(spec("m", params), np_, s * nd) == pytest.approx(expected)


def test_flops_clamps_tiny_calls_at_zero_but_can_report_raw():
    tiny = spec("tiny", 8e5)
    assert FlopsCost().cost(tiny, 200, 32) == 0.0
    assert FlopsCost(clamp=False).cost(tiny, 200, 32) == pytest.approx(8e5 / 3e9 * 232 / 64 - 2)


def test_token_and_dollar_costs():
    m = spec("api", 1e9, prices=ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5))
    assert TokenCost().cost(m, 1000, 300) == 1300
    # 600 uncached * 2 + 400 cached * 0.5 + 300 * 8, per million
    assert DollarCost().cost(m, 1000, 300, cached_tokens=400) == pytest.approx((1200 + 200 + 2400) / 1e6)
    unpriced = spec("free", 1e9)
    with pytest.raises(ConfigurationError, match="no prices"):
        DollarCost().cost(unpriced, 10, 10)
    assert DollarCost(require_prices=False).cost(unpriced, 10, 10) == 0.0


def test_cost_model_by_name():
    assert isinstance(cost_model_by_name("FLOPS"), FlopsCost)
    assert isinstance(cost_model_by_name("tokens"), TokenCost)
    assert isinstance(cost_model_by_name("dollars"), DollarCost)
    with pytest.raises(ConfigurationError, match="unknown cost unit"):
        cost_model_by_name("joules")


def test_estimate_rejects_zero_samples():
    with pytest.raises(ConfigurationError):
        estimate_call(FlopsCost(), spec("m", 3e9), 10, 10, 0)


# --- registry ---------------------------------------------------------------------------------------


def test_registry_orders_by_size_and_lists_smaller_models_largest_first():
    reg = ModelRegistry([spec("big", 70e9), spec("small", 3e9), spec("mid", 8e9)])
    assert reg.names() == ["small", "mid", "big"]
    assert [s.name for s in reg.smaller_than("big")] == ["mid", "small"]
    assert [s.name for s in reg.smaller_than("big", among=["small"])] == ["small"]
    assert reg.smaller_than("small") == []


def test_registry_errors_say_what_to_do():
    reg = ModelRegistry([spec("a", 1e9)])
    with pytest.raises(ConfigurationError, match="registered twice"):
        reg.add(spec("a", 2e9))
    with pytest.raises(ConfigurationError) as info:
        reg.get("nope")
    assert "known: a" in str(info.value) and "ModelRegistry.add" in str(info.value)
    with pytest.raises(ConfigurationError, match="models"):
        ModelRegistry.from_dict({"entries": []})
    with pytest.raises(ConfigurationError, match="invalid model registry entry"):
        ModelRegistry.from_dict({"models": [{"name": "x", "params": -1}]})


def test_registry_round_trips_and_ensures_from_names(tmp_path):
    reg = ModelRegistry([spec("a", 1e9, endpoint="http://h:1/v1", prices=ModelPrice(input_per_mtok=1))])
    path = tmp_path / "models.json"
    path.write_text(__import__("json").dumps(reg.to_dict()))
    again = ModelRegistry.from_json(path)
    assert again.get("a") == reg.get("a")
    assert again.ensure("Qwen/Qwen2.5-7B-Instruct").params == 7e9
    assert again.ensure("custom", params=2e9).params == 2e9
    with pytest.raises(ConfigurationError, match="parameter count"):
        again.ensure("gpt-4o")
    assert guess_params("smollm-360M") == 360e6


# --- allocation space ---------------------------------------------------------------------------------


@pytest.fixture
def space() -> AllocationSpace:
    reg = ModelRegistry([spec("s", 3e9), spec("l", 70e9)])
    subtasks = [
        SubtaskSpace(name="retrieve", models=["s", "l"], prompt_tokens=1024, tokens_per_sample=64, max_samples=16),
        SubtaskSpace(name="answer", models=["s", "l"], prompt_tokens=256, tokens_per_sample=64, max_samples=16),
    ]
    return AllocationSpace(subtasks, budget=500.0, registry=reg)


def test_default_ladder_is_roughly_geometric():
    assert default_sample_ladder(64) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    assert default_sample_ladder(5) == [1, 2, 3, 4, 5]
    assert default_sample_ladder(1) == [1]


def test_space_cost_feasibility_and_problems(space):
    cheap = (SubtaskChoice(model="s", samples=1), SubtaskChoice(model="s", samples=1))
    # (1088/64 - 2) + (320/64 - 2) = 15 + 3
    assert space.cost(cheap) == pytest.approx(18.0)
    assert space.feasible(cheap)
    big = (SubtaskChoice(model="l", samples=16), SubtaskChoice(model="l", samples=16))
    assert not space.feasible(big)
    assert any("exceeds the budget" in p for p in space.problems(big))
    odd = (SubtaskChoice(model="x", samples=5), SubtaskChoice(model="s", samples=1))
    problems = space.problems(odd)
    assert any("not a candidate" in p for p in problems) and any("not an allowed level" in p for p in problems)


def test_repair_lowers_samples_keeps_models_and_fits(space):
    big = (SubtaskChoice(model="l", samples=16), SubtaskChoice(model="s", samples=16))
    fixed = space.repair(big)
    assert fixed is not None and space.feasible(fixed)
    assert [c.model for c in fixed] == ["l", "s"]
    assert space.repair((SubtaskChoice(model="l", samples=1),) * 2) is None  # 70B twice does not fit at all


def test_max_samples_snap_and_cheapest(space):
    assert space.max_samples_for(0, "s", 15.0) == 1
    assert space.max_samples_for(0, "l", 10.0) is None
    assert space.snap(0, 5) == 4 and space.snap(0, 7) == 6 and space.snap(0, 100) == 16
    assert [str(c) for c in space.cheapest()] == ["sx1", "sx1"]
    as_dict = space.config_to_dict(space.cheapest())
    assert space.config_from_dict(as_dict) == space.cheapest()


def test_space_rejects_unworkable_setups():
    reg = ModelRegistry([spec("s", 3e9)])
    sub = SubtaskSpace(name="a", models=["s"], prompt_tokens=1024, tokens_per_sample=64)
    with pytest.raises(ConfigurationError, match="below the cheapest"):
        AllocationSpace([sub], budget=1.0, registry=reg)
    with pytest.raises(ConfigurationError, match="not in the budget registry"):
        AllocationSpace([sub.model_copy(update={"models": ["zzz"]})], budget=100, registry=reg)
    with pytest.raises(ConfigurationError, match="unique"):
        AllocationSpace([sub, sub], budget=100, registry=reg)
