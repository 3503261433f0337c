"""The closed loop: critic verdicts, retry with feedback, reassignment, localized and full replanning,
giving up, speculative results withdrawn, and malformed critic/coordinator output never aborting a run."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agentflow import ScriptedModel, Worker
from agentflow.errors import ServerError
from agentflow.llm.types import ChatRequest
from agentflow.testing import by_role, reply
from agentflow.tools import tool
from agentflow.workforce import (
    CriticVerdictEvent,
    FailurePolicy,
    LLMCritic,
    NodeAssignedEvent,
    NodeFailedEvent,
    NodeInvalidatedEvent,
    NodeReassignedEvent,
    NodeReplannedEvent,
    NodeRetriedEvent,
    Plan,
    PlanNode,
    RuleBasedCoordinator,
    Workforce,
)

YES = {"verdict": "yes", "score": 0.95, "feedback": ""}


def no(feedback: str) -> dict[str, Any]:
    return {"verdict": "no", "score": 0.05, "feedback": feedback}


def plan(*nodes: dict[str, Any], outputs: list[str] | None = None) -> dict[str, Any]:
    return {"nodes": list(nodes), "outputs": outputs or []}


def user_text(req: ChatRequest) -> str:
    return "\n".join(m.content or "" for m in req.messages if m.role == "user")


def worker_calls(m: ScriptedModel) -> Counter[str]:
    return Counter(c.node_id for c in m.calls_for(role="worker"))


def output_of(req: ChatRequest) -> str:
    return user_text(req).rsplit("Result:\n", 1)[-1]


class Script:
    """A role-aware model whose worker echoes ``RESULT-<node>`` unless told otherwise."""

    def __init__(self, *, planner: Any = None, worker: Any = None, critic: Any = None, coordinator: Any = None,
                 latency: float = 0.0) -> None:
        roles: dict[str, Any] = {
            "worker": worker or (lambda req: reply(f"RESULT-{req.context.node_id}")),
            "critic": critic or (lambda req: reply(YES)),
            "answer": lambda req: reply("final"),
        }
        if planner is not None:
            roles["planner"] = planner
        if coordinator is not None:
            roles["coordinator"] = coordinator
        self.model = ScriptedModel(by_role(**roles), latency=latency)


def team(m: ScriptedModel, *names: str, **kw: Any) -> Workforce:
    workers = [Worker(n, f"worker {n}", model=m) for n in (names or ("w",))]
    return Workforce(workers, model=m, **kw)


async def test_critic_rejection_retries_with_feedback() -> None:
    outputs = iter(["1987", "It was 1989."])
    verdicts = iter([no("the answer must give the year of the event, which was 1989"), YES])
    s = Script(planner=[reply(plan({"id": "a", "goal": "When did it happen?"}))],
               worker=lambda req: reply(next(outputs)), critic=lambda req: reply(next(verdicts)))
    result = await team(s.model).run("req")
    assert result.ok
    assert worker_calls(s.model)["a"] == 2
    retry_prompt = user_text(s.model.calls_for(role="worker", node_id="a")[1].request)
    assert "which was 1989" in retry_prompt and "1987" in retry_prompt
    assert [e.next_step for e in result.events_of(NodeFailedEvent)] == ["retry"]
    assert len(result.events_of(NodeRetriedEvent)) == 1
    assert result.nodes["a"].output == "It was 1989."
    assert result.nodes["a"].attempts == 2
    assert result.nodes["a"].probability == 1.0  # from the verdict token's logprob (the script's default: 0)


async def test_failing_worker_is_retried() -> None:
    replies = iter([ServerError("overloaded"), reply("fine")])
    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}))], worker=lambda req: next(replies))
    result = await team(s.model).run("req")
    assert result.ok
    failed = result.events_of(NodeFailedEvent)
    assert len(failed) == 1 and "overloaded" in failed[0].reason


async def test_rejected_node_is_reassigned_to_another_worker() -> None:
    s = Script(planner=[reply(plan({"id": "a", "goal": "A", "worker": "alpha"}))],
               worker=lambda req: reply(f"done by {req.context.worker}"),
               critic=lambda req: reply(no("wrong") if "alpha" in output_of(req) else YES))
    wf = team(s.model, "alpha", "beta", coordinator=RuleBasedCoordinator(), policy=FailurePolicy(max_retries=0))
    result = await wf.run("req")
    assert result.ok
    assert [c.request.context.worker for c in s.model.calls_for(role="worker")] == ["alpha", "beta"]
    moved = result.events_of(NodeReassignedEvent)
    assert len(moved) == 1 and (moved[0].from_worker, moved[0].to_worker) == ("alpha", "beta")
    assert result.nodes["a"].worker == "beta"


INITIAL = plan(
    {"id": "a", "goal": "A"}, {"id": "d", "goal": "D"},
    {"id": "b", "goal": "B", "inputs": ["a"]}, {"id": "c", "goal": "C", "inputs": ["b"]},
    {"id": "e", "goal": "E", "inputs": ["c", "d"]}, outputs=["e"])
REPLACEMENT = plan({"id": "b", "goal": "B by another route", "inputs": ["a"]},
                   {"id": "e", "goal": "E from the new B", "inputs": ["b", "d"]}, outputs=["e"])


def bad_b_worker(req: ChatRequest):
    return reply("BAD" if req.context.node_id == "b" else f"RESULT-{req.context.node_id}")


def rejects_bad(req: ChatRequest):
    return reply(no("B is wrong: it contains BAD") if "BAD" in output_of(req) else YES)


async def test_failed_node_replans_only_its_sub_dag() -> None:
    s = Script(planner=[reply(INITIAL), reply(REPLACEMENT)], worker=bad_b_worker, critic=rejects_bad)
    result = await team(s.model, speculate=False).run("req")
    assert result.ok, result.error
    calls = worker_calls(s.model)
    # finished nodes are not re-run; the failed one was tried twice; its descendants never ran
    assert calls == Counter({"a": 1, "d": 1, "b": 2, "b~2": 1, "e~2": 1})
    replanned = result.events_of(NodeReplannedEvent)
    assert len(replanned) == 1
    event = replanned[0]
    assert event.node_id == "b" and not event.full
    assert event.removed == ["b", "c", "e"]
    assert [n.id for n in event.added] == ["b~2", "e~2"]
    assert event.outputs == ["e~2"]
    assert {n: result.nodes[n].status for n in "abcde"} == {
        "a": "done", "b": "replaced", "c": "replaced", "d": "done", "e": "replaced"}
    replan_prompt = user_text(s.model.calls_for(role="planner")[1].request)
    assert "- a: A\n  result: RESULT-a" in replan_prompt and "- d: D\n  result: RESULT-d" in replan_prompt
    assert "B is wrong" in replan_prompt
    assert "RESULT-a" in user_text(s.model.calls_for(role="worker", node_id="b~2")[0].request)
    e2 = user_text(s.model.calls_for(role="worker", node_id="e~2")[0].request)
    assert "RESULT-b~2" in e2 and "RESULT-d" in e2
    assert result.state.outputs == ["e~2"]
    assert result.graph().has_edge("b~2", "e~2") and "b" not in result.graph()


async def test_localized_replan_keeps_finished_nodes_with_speculation_on() -> None:
    s = Script(planner=[reply(INITIAL), reply(REPLACEMENT)], worker=bad_b_worker, critic=rejects_bad)
    result = await team(s.model).run("req")
    assert result.ok, result.error
    calls = worker_calls(s.model)
    assert calls["a"] == 1 and calls["d"] == 1 and calls["b"] == 2
    assert calls["b~2"] == 1 and calls["e~2"] == 1


async def test_full_replan_builds_on_finished_results() -> None:
    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "inputs": ["a"]})),
                        reply(plan({"id": "b2", "goal": "B again", "inputs": ["a"]}, outputs=["b2"]))],
               worker=bad_b_worker, critic=rejects_bad)
    wf = team(s.model, policy=FailurePolicy(max_retries=0, max_replans=0, max_full_replans=1))
    result = await wf.run("req")
    assert result.ok, result.error
    assert worker_calls(s.model) == Counter({"a": 1, "b": 1, "b2": 1})
    event = result.events_of(NodeReplannedEvent)[0]
    assert event.full and event.removed == ["b"]
    assert s.model.calls_for(role="planner")[1].request.output_schema is not None
    assert "previous plan failed" in user_text(s.model.calls_for(role="planner")[1].request)


async def test_sub_dag_replan_failure_escalates_to_full_replan() -> None:
    replies = iter([
        reply(plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "inputs": ["a"]})),
        reply("garbage"), reply("garbage"), reply("garbage"),  # the localized replan never parses
        reply(plan({"id": "fresh", "goal": "B from scratch", "inputs": ["a"]})),
    ])
    s = Script(planner=lambda req: next(replies), worker=bad_b_worker, critic=rejects_bad)
    result = await team(s.model, policy=FailurePolicy(max_retries=0)).run("req")
    assert result.ok, result.error
    steps = [e.next_step for e in result.events_of(NodeFailedEvent)]
    assert steps == ["replan", "full_replan"]
    assert result.events_of(NodeReplannedEvent)[0].full


async def test_giving_up_skips_descendants_and_keeps_independent_work() -> None:
    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "inputs": ["a"]},
                                   {"id": "c", "goal": "C"}, outputs=["b", "c"]))],
               worker=lambda req: ServerError("down") if req.context.node_id == "a" else reply("ok"))
    wf = team(s.model, policy=FailurePolicy(max_retries=1, max_replans=0, max_full_replans=0))
    result = await wf.run("req")
    assert result.status == "partial"
    assert result.nodes["a"].status == "failed" and result.nodes["a"].attempts == 2
    assert result.nodes["b"].status == "skipped"
    assert "upstream node 'a' failed" in (result.nodes["b"].error or "")
    assert result.nodes["c"].status == "done"
    assert result.answer == "final"
    assert result.state.failed_nodes() == ["a"]


async def test_rejected_result_withdraws_speculative_dependents() -> None:
    outputs = iter(["a-v1", "a-v2"])
    verdicts = iter([no("redo a"), YES, YES, YES])

    def worker(req: ChatRequest):
        return reply(next(outputs)) if req.context.node_id == "a" else reply(f"b from {user_text(req)[-40:]}")

    def critic(req: ChatRequest):
        delay = 0.05 if req.context.node_id == "a" else 0.0
        return reply(next(verdicts), delay=delay)

    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B", "inputs": ["a"]}))],
               worker=worker, critic=critic, latency=0.005)
    result = await team(s.model).run("req")
    assert result.ok, result.error
    b_calls = s.model.calls_for(role="worker", node_id="b")
    assert len(b_calls) == 2
    assert "a-v1" in user_text(b_calls[0].request) and "a-v2" in user_text(b_calls[1].request)
    assert [e.node_id for e in result.events_of(NodeInvalidatedEvent)] == ["b"]
    assert "a-v2" in (result.nodes["b"].output or "")


async def test_malformed_critic_output_never_aborts() -> None:
    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}))], critic=lambda req: reply("I like turtles"))
    result = await team(s.model).run("req")
    assert result.ok
    verdict = result.events_of(CriticVerdictEvent)[0]
    assert verdict.malformed and verdict.source == "default" and verdict.passed
    assert verdict.raw == "I like turtles"


async def test_malformed_critic_output_as_failure_when_configured() -> None:
    verdicts = iter([reply("{not json at all"), reply(YES)])
    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}))], critic=lambda req: next(verdicts))
    result = await team(s.model, critic=LLMCritic(s.model, on_malformed="fail")).run("req")
    assert result.ok
    assert worker_calls(s.model)["a"] == 2
    assert [e.malformed for e in result.events_of(CriticVerdictEvent)] == [True, False]


async def test_critic_call_failure_uses_the_default_verdict() -> None:
    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}))], critic=lambda req: ServerError("critic down"))
    result = await team(s.model).run("req")
    assert result.ok
    verdict = result.events_of(CriticVerdictEvent)[0]
    assert verdict.malformed and "critic down" in verdict.feedback


async def test_low_verdict_probability_rejects() -> None:
    import math

    verdicts = iter([reply(YES, logprob=math.log(0.3)), reply(YES)])
    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}))], critic=lambda req: next(verdicts))
    result = await team(s.model).run("req")
    assert result.ok
    first = result.events_of(CriticVerdictEvent)[0]
    assert first.source == "logprobs" and abs(first.probability - 0.3) < 1e-6 and not first.passed


async def test_malformed_coordinator_output_falls_back_to_rules() -> None:
    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}))],
               coordinator=lambda req: reply("assign everything to the best one"))
    result = await team(s.model, "alpha", "beta").run("req")
    assert result.ok
    assigned = result.events_of(NodeAssignedEvent)
    assert {e.node_id: e.source for e in assigned} == {"a": "fallback", "b": "fallback"}
    assert len(s.model.calls_for(role="coordinator")) == 1


async def test_coordinator_batches_and_ignores_invented_ids() -> None:
    answer = {"assignments": [{"node": "a", "worker": "ghost"}, {"node": "zzz", "worker": "alpha"},
                              {"node": "b", "worker": "beta"}, {"node": "c", "worker": "alpha"}]}
    s = Script(planner=[reply(plan({"id": "a", "goal": "A"}, {"id": "b", "goal": "B"}, {"id": "c", "goal": "C"}))],
               coordinator=[reply(answer)])
    result = await team(s.model, "alpha", "beta").run("req")
    assert result.ok
    coordinator_calls = s.model.calls_for(role="coordinator")
    assert len(coordinator_calls) == 1  # one call for the whole batch
    assert coordinator_calls[0].request.output_schema.json_schema["properties"]["assignments"]["items"][
        "properties"]["node"]["enum"] == ["a", "b", "c"]
    sources = {e.node_id: (e.worker, e.source) for e in result.events_of(NodeAssignedEvent)}
    assert sources["b"] == ("beta", "llm") and sources["c"] == ("alpha", "llm")
    assert sources["a"][1] == "fallback"


@tool(side_effects=True)
def send_mail(to: str) -> str:
    """Send a mail.

    Args:
        to: the address.
    """
    return f"sent to {to}"


async def test_feasibility_check_before_side_effects() -> None:
    checks = iter([no("the address is missing"), YES, YES])
    s = Script(planner=[reply(plan({"id": "a", "goal": "mail the report"}))], critic=lambda req: reply(next(checks)))
    wf = Workforce([Worker("mailer", "sends mail", model=s.model, tools=[send_mail])], model=s.model,
                   feasibility_checks=True)
    result = await wf.run("req")
    assert result.ok
    phases = [(e.phase, e.passed) for e in result.events_of(CriticVerdictEvent)]
    assert phases == [("feasibility", False), ("feasibility", True), ("check", True)]
    assert worker_calls(s.model)["a"] == 1  # the infeasible attempt never ran the worker
    assert "feasibility check failed" in result.events_of(NodeFailedEvent)[0].reason


async def test_side_effect_nodes_never_start_speculatively() -> None:
    def critic(req: ChatRequest):
        return reply(YES, delay=0.05 if req.context.node_id == "a" else 0.0)

    s = Script(planner=[reply(plan({"id": "a", "goal": "write report", "worker": "writer"},
                                   {"id": "b", "goal": "mail it", "inputs": ["a"], "worker": "mailer"}))],
               critic=critic, latency=0.005)
    wf = Workforce([Worker("writer", "writes", model=s.model), Worker("mailer", "mails", model=s.model,
                                                                      tools=[send_mail])],
                   model=s.model, coordinator=RuleBasedCoordinator())
    result = await wf.run("req")
    assert result.ok
    b = s.model.calls_for(role="worker", node_id="b")[0]
    assert b.started >= s.model.calls_for(role="critic", node_id="a")[0].ended


async def test_retry_of_failed_node_in_plan_given_directly() -> None:
    """Recovery works without a planner too (no replans possible: retries, then give up)."""
    m = ScriptedModel(by_role(worker=lambda req: ServerError("x"), answer=lambda req: reply("final")))
    wf = Workforce([Worker("w", model=m)], model=m, planner=None, critic=None)
    result = await wf.run("req", plan=Plan(nodes=[PlanNode(id="a", goal="A")]))
    assert result.status == "failed"
    assert [e.next_step for e in result.events_of(NodeFailedEvent)] == ["retry", "give_up"]
    assert "every output node failed" in (result.error or "")
