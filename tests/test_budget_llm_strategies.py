"""AgentTTS and LLM zero-shot strategies with ScriptedModel standing in for the LLM."""

from __future__ import annotations

import json
import random

import pytest

from agentflow.budget.offline.generator import generate_task
from agentflow.budget.offline.table import LookupEnvironment
from agentflow.budget.search import run_search
from agentflow.budget.space import SubtaskChoice
from agentflow.budget.strategies import AgentTTSStrategy, LLMZeroShotStrategy
from agentflow.budget.strategies.llm_common import candidates_schema, validate_candidates
from agentflow.budget.strategies.probes import insight_probes
from agentflow.errors import ServerError
from agentflow.llm.types import ChatRequest
from agentflow.testing import ScriptedModel, reply


def schema_candidates(request: ChatRequest, rng: random.Random, k: int = 3) -> list[dict]:
    """Valid-looking candidates read off the request's JSON schema (what a constrained server
    would allow): random models, small sample counts."""
    items = request.output_schema.json_schema["properties"]["candidates"]["items"]["properties"]
    out = []
    for _ in range(k):
        out.append({name: {"model": rng.choice(p["properties"]["model"]["enum"]),
                           "samples": rng.choice(p["properties"]["samples"]["enum"][:4])}
                    for name, p in items.items()})
    return out


def fake_llm(seed: int = 0):
    rng = random.Random(seed)

    def answer(request: ChatRequest):
        if request.output_schema.name == "tts_insights":
            return reply({"insights": ["retrieve prefers the small model", "answer saturates near 8 samples"]})
        return reply({"candidates": schema_candidates(request, rng)})

    return answer


@pytest.fixture
def task():
    return generate_task(11)


async def test_agenttts_probes_first_then_rounds_of_insights_and_batches(task):
    model = ScriptedModel(fake_llm())
    strategy = AgentTTSStrategy(task.space, model, seed=1, batch_size=4)
    env = LookupEnvironment(task.table, task.space.budget)
    result = await run_search(strategy, env, 30)

    probes = list(dict.fromkeys(p.config for p in insight_probes(task.space)[0]))
    assert [t.proposed for t in result.trials[: len(probes)]] == probes  # no LLM call for the probes
    assert len(result.trials) == 30 and result.infeasible == 0
    roles = [c.request.output_schema.name for c in model.calls]
    assert roles[:2] == ["tts_insights", "tts_candidates"]
    assert roles.count("tts_insights") == roles.count("tts_candidates") == strategy.diagnostics()["counters"]["rounds"]
    assert strategy.insights[0] == ["retrieve prefers the small model", "answer saturates near 8 samples"]
    assert all(c.request.context.role == "budget_search" for c in model.calls)


async def test_agenttts_prompts_carry_problem_history_and_insights(task):
    model = ScriptedModel(fake_llm())
    strategy = AgentTTSStrategy(task.space, model, seed=1, batch_size=3, task_description="multi-hop QA")
    await run_search(strategy, LookupEnvironment(task.table, task.space.budget), 20)

    first_insight_prompt = model.calls[0].request.messages[-1].content
    assert "multi-hop QA" in first_insight_prompt
    assert "probes" in first_insight_prompt and "at the same cost" in first_insight_prompt
    assert f"{task.space.budget:.4g}" in first_insight_prompt
    for sub in task.space.subtasks:
        assert sub.name in first_insight_prompt
        for m in sub.models:
            assert f"model {m}" in first_insight_prompt  # with its per-sample cost
    assert "-> score=" in first_insight_prompt  # the probe history with scores

    later = [c.request.messages[-1].content for c in model.calls if c.request.output_schema.name == "tts_insights"][1]
    assert "Recent search history" in later and "level off" in later and "share one budget" in later

    candidates_prompt = strategy.last_prompts["candidates"]
    assert "retrieve prefers the small model" in candidates_prompt
    assert "Propose 3 new configurations" in candidates_prompt
    schema = model.calls[1].request.output_schema.json_schema
    assert schema == candidates_schema(task.space, 3)


def test_validation_repairs_snaps_and_drops_with_reasons(task):
    space = task.space
    names = space.names
    good = {n: {"model": space.subtasks[i].models[0], "samples": 1} for i, n in enumerate(names)}
    off_ladder = {n: {"model": space.subtasks[i].models[0], "samples": 5 if i == 0 else "2"}
                  for i, n in enumerate(names)}
    over = {n: {"model": space.models_by_size(i)[-1], "samples": 64} for i, n in enumerate(names)}
    unknown = dict(good, **{names[0]: {"model": "gpt-9", "samples": 1}})
    missing = {names[0]: good[names[0]]}
    bad_samples = dict(good, **{names[0]: {"model": space.subtasks[0].models[0], "samples": "lots"}})
    checked = validate_candidates(space, [good, off_ladder, over, unknown, missing, bad_samples, "nonsense"])

    assert len(checked.configs) >= 2
    assert all(space.feasible(c) for c in checked.configs)
    reasons = " | ".join(checked.dropped)
    assert "gpt-9" in reasons and "is not a candidate" in reasons
    assert "missing" in reasons and "not a positive integer" in reasons and "not an object" in reasons
    notes = " | ".join(checked.repaired)
    assert "5 samples snapped to" in notes
    if space.repair(tuple(SubtaskChoice(**over[n]) for n in names)) is not None:
        assert "over the budget" in notes
    else:
        assert "exceeds the budget" in reasons


async def test_agenttts_survives_malformed_output_and_model_failures(task):
    rounds = {"n": 0}

    def flaky(request: ChatRequest):
        rounds["n"] += 1
        if request.output_schema.name == "tts_insights":
            return ServerError("server down") if rounds["n"] < 4 else "insight: not json at all"
        if rounds["n"] < 4:
            return "```json\n{\"candidates\": [ {\"broken\": true}, ]\n```"  # fenced, trailing comma
        first = {n: {"model": task.space.subtasks[i].models[0], "samples": 1} for i, n in enumerate(task.space.names)}
        return "Sure! " + json.dumps({"candidates": [first]}) + " hope that helps"

    strategy = AgentTTSStrategy(task.space, ScriptedModel(flaky), seed=2, batch_size=4)
    result = await run_search(strategy, LookupEnvironment(task.table, task.space.budget), 24)
    assert len(result.trials) == 24 and result.infeasible == 0
    counters = result.diagnostics["counters"]
    assert counters["llm_failures"] >= 1 and counters["dropped"] >= 1 and counters["filled"] >= 1
    notes = " ".join(strategy._notes)
    assert "model call failed: ServerError" in notes
    assert "variations of the best configuration" in notes
    assert any(i == ["insight: not json at all"] for i in strategy.insights)  # raw text kept as an insight


async def test_agenttts_over_budget_proposals_are_repaired_never_proposed(task):
    def greedy_llm(request: ChatRequest):
        if request.output_schema.name == "tts_insights":
            return reply({"insights": ["use the largest models with many samples"]})
        return reply({"candidates": [
            {n: {"model": task.space.models_by_size(i)[-1], "samples": 64} for i, n in enumerate(task.space.names)}
        ]})

    strategy = AgentTTSStrategy(task.space, ScriptedModel(greedy_llm), seed=3, batch_size=2)
    result = await run_search(strategy, LookupEnvironment(task.table, task.space.budget), 16)
    assert result.infeasible == 0
    assert all(task.space.cost(t.proposed) <= task.space.budget for t in result.trials)


async def test_zero_shot_sees_no_scores_and_stays_within_budget(task):
    model = ScriptedModel(fake_llm(5))
    strategy = LLMZeroShotStrategy(task.space, model, seed=5, batch_size=4)
    result = await run_search(strategy, LookupEnvironment(task.table, task.space.budget), 12)
    assert len(result.trials) == 12 and result.infeasible == 0
    prompts = [c.request.messages[-1].content for c in model.calls]
    assert len(prompts) == 3
    assert all("score=" not in p for p in prompts)
    assert "(none)" in prompts[0] and "(none)" not in prompts[1]  # later calls list what was tried
    proposals = [t.proposed for t in result.trials]
    assert len(set(proposals)) == len(proposals)
