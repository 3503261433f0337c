"""Planning: one structured call, repair of invalid plans, clear rejection, nested decomposition."""

from __future__ import annotations

import json
from typing import Any

from agentflow import ScriptedModel, Worker
from agentflow.errors import ServerError
from agentflow.llm.types import ChatRequest
from agentflow.testing import by_role, reply
from agentflow.workforce import (
    NodeExpandedEvent,
    Plan,
    PlanCreatedEvent,
    PlanFailedEvent,
    PlanInvalidEvent,
    PlanNode,
    PlanRepairedEvent,
    StaticPlanner,
    Workforce,
)


def echo(req: ChatRequest):
    return reply(f"RESULT-{req.context.node_id}")


def model(planner: Any, **roles: Any) -> ScriptedModel:
    roles.setdefault("worker", echo)
    roles.setdefault("answer", lambda req: reply("final"))
    return ScriptedModel(by_role(planner=planner, **roles))


def wf(m: ScriptedModel, **kw: Any) -> Workforce:
    kw.setdefault("critic", None)
    return Workforce([Worker("w", "general worker", model=m)], model=m, **kw)


GOOD = {"nodes": [{"id": "a", "goal": "A", "inputs": []}, {"id": "b", "goal": "B", "inputs": ["a"]}],
        "outputs": ["b"]}
CYCLIC = {"nodes": [{"id": "a", "goal": "A", "inputs": ["b"]}, {"id": "b", "goal": "B", "inputs": ["a"]}],
          "outputs": ["b"]}
DANGLING = {"nodes": [{"id": "a", "goal": "A", "inputs": ["ghost"]}], "outputs": ["a"]}


def last_user(req: ChatRequest) -> str:
    return [msg.content or "" for msg in req.messages if msg.role == "user"][-1]


async def test_planner_makes_one_structured_call_with_the_whole_dag() -> None:
    m = model([reply(GOOD)])
    result = await wf(m).run("do the thing")
    assert result.ok
    calls = m.calls_for(role="planner")
    assert len(calls) == 1
    req = calls[0].request
    assert req.output_schema is not None and req.output_schema.name == "plan"
    assert "inputs" in req.output_schema.json_schema["properties"]["nodes"]["items"]["properties"]
    assert [e.plan.ids for e in result.events_of(PlanCreatedEvent)] == [["a", "b"]]
    assert list(result.graph().edges) == [("a", "b")]


async def test_cyclic_plan_is_repaired_by_feedback() -> None:
    m = model([reply(CYCLIC), reply(GOOD)])
    result = await wf(m).run("req")
    assert result.ok
    invalid = result.events_of(PlanInvalidEvent)
    assert len(invalid) == 1 and "cycle" in invalid[0].issues[0]
    repaired = result.events_of(PlanRepairedEvent)
    assert len(repaired) == 1 and repaired[0].attempts == 2
    feedback = last_user(m.calls_for(role="planner")[1].request)
    assert "inputs form a cycle" in feedback and "corrected plan" in feedback
    assert result.state.plan_repairs == 1


async def test_repair_feedback_carries_only_the_latest_attempt() -> None:
    # a transcript of every failed plan would outgrow a small model's context window
    m = model([reply(CYCLIC), reply(DANGLING), reply(GOOD)])
    result = await wf(m).run("req")
    assert result.ok
    third = m.calls_for(role="planner")[2].request.messages
    assert [msg.role for msg in third] == ["system", "user", "assistant", "user"]
    assert "ghost" in (third[-1].content or "") and "cycle" not in (third[-1].content or "")


async def test_dangling_reference_is_repaired() -> None:
    m = model([reply(DANGLING), reply(GOOD)])
    result = await wf(m).run("req")
    assert result.ok
    assert "lists input 'ghost'" in last_user(m.calls_for(role="planner")[1].request)


async def test_non_json_planner_output_is_fed_back() -> None:
    m = model([reply("Sure! First I will search, then I will answer."), reply(GOOD)])
    result = await wf(m).run("req")
    assert result.ok
    assert "not JSON" in result.events_of(PlanInvalidEvent)[0].issues[0]


async def test_near_json_is_repaired_without_another_call() -> None:
    broken = json.dumps(GOOD)[:-2]  # cut off the closing brackets
    m = model([reply(broken)])
    result = await wf(m).run("req")
    assert result.ok
    assert len(m.calls_for(role="planner")) == 1


async def test_planner_model_errors_are_retried() -> None:
    m = ScriptedModel(by_role(planner=[ServerError("boom"), reply(GOOD)], worker=echo,
                              answer=lambda req: reply("final")))
    result = await wf(m).run("req")
    assert result.ok
    assert "model call failed" in result.events_of(PlanInvalidEvent)[0].issues[0]


async def test_unrepairable_plan_fails_the_run_clearly() -> None:
    m = model(lambda req: reply(CYCLIC))
    result = await wf(m).run("req")
    assert result.status == "failed"
    assert result.answer is None
    assert "no valid plan after 3 attempt(s)" in (result.error or "")
    assert "cycle" in (result.error or "")
    assert len(m.calls_for(role="planner")) == 3
    assert m.calls_for(role="worker") == []
    assert len(result.events_of(PlanFailedEvent)) == 1


async def test_given_invalid_plan_is_rejected_clearly() -> None:
    m = model([])
    bad = Plan(nodes=[PlanNode(id="a", goal="A", inputs=["b"]), PlanNode(id="b", goal="B", inputs=["a"])])
    result = await wf(m).run("req", plan=bad)
    assert result.status == "failed"
    assert "not a valid task DAG" in (result.error or "") and "cycle" in (result.error or "")
    static = await wf(m, planner=StaticPlanner(bad)).run("req")
    assert static.status == "failed" and "cycle" in (static.error or "")
    assert m.calls == []


async def test_single_node_fallback_when_planning_fails() -> None:
    m = model(lambda req: reply("no plan for you"))
    result = await wf(m, on_plan_failure="single_node").run("what is 2+2?")
    assert result.ok
    assert list(result.nodes) == ["task"]
    assert "what is 2+2?" in last_user(m.calls_for(role="worker", node_id="task")[0].request)


async def test_nested_decomposition_stops_at_the_depth_limit() -> None:
    always_decompose = {"nodes": [{"id": "d", "goal": "go deeper", "handler": "decompose"}], "outputs": ["d"]}
    m = model(lambda req: reply(always_decompose))
    result = await wf(m, limits={"max_nesting": 2}).run("req")
    assert result.ok, result.error
    planner_calls = m.calls_for(role="planner")
    assert len(planner_calls) == 3  # the initial plan and two levels of decomposition
    handler_enums = [c.request.output_schema.json_schema["properties"]["nodes"]["items"]["properties"]["handler"]["enum"]
                     for c in planner_calls]
    assert "decompose" in handler_enums[0] and "decompose" in handler_enums[1]
    assert "decompose" not in handler_enums[2]  # the planner is told the limit is reached
    assert [c.node_id for c in m.calls_for(role="worker")] == ["d/d/d"]
    assert result.state.nodes["d/d/d"].nesting == 2
    assert [e.kind for e in result.events_of(NodeExpandedEvent)] == ["decompose", "decompose"]
    assert result.nodes["d"].output == "RESULT-d/d/d"


async def test_depth_limit_holds_even_if_the_planner_ignores_it() -> None:
    calls: list[int] = []

    def planner(task):
        calls.append(task.nesting)
        return Plan(nodes=[PlanNode(id="d", goal="deeper", handler="decompose")])

    m = model([])
    result = await wf(m, planner=StaticPlanner(planner), limits={"max_nesting": 1}).run("req")
    assert result.ok, result.error
    assert calls == [0, 1]
    deepest = result.state.nodes["d/d"]
    assert deepest.spec.handler == "decompose" and deepest.nesting == 1
    assert [c.node_id for c in m.calls_for(role="worker")] == ["d/d"]  # run by a worker instead


async def test_decomposition_children_see_the_parent_inputs() -> None:
    plans = iter([
        {"nodes": [{"id": "facts", "goal": "collect facts"},
                   {"id": "big", "goal": "analyse", "inputs": ["facts"], "handler": "decompose"}], "outputs": ["big"]},
        {"nodes": [{"id": "p1", "goal": "part one"}, {"id": "p2", "goal": "part two", "inputs": ["p1"]}],
         "outputs": ["p2"]},
    ])
    m = model(lambda req: reply(next(plans)))
    result = await wf(m).run("req")
    assert result.ok, result.error
    decompose_prompt = last_user(m.calls_for(role="planner")[1].request)
    assert "RESULT-facts" in decompose_prompt
    p1_prompt = last_user(m.calls_for(role="worker", node_id="big/p1")[0].request)
    assert "RESULT-facts" in p1_prompt
    assert result.state.nodes["big"].children == ["big/p1", "big/p2"]
    assert result.nodes["big"].output == "RESULT-big/p2"
