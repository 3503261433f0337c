"""Node handlers: symbolic functions and DecomP-style map (project / filter) over lists."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentflow import ScriptedModel, Worker
from agentflow.errors import ConfigurationError
from agentflow.llm.types import ChatRequest
from agentflow.testing import by_role, reply
from agentflow.workforce import (
    FailurePolicy,
    FunctionHandler,
    NodeExpandedEvent,
    Plan,
    PlanNode,
    Workforce,
    symbolic,
)
from agentflow.workforce.mapping import as_list, truthy


def user_text(req: ChatRequest) -> str:
    return "\n".join(m.content or "" for m in req.messages if m.role == "user")


def model(worker: Any = None, latency: float = 0.0) -> ScriptedModel:
    return ScriptedModel(by_role(worker=worker or (lambda req: reply(f"RESULT-{req.context.node_id}")),
                                 answer=lambda req: reply("final")), latency=latency)


def run_plan(m: ScriptedModel, nodes: list[dict[str, Any]], functions: Any = None, outputs: list[str] | None = None,
             **kw: Any):
    wf = Workforce([Worker("w", "general", model=m)], model=m, planner=None, critic=None, functions=functions, **kw)
    return wf.run("req", plan=Plan(nodes=[PlanNode(**n) for n in nodes], outputs=outputs or []))


def cities() -> list[str]:
    """The cities to look at."""
    return ["Oslo", "Lima", "Pune"]


async def total(values: list[int], *, offset: int = 0) -> int:
    """Add numbers (async, to show both kinds work)."""
    await asyncio.sleep(0)
    return sum(values) + offset


async def test_symbolic_handlers_get_inputs_positionally_and_arguments_by_keyword() -> None:
    m = model()
    nodes = [
        {"id": "nums", "goal": "numbers", "handler": "function", "function": "numbers"},
        {"id": "sum", "goal": "add", "handler": "function", "function": "total", "inputs": ["nums"],
         "arguments": {"offset": 10}},
        {"id": "explain", "goal": "explain {sum}", "inputs": ["sum"]},
    ]
    result = await run_plan(m, nodes, functions={"numbers": lambda: [1, 2, 3], "total": total})
    assert result.ok, result.error
    assert result.nodes["sum"].value == 16 and result.nodes["sum"].output == "16"
    assert result.nodes["nums"].value == [1, 2, 3]
    assert [c.node_id for c in m.calls] == ["explain", None]  # only the worker node and the answer used the model
    assert "explain 16" in user_text(m.calls_for(role="worker")[0].request)


async def test_function_errors_are_node_failures_not_crashes() -> None:
    def broken(x: Any) -> None:
        raise ValueError("bad input")

    m = model()
    nodes = [{"id": "a", "goal": "a"}, {"id": "b", "goal": "b", "handler": "function", "function": "broken",
                                         "inputs": ["a"]},
             {"id": "c", "goal": "c", "handler": "function", "function": "broken", "inputs": ["a"],
              "arguments": {"nope": 1}}]
    result = await run_plan(m, nodes, functions=[broken],
                            policy=FailurePolicy(max_retries=0, max_replans=0, max_full_replans=0))
    assert result.status == "failed"  # both outputs (the sinks b and c) failed
    assert result.nodes["a"].status == "done"
    assert "function 'broken' raised ValueError: bad input" in (result.nodes["b"].error or "")
    assert "cannot take 1 input value(s) and arguments ['nope']" in (result.nodes["c"].error or "")


async def test_map_project_runs_children_concurrently_in_order() -> None:
    m = model(worker=lambda req: reply(f"capital-of:{user_text(req).split('item: ')[-1].strip()}"), latency=0.02)
    nodes = [{"id": "list", "goal": "cities", "handler": "function", "function": "cities"},
             {"id": "each", "goal": "describe the city", "map": {"over": "list"}}]
    result = await run_plan(m, nodes, functions=[cities])
    assert result.ok, result.error
    children = result.state.nodes["each"].children
    assert children == ["each[0]", "each[1]", "each[2]"]
    assert result.nodes["each"].value == ["capital-of:Oslo", "capital-of:Lima", "capital-of:Pune"]
    calls = m.calls_for(role="worker")
    assert len(calls) == 3
    assert max(c.started for c in calls) < min(c.ended for c in calls)
    assert [result.state.nodes[c].item for c in children] == ["Oslo", "Lima", "Pune"]
    assert result.events_of(NodeExpandedEvent)[0].items == ["Oslo", "Lima", "Pune"]
    g = result.graph()
    assert g.edges["each[0]", "each"]["kind"] == "part_of"


async def test_map_goal_item_placeholder() -> None:
    m = model()
    nodes = [{"id": "list", "goal": "cities", "handler": "function", "function": "cities"},
             {"id": "each", "goal": "population of {item} in 2020", "map": {"over": "list"}}]
    await run_plan(m, nodes, functions=[cities])
    prompts = sorted(user_text(c.request) for c in m.calls_for(role="worker"))
    assert "Task:\npopulation of Lima in 2020" in prompts[0]


async def test_map_filter_with_a_symbolic_predicate() -> None:
    m = model()
    nodes = [{"id": "list", "goal": "cities", "handler": "function", "function": "cities"},
             {"id": "short", "goal": "keep short names", "handler": "function", "function": "is_short",
              "map": {"over": "list", "mode": "filter"}}]
    result = await run_plan(m, nodes, functions={"cities": cities, "is_short": lambda name: len(name) == 4})
    assert result.ok
    assert result.nodes["short"].value == ["Oslo", "Lima", "Pune"]
    result2 = await run_plan(m, nodes, functions={"cities": cities, "is_short": lambda name: name.startswith("P")})
    assert result2.nodes["short"].value == ["Pune"]
    assert m.calls_for(role="worker") == []


async def test_map_filter_with_worker_answers() -> None:
    m = model(worker=lambda req: reply("Yes." if "Lima" in user_text(req) else "No, it is not."))
    nodes = [{"id": "list", "goal": "cities", "handler": "function", "function": "cities"},
             {"id": "peru", "goal": "is {item} in Peru?", "map": {"over": "list", "mode": "filter"}}]
    result = await run_plan(m, nodes, functions=[cities])
    assert result.ok
    assert result.nodes["peru"].value == ["Lima"]
    assert all("Begin your answer with yes or no." in user_text(c.request) for c in m.calls_for(role="worker"))


async def test_map_over_a_worker_text_list() -> None:
    m = model(worker=lambda req: reply("- red\n- green\n- blue" if req.context.node_id == "colors"
                                       else f"len={len(user_text(req).split('item: ')[-1].strip())}"))
    nodes = [{"id": "colors", "goal": "name three colors"},
             {"id": "lens", "goal": "length of the name", "map": {"over": "colors"}}]
    result = await run_plan(m, nodes)
    assert result.ok, result.error
    assert result.nodes["lens"].value == ["len=3", "len=5", "len=4"]


async def test_map_over_an_empty_list_and_over_non_lists() -> None:
    m = model()
    nodes = [{"id": "none", "goal": "nothing", "handler": "function", "function": "empty"},
             {"id": "each", "goal": "x", "map": {"over": "none"}}]
    result = await run_plan(m, nodes, functions={"empty": lambda: []})
    assert result.ok and result.nodes["each"].value == []
    nodes[0]["function"] = "number"
    bad = await run_plan(m, nodes, functions={"number": lambda: 42},
                         policy=FailurePolicy(max_retries=0, max_replans=0, max_full_replans=0))
    assert bad.status == "failed"
    assert "cannot map over the result of 'none': it is not a list" in (bad.nodes["each"].error or "")


async def test_map_limit() -> None:
    m = model()
    nodes = [{"id": "many", "goal": "many", "handler": "function", "function": "many"},
             {"id": "each", "goal": "x", "map": {"over": "many"}}]
    result = await run_plan(m, nodes, functions={"many": lambda: list(range(10))}, limits={"max_map_items": 5},
                            policy=FailurePolicy(max_retries=0, max_replans=0, max_full_replans=0))
    assert "has 10 elements; the map limit is 5" in (result.nodes["each"].error or "")


def test_function_registry_validation() -> None:
    with pytest.raises(ConfigurationError):
        FunctionHandler(lambda: 1)  # a lambda needs a name
    handler = symbolic("count", side_effects=True)(lambda xs: len(xs))
    assert handler.name == "count" and handler.side_effects
    assert FunctionHandler(cities).describe() == "cities() -> list[str]: The cities to look at."


def test_as_list_and_truthy() -> None:
    assert as_list('["a", "b"]') == ["a", "b"]
    assert as_list('{"items": [1, 2]}') == [1, 2]
    assert as_list("1. one\n2. two\n") == ["one", "two"]
    assert as_list("x, y, z") == ["x", "y", "z"]
    assert as_list("solo") == ["solo"]
    assert as_list(7) is None
    assert truthy("Yes, it is") is True and truthy("no.") is False and truthy("maybe") is None
    assert truthy(0) is False and truthy(True) is True and truthy(None) is False


async def test_failed_map_child_escalates_and_the_parent_is_redone() -> None:
    from agentflow.errors import ServerError

    lima_calls: list[int] = []

    def worker(req: ChatRequest):
        if "Lima" in user_text(req):
            lima_calls.append(1)
            if len(lima_calls) <= 2:  # the child's first attempt and its retry fail
                return ServerError("lookup service down")
        return reply(f"ok:{user_text(req).split('item: ')[-1].strip()}")

    m = model(worker)
    nodes = [{"id": "list", "goal": "cities", "handler": "function", "function": "cities"},
             {"id": "each", "goal": "describe the city", "map": {"over": "list"}}]
    result = await run_plan(m, nodes, functions=[cities], policy=FailurePolicy(max_retries=1, max_reassignments=0))
    assert result.ok, result.error
    assert result.nodes["each"].value == ["ok:Oslo", "ok:Lima", "ok:Pune"]
    assert result.nodes["each"].attempts == 2
    assert result.nodes["each[1]"].status == "replaced"
    assert result.state.nodes["each"].children == ["each[0]~2", "each[1]~2", "each[2]~2"]
    from agentflow.workforce import NodeFailedEvent

    steps = [(e.node_id, e.next_step) for e in result.events_of(NodeFailedEvent)]
    assert steps == [("each[1]", "retry"), ("each[1]", "escalate"), ("each", "retry")]


async def test_failed_decompose_child_makes_the_parent_plan_again() -> None:
    from agentflow.errors import ServerError
    from agentflow.workforce import StaticPlanner

    seen: list[str] = []

    def planner(task):
        seen.append(task.goal or "")
        if task.mode == "initial":
            return Plan(nodes=[PlanNode(id="big", goal="a big job", handler="decompose")])
        step = "p1" if len(seen) == 2 else "q1"
        return Plan(nodes=[PlanNode(id=step, goal=f"do {step}")])

    m = model(lambda req: ServerError("broken") if req.context.node_id == "big/p1" else reply("fine"))
    wf = Workforce([Worker("w", "general", model=m)], model=m, planner=StaticPlanner(planner, can_replan=True),
                   critic=None, policy=FailurePolicy(max_retries=1, max_reassignments=0))
    result = await wf.run("req")
    assert result.ok, result.error
    assert len(seen) == 3
    assert "its part 'big/p1' failed" in seen[2]
    assert result.nodes["big/q1"].status == "done" and result.nodes["big/p1"].status == "replaced"
