"""Scheduler behaviour: parallelism, data flow along edges, limits, priority, timeouts, cancellation.

Overlap and ordering are asserted from ScriptedModel's recorded monotonic timestamps, never from
wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentflow import ScriptedModel, Worker
from agentflow.llm.types import ChatRequest
from agentflow.testing import by_role, reply
from agentflow.workforce import (
    FailurePolicy,
    NodeCancelledEvent,
    Plan,
    PlanNode,
    RuleBasedCoordinator,
    RunFinishedEvent,
    Workforce,
)

NO_RECOVERY = FailurePolicy(max_retries=0, max_reassignments=0, max_replans=0, max_full_replans=0)


def plan(*nodes: dict[str, Any], outputs: list[str] | None = None) -> Plan:
    return Plan(nodes=[PlanNode(**n) for n in nodes], outputs=outputs or [])


def echo(req: ChatRequest):
    return reply(f"RESULT-{req.context.node_id}")


def model(worker: Any = echo, *, latency: float = 0.0, name: str = "scripted", **roles: Any) -> ScriptedModel:
    roles.setdefault("answer", lambda req: reply("final answer"))
    return ScriptedModel(by_role(worker=worker, **roles), latency=latency, name=name)


def workforce(m: ScriptedModel, **kw: Any) -> Workforce:
    kw.setdefault("critic", None)
    return Workforce([Worker("w", "general worker", model=m)], model=m, planner=None, **kw)


def user_text(req: ChatRequest) -> str:
    return "\n".join(msg.content or "" for msg in req.messages if msg.role == "user")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    best = cur = 0
    for _, delta in points:
        cur += delta
        best = max(best, cur)
    return best


async def test_independent_nodes_overlap_and_join_waits_for_all() -> None:
    m = model(latency=0.03)
    p = plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}, {"id": "c", "goal": "C"},
             {"id": "d", "goal": "join", "inputs": ["a", "b", "c"]})
    result = await workforce(m).run("req", plan=p)
    assert result.status == "succeeded", result.error
    fan = [m.calls_for(role="worker", node_id=n)[0] for n in "abc"]
    assert max(c.started for c in fan) < min(c.ended for c in fan)  # all three were in flight together
    join = m.calls_for(role="worker", node_id="d")[0]
    assert join.started >= max(c.ended for c in fan)


async def test_outputs_flow_only_along_edges() -> None:
    m = model()
    p = plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}, {"id": "c", "goal": "use a", "inputs": ["a"]},
             {"id": "d", "goal": "use b and c", "inputs": ["b", "c"]})
    result = await workforce(m).run("req", plan=p)
    assert result.ok
    c_prompt = user_text(m.calls_for(role="worker", node_id="c")[0].request)
    d_prompt = user_text(m.calls_for(role="worker", node_id="d")[0].request)
    assert "RESULT-a" in c_prompt and "RESULT-b" not in c_prompt
    assert "RESULT-b" in d_prompt and "RESULT-c" in d_prompt and "RESULT-a" not in d_prompt
    a_prompt = user_text(m.calls_for(role="worker", node_id="a")[0].request)
    assert "RESULT-" not in a_prompt


async def test_goal_placeholders_are_filled_with_short_results() -> None:
    m = model()
    p = plan({"id": "city", "goal": "name a city"}, {"id": "pop", "goal": "population of {city}", "inputs": ["city"]})
    await workforce(m).run("req", plan=p)
    assert "population of RESULT-city" in user_text(m.calls_for(role="worker", node_id="pop")[0].request)


async def test_long_results_are_shortened_with_a_reference() -> None:
    long_text = "x" * 10_000

    def worker(req: ChatRequest):
        return reply(long_text if req.context.node_id == "a" else "short")

    m = model(worker)
    p = plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "inputs": ["a"]})
    result = await workforce(m, context_chars=500).run("req", plan=p)
    prompt = user_text(m.calls_for(role="worker", node_id="b")[0].request)
    assert "characters omitted; the full result of 'a' (10000 characters) is kept in the run record" in prompt
    assert len(prompt) < 1500
    assert result.nodes["a"].output == long_text


async def test_global_concurrency_limit_holds() -> None:
    m = model(latency=0.02)
    p = plan(*[{"id": f"n{i}", "goal": f"task {i}"} for i in range(6)])
    result = await workforce(m, max_concurrency=2).run("req", plan=p)
    assert result.ok
    intervals = [(c.started, c.ended) for c in m.calls_for(role="worker")]
    assert len(intervals) == 6
    assert max_overlap(intervals) == 2


async def test_per_model_limit_holds() -> None:
    m1 = model(latency=0.02, name="m1")
    m2 = model(latency=0.02, name="m2")
    workers = [Worker("one", "first", model=m1), Worker("two", "second", model=m2)]
    p = plan(*[{"id": f"a{i}", "goal": "job", "worker": "one"} for i in range(4)],
             *[{"id": f"b{i}", "goal": "job", "worker": "two"} for i in range(4)])
    wf = Workforce(workers, model=m2, planner=None, critic=None, coordinator=RuleBasedCoordinator(),
                   per_model_limits={"m1": 1})
    result = await wf.run("req", plan=p)
    assert result.ok
    assert len(m1.calls_for(role="worker")) == 4 and len(m2.calls_for(role="worker")) == 4
    assert m1.max_in_flight == 1
    assert m2.max_in_flight >= 3  # the limit applies to m1 only


async def test_critical_path_first() -> None:
    m = model()
    p = plan({"id": "s1", "goal": "single"}, {"id": "s2", "goal": "single"}, {"id": "x1", "goal": "chain"},
             {"id": "x2", "goal": "chain", "inputs": ["x1"]}, {"id": "x3", "goal": "chain", "inputs": ["x2"]})
    await workforce(m, max_concurrency=1).run("req", plan=p)
    order = [c.node_id for c in m.calls_for(role="worker")]
    assert order[:2] == ["x1", "x2"]
    assert sorted(order) == ["s1", "s2", "x1", "x2", "x3"]


async def test_per_node_timeout_fails_only_that_node() -> None:
    def worker(req: ChatRequest):
        return reply("late", delay=5.0) if req.context.node_id == "slow" else reply("fast result")

    m = model(worker)
    p = plan({"id": "slow", "goal": "S"}, {"id": "fast", "goal": "F"}, {"id": "own", "goal": "O", "timeout_s": 0.05})
    result = await workforce(m, node_timeout_s=0.1, policy=NO_RECOVERY).run("req", plan=p)
    assert result.status == "partial"
    assert result.nodes["slow"].status == "failed"
    assert "timed out after 0.1s" in (result.nodes["slow"].error or "")
    assert result.nodes["fast"].status == "done"
    assert result.nodes["own"].status == "done"  # its own 0.05s limit was enough for an instant reply
    slow_call = m.calls_for(role="worker", node_id="slow")[0]
    assert slow_call.error is not None and "CancelledError" in slow_call.error


async def test_cancel_a_running_run() -> None:
    m = model(lambda req: reply("never", delay=5.0))
    p = plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}, {"id": "c", "goal": "C", "inputs": ["a", "b"]})
    handle = workforce(m).start("req", plan=p)
    while len(m.calls_for(role="worker")) < 2:
        await asyncio.sleep(0.005)
    assert handle.state.nodes["a"].status == "running"
    handle.cancel("user pressed stop")
    result = await handle
    assert result.status == "cancelled"
    assert result.error == "user pressed stop"
    assert {n.status for n in result.nodes.values()} == {"cancelled"}
    assert all(c.ended is not None and "CancelledError" in (c.error or "") for c in m.calls_for(role="worker"))
    assert isinstance(result.events[-1], RunFinishedEvent)
    assert len(result.events_of(NodeCancelledEvent)) == 3


async def test_run_timeout_cancels() -> None:
    m = model(lambda req: reply("never", delay=5.0))
    result = await workforce(m).run("req", plan=plan({"id": "a", "goal": "A"}), timeout=0.05)
    assert result.status == "cancelled"
    assert "timeout of 0.05s" in (result.error or "")


async def test_cancelling_the_caller_propagates_and_stops_nodes() -> None:
    m = model(lambda req: reply("never", delay=5.0))
    task = asyncio.ensure_future(workforce(m).run("req", plan=plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B"})))
    while len(m.calls_for(role="worker")) < 2:
        await asyncio.sleep(0.005)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    else:  # pragma: no cover - the assertion below explains
        raise AssertionError("run() swallowed the caller's cancellation")
    await asyncio.sleep(0)
    assert all(c.ended is not None for c in m.calls)


async def test_speculative_start_overlaps_the_critic() -> None:
    """With speculation on, a dependent starts while its input is still being judged."""
    critic = lambda req: reply({"verdict": "yes", "score": 0.9, "feedback": ""}, delay=0.05)  # noqa: E731
    m = model(critic=critic, latency=0.01)
    p = plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "inputs": ["a"]})
    wf = Workforce([Worker("w", "general", model=m)], model=m, planner=None)
    result = await wf.run("req", plan=p)
    assert result.ok
    a_check = m.calls_for(role="critic", node_id="a")[0]
    b_work = m.calls_for(role="worker", node_id="b")[0]
    assert b_work.started < a_check.ended
    # without speculation the dependent waits for the verdict
    m2 = model(critic=critic, latency=0.01)
    wf2 = Workforce([Worker("w", "general", model=m2)], model=m2, planner=None, speculate=False)
    assert (await wf2.run("req", plan=p)).ok
    assert m2.calls_for(role="worker", node_id="b")[0].started >= m2.calls_for(role="critic", node_id="a")[0].ended


async def test_cancel_before_the_run_starts() -> None:
    m = model()
    handle = workforce(m).start("req", plan=plan({"id": "a", "goal": "A"}))
    handle.cancel("changed my mind")
    result = await handle
    assert result.status == "cancelled" and result.error == "changed my mind"
    assert m.calls == []
    handle.cancel("again")  # after the end: no effect
    assert (await handle).error == "changed my mind"
