"""Events are the source of truth: the state rebuilt from the log equals the live state; usage is
attributed to roles and nodes; results serialize; the graph exports; the renderers render."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import networkx as nx
from rich.console import Console

from agentflow import ScriptedModel, Worker
from agentflow.llm.types import ChatRequest
from agentflow.runs.events import Event, ModelCallEvent, parse_event
from agentflow.testing import by_role, reply
from agentflow.workforce import (
    NodeReplannedEvent,
    Plan,
    PlanNode,
    RunResult,
    Workforce,
    rebuild_state,
    render_plan,
    render_run,
)

YES = {"verdict": "yes", "score": 0.9, "feedback": ""}
NO = {"verdict": "no", "score": 0.1, "feedback": "not good enough"}

INITIAL = {"nodes": [
    {"id": "src", "goal": "list items", "handler": "function", "function": "items"},
    {"id": "each", "goal": "describe {item}", "map": {"over": "src"}},
    {"id": "deep", "goal": "study it", "handler": "decompose"},
    {"id": "weak", "goal": "a shaky step"},
    {"id": "join", "goal": "combine", "inputs": ["each", "deep", "weak"]},
], "outputs": ["join"]}
SUBPLAN = {"nodes": [{"id": "s1", "goal": "part 1"}, {"id": "s2", "goal": "part 2", "inputs": ["s1"]}],
           "outputs": ["s2"]}
REPLAN = {"nodes": [{"id": "steady", "goal": "a better step"},
                    {"id": "join", "goal": "combine again", "inputs": ["each", "deep", "steady"]}],
          "outputs": ["join"]}


def busy_model() -> ScriptedModel:
    plans = iter([INITIAL, SUBPLAN, REPLAN])

    def critic(req: ChatRequest):
        text = "\n".join(m.content or "" for m in req.messages)
        return reply(NO if "WEAK" in text.rsplit("Result:", 1)[-1] else YES)

    def worker(req: ChatRequest):
        return reply("WEAK" if req.context.node_id == "weak" else f"ok {req.context.node_id}")

    return ScriptedModel(by_role(planner=lambda req: reply(next(plans)), worker=worker, critic=critic,
                                 answer=lambda req: reply("the answer")), latency=0.002)


async def run_busy(sink: Any = None) -> tuple[RunResult, ScriptedModel, list[bool]]:
    m = busy_model()
    wf = Workforce([Worker("w", "general", model=m)], model=m, functions={"items": lambda: ["x", "y"]})
    handle = wf.start("a request that exercises everything", sink=sink)
    consistent: list[bool] = []
    while not handle.done():
        consistent.append(rebuild_state(list(handle.events)) == handle.state)
        await asyncio.sleep(0.003)
    return await handle, m, consistent


async def test_state_rebuilt_from_events_equals_the_live_state() -> None:
    result, _m, consistent = await run_busy()
    assert result.ok, result.error
    assert result.events_of(NodeReplannedEvent), "the scenario should include a replan"
    assert consistent and all(consistent)  # at every point during the run
    wire = [json.loads(e.model_dump_json()) for e in result.events]
    rebuilt = rebuild_state(wire)
    assert rebuilt == result.state
    assert rebuilt.status == "succeeded" and rebuilt.answer == "the answer"
    assert {n: r.status for n, r in rebuilt.nodes.items() if r.parent is None} == {
        "src": "done", "each": "done", "deep": "done", "weak": "replaced", "join": "replaced",
        "steady": "done", "join~2": "done"}


async def test_run_result_round_trips_through_json() -> None:
    result, _m, _ = await run_busy()
    again = RunResult.model_validate_json(result.model_dump_json())
    assert again.state == result.state
    assert [type(e) for e in again.events] == [type(e) for e in result.events]
    assert again.events[-1] == result.events[-1]
    assert again.answer == result.answer and again.status == result.status


async def test_usage_is_attributed_to_roles_and_nodes() -> None:
    result, m, _ = await run_busy()
    calls = result.events_of(ModelCallEvent)
    assert len(calls) == len(m.calls)
    assert sum(result.state.calls_by_role.values()) == len(m.calls)
    by_role_calls: dict[str, int] = {}
    for c in m.calls:
        by_role_calls[c.role or ""] = by_role_calls.get(c.role or "", 0) + 1
    assert result.state.calls_by_role == by_role_calls
    assert set(result.usage_by_role) == {"planner", "worker", "critic", "answer"}
    total = sum((u.total_tokens for u in result.usage_by_role.values()), 0)
    assert total == result.usage.total_tokens > 0
    weak = result.state.nodes["weak"]
    expected = sum(e.usage.total_tokens for e in calls if e.context.node_id == "weak")
    assert weak.usage.total_tokens == expected == result.usage_by_node["weak"].total_tokens
    assert weak.model_calls == len(m.calls_for(node_id="weak"))


async def test_events_reach_the_sink_in_order_and_a_broken_sink_is_harmless() -> None:
    seen: list[Event] = []

    async def sink(event: Event) -> None:
        seen.append(event)
        if event.type == "node_started":
            raise RuntimeError("listener bug")

    result, _m, _ = await run_busy(sink)
    assert result.ok
    assert [e.id for e in seen] == [e.id for e in result.events]


async def test_every_event_type_round_trips() -> None:
    result, _m, _ = await run_busy()
    for event in result.events:
        assert parse_event(json.loads(event.model_dump_json())) == event


async def test_graph_exports_with_networkx() -> None:
    result, _m, _ = await run_busy()
    g = result.graph()
    assert nx.is_directed_acyclic_graph(g)
    assert g.has_edge("steady", "join~2") and g.has_edge("each", "join~2")
    assert g.edges["each[0]", "each"]["kind"] == "part_of"
    assert "weak" not in g and "weak" in result.graph(include_replaced=True)
    data = nx.node_link_data(g)
    json.dumps(data)
    assert g.nodes["join~2"]["status"] == "done"


async def test_renderers() -> None:
    result, _m, _ = await run_busy()
    console = Console(record=True, width=140)
    console.print(render_run(result.state))
    text = console.export_text()
    for nid in ("src", "each[0]", "deep/s2", "join~2"):
        assert nid in text
    assert "succeeded" in text and "the answer" in text and "weak" not in text.split("answer")[0]
    console.print(render_run(result.state, show_replaced=True, max_rows=3))
    assert "more nodes not shown" in console.export_text()
    console.print(render_plan(Plan(nodes=[PlanNode(id="a", goal="first"),
                                          PlanNode(id="b", goal="second", inputs=["a"], handler="function",
                                                   function="f")])))
    tree = console.export_text()
    assert "a [worker" in tree and "b [function, f, output]" in tree
