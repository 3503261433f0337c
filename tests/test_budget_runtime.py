"""Runtime budget enforcement: planning, degradation, accounting, and runs that never overspend."""

from __future__ import annotations

import asyncio

import pytest

from agentflow.agent import Worker
from agentflow.budget.aggregate import fuse_request
from agentflow.budget.allocator import Allocation, BudgetAllocator
from agentflow.budget.cost import FlopsCost, TokenCost
from agentflow.budget.events import BudgetDegradedEvent, BudgetExhaustedEvent, BudgetSpentEvent
from agentflow.budget.offline.generator import generate_task
from agentflow.budget.offline.table import LookupEnvironment
from agentflow.budget.registry import ModelRegistry, ModelSpec
from agentflow.budget.runtime import BudgetedModel, sample_and_aggregate
from agentflow.budget.tracker import BudgetTracker, request_text_chars
from agentflow.errors import BudgetExceededError, ConfigurationError, ServerError
from agentflow.llm.types import CallContext, ChatRequest, ChatResponse, Choice, Message, Usage
from agentflow.runs.events import EventLog, parse_event
from agentflow.testing import ScriptedModel, reply


def registry() -> ModelRegistry:
    return ModelRegistry([ModelSpec(name="small", params=3e9), ModelSpec(name="mid", params=8e9),
                          ModelSpec(name="large", params=70e9)])


def request(text: str = "What is the capital of France? Answer in one word.", node: str = "n1",
            max_tokens: int = 32) -> ChatRequest:
    return ChatRequest(messages=[Message.system("Be brief."), Message.user(text)], max_tokens=max_tokens,
                       context=CallContext(run_id="r", node_id=node, role="worker"))


def answers(text: str = "Paris"):
    return lambda req: reply(text)


async def test_estimates_are_upper_bounds_and_spending_is_booked():
    tracker = BudgetTracker(10_000, registry())
    model = ScriptedModel(answers(), name="large")
    for _ in range(3):
        text, details = await sample_and_aggregate(model, request(), 4, tracker=tracker)
        assert text == "Paris" and details.cost > 0
    assert tracker.overruns == 0
    assert all(r.actual_cost <= r.estimated_cost for r in tracker.records)
    assert tracker.spent == pytest.approx(sum(r.actual_cost for r in tracker.records))
    assert tracker.remaining == pytest.approx(10_000 - tracker.spent)
    assert model.calls[0].request.n == 4 and model.calls[0].request.max_tokens == 32
    summary = tracker.summary()
    assert summary.calls == 3 and summary.by_node == {"n1": pytest.approx(tracker.spent)}
    assert summary.unit == "flops"


async def test_degrades_samples_first_then_to_a_smaller_model_and_says_why():
    reg = registry()
    log = EventLog()
    probe = BudgetTracker(1e9, reg)
    req = request()
    four_large = probe.estimate("large", req, 4)
    two_large = probe.estimate("large", req, 2)
    one_large = probe.estimate("large", req, 1)
    three_mid = probe.estimate("mid", req, 3)

    tracker = BudgetTracker((two_large + probe.estimate("large", req, 3)) / 2, reg, sink=log, run_id="r")
    assert four_large > tracker.budget
    model = ScriptedModel(answers(), name="large")
    _, details = await sample_and_aggregate(model, req, 4, tracker=tracker, model_name="large")
    assert model.calls[0].request.n == 2 and details.samples_planned == 2 and details.model == "large"
    first = details.degradations[0]
    assert (first.from_model, first.to_model, first.from_samples, first.to_samples) == ("large", "large", 4, 2)
    assert "lowered to 2" in first.reason

    tracker = BudgetTracker(min(one_large * 0.9, three_mid * 1.01), reg, sink=log, run_id="r")
    assert one_large > tracker.budget
    model = ScriptedModel(answers(), name="gateway")  # one backend serving every model by name
    _, details = await sample_and_aggregate(model, req, 3, tracker=tracker, model_name="large")
    sent = model.calls[0].request
    assert sent.model == "mid" and details.model == "mid"
    assert "switched to the smaller mid" in details.degradations[0].reason
    degraded = log.of_type(BudgetDegradedEvent)
    assert len(degraded) == 2 and degraded[1].to_model == "mid" and degraded[1].run_id == "r"
    assert isinstance(parse_event(degraded[1].model_dump(mode="json")), BudgetDegradedEvent)


async def test_resolve_routes_a_degraded_call_to_the_smaller_models_backend():
    reg = registry()
    req = request()
    probe = BudgetTracker(1e9, reg)
    tracker = BudgetTracker(probe.estimate("large", req, 1) * 0.5, reg)
    large, small = ScriptedModel(answers("L"), name="large"), ScriptedModel(answers("S"), name="small")
    text, details = await sample_and_aggregate(large, req, 2, tracker=tracker, resolve={"small": small}.get,
                                               candidates=["small"])
    assert details.model == "small" and tracker.records[0].model == "small"
    assert text == "S" and not large.calls and small.calls[0].request.model == "small"


async def test_nothing_fits_raises_with_a_hint_and_an_event():
    log = EventLog()
    # tokens: every call costs something (under FLOPs a call below 2/3 of the unit call is free)
    tracker = BudgetTracker(20, registry(), cost_model=TokenCost(), sink=log)
    with pytest.raises(BudgetExceededError) as info:
        await sample_and_aggregate(ScriptedModel(answers()), request(), 2, tracker=tracker, model_name="large")
    assert "--budget" in str(info.value) and "cheapest option" in str(info.value)
    assert log.of_type(BudgetExhaustedEvent)[0].model == "large"
    assert tracker.spent == 0 and tracker.reserved == 0


async def test_failed_call_releases_its_reservation():
    tracker = BudgetTracker(10_000, registry())
    with pytest.raises(ServerError):
        await sample_and_aggregate(ScriptedModel(lambda req: ServerError("boom"), name="large"), request(), 2,
                                   tracker=tracker)
    assert tracker.reserved == 0 and tracker.spent == 0 and tracker.remaining == 10_000


class _Verbose:
    """A tokenizer that spends a token per character (three times the tracker's assumption)."""

    name = "large"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        chars, messages = request_text_chars(request)
        return ChatResponse(choices=[Choice(text="ok")] * request.n,
                            usage=Usage(prompt_tokens=chars + 4 * messages, completion_tokens=2))

    def stream(self, request):  # pragma: no cover - not used
        raise NotImplementedError


async def test_tracker_learns_a_worse_tokenization_and_widens_its_estimate():
    tracker = BudgetTracker(1e6, registry(), cost_model=TokenCost())
    req = request()
    before = tracker.prompt_tokens(req, "large")
    actual = request_text_chars(req)[0] + 8
    await sample_and_aggregate(_Verbose(), req, 1, tracker=tracker)
    assert tracker.overruns == 1  # recorded, not hidden
    assert tracker.prompt_tokens(req, "large") >= actual > before
    await sample_and_aggregate(_Verbose(), req, 1, tracker=tracker)
    assert tracker.overruns == 1


async def test_concurrent_nodes_never_overbook_the_budget():
    reg = registry()
    log = EventLog()
    probe = BudgetTracker(1e9, reg, cost_model=TokenCost())
    per_call = probe.estimate("large", request(), 4)
    tracker = BudgetTracker(per_call * 3.5, reg, cost_model=TokenCost(), sink=log)
    peak = {"committed": 0.0}

    async def watch(event):
        if isinstance(event, BudgetSpentEvent):
            peak["committed"] = max(peak["committed"], tracker.spent + tracker.reserved)

    log._forward.append(watch)  # observe every booking as it happens
    backend = ScriptedModel(answers(), name="large", latency=0.01)

    wrappers: list[BudgetedModel] = []

    async def node(i: int):
        model = BudgetedModel(backend, allocation=Allocation(model="large", samples=4), tracker=tracker)
        wrappers.append(model)
        return await model.complete(request(node=f"n{i}"))

    results = await asyncio.gather(*(node(i) for i in range(12)), return_exceptions=True)
    done = [r for r in results if isinstance(r, ChatResponse)]
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(done) + len(refused) == 12 and done and refused
    assert tracker.spent <= tracker.budget and peak["committed"] <= tracker.budget
    assert tracker.degradations, "late nodes ran cheaper instead of failing outright"
    assert all(r.choices[0].text == "Paris" and len(r.choices) == 1 for r in done)
    # each node's own cost is booked to it, not mixed with its concurrent siblings'
    per_node = [d.cost for w in wrappers for d in w.history]
    assert sum(per_node) == pytest.approx(tracker.spent)
    assert sorted(per_node) == sorted(r.actual_cost for r in tracker.records)


async def test_critic_and_fuse_calls_are_paid_from_the_budget():
    tracker = BudgetTracker(1e6, registry(), cost_model=TokenCost())
    sampler = ScriptedModel(lambda req: reply("4"), name="large")
    critic = ScriptedModel([reply({"scores": [0.9, 0.1, 0.5]})], name="small")
    _, details = await sample_and_aggregate(sampler, request(), 3, "best_of_n", tracker=tracker, critic=critic)
    assert details.method_used == "best_of_n" and details.model_calls == 2
    assert [r.model for r in tracker.records] == ["large", "small"]
    assert details.cost == pytest.approx(tracker.spent)

    # a budget that pays for the sampling but leaves one token too few for the fuse call
    probe = BudgetTracker(1e6, registry(), cost_model=TokenCost())
    _, sampled = await sample_and_aggregate(sampler, request(), 3, tracker=probe)
    fuse_cost = probe.estimate("large", fuse_request(request().messages, ["4", "4", "4"], max_tokens=32,
                                                     context=request().context), 1)
    tight = BudgetTracker(sampled.cost + fuse_cost - 1, registry(), cost_model=TokenCost())
    assert tight.estimate("large", request(), 3) <= tight.budget
    fuser = ScriptedModel(["fused"], name="large")
    text, details = await sample_and_aggregate(sampler, request(), 3, "fuse", tracker=tight, fuse_model=fuser)
    assert text == "4" and details.method_used == "vote" and not fuser.calls
    assert "fuse step fell back" in details.notes[0] and "BudgetExceededError" in details.notes[0]
    assert tight.spent == pytest.approx(sampled.cost) and tight.spent <= tight.budget


async def test_a_scripted_worker_run_never_exceeds_its_budget():
    reg = registry()
    probe = BudgetTracker(1e9, reg, cost_model=TokenCost())
    worker = Worker("solver", "answers questions", max_steps=2, max_tokens=32)
    task = "What is the capital of France? Answer in one word."
    one = probe.estimate("large", ChatRequest(messages=worker.build_messages(task), max_tokens=32), 3)
    tracker = BudgetTracker(one * 2.2, reg, cost_model=TokenCost())
    backend = ScriptedModel(lambda req: reply("FINAL ANSWER: Paris"), name="gateway")
    allocator = BudgetAllocator(by_kind={"solver": Allocation(model="large", samples=3)},
                                default=Allocation(model="small"))

    results = []
    for i in range(5):
        alloc = allocator.for_node(f"n{i}", kind="solver")
        model = BudgetedModel(backend, allocation=alloc, tracker=tracker)
        results.append(await worker.run(task, model=model, call_context=CallContext(run_id="r", node_id=f"n{i}")))
        assert tracker.spent <= tracker.budget

    ok = [r for r in results if not r.failed]
    assert ok and all("Paris" in r.content for r in ok)
    failed = [r for r in results if r.failed]
    assert failed, "the budget ran out before the fifth node"
    assert all("budget" in (r.reason or "") for r in failed)
    assert tracker.degradations and all(d.reason for d in tracker.degradations)
    assert backend.calls[0].request.n == 3


def test_allocator_lookup_order_and_round_trip():
    alloc = BudgetAllocator(default=Allocation(model="small"), by_kind={"answer": Allocation(model="large", samples=4)},
                            by_node={"n7": Allocation(model="mid", samples=2, aggregation="best_of_n")})
    assert alloc.for_node("n7", kind="answer").model == "mid"
    assert alloc.for_node("n1", kind="answer").samples == 4
    assert alloc.for_node("n1", kind="other").model == "small"
    assert BudgetAllocator.model_validate_json(alloc.model_dump_json()) == alloc


async def test_allocator_from_a_search():
    task = generate_task(4)
    allocator, result = await BudgetAllocator.search(task.space, LookupEnvironment(task.table, task.space.budget),
                                                     strategy="insight", trials=25)
    best = result.best
    assert best is not None and len(result.trials) == 25
    for sub, choice in zip(task.space.subtasks, best.config, strict=True):
        assert allocator.for_node(kind=sub.name) == Allocation(model=choice.model, samples=choice.samples)
    with pytest.raises(ConfigurationError, match="infeasible"):
        BudgetAllocator.from_config(task.space, tuple(
            c.model_copy(update={"samples": 64, "model": task.space.models_by_size(i)[-1]})
            for i, c in enumerate(best.config)))


def test_tracker_rejects_bad_setup():
    with pytest.raises(ConfigurationError):
        BudgetTracker(0, registry())
    with pytest.raises(ConfigurationError, match="not in the budget registry"):
        BudgetTracker(10, registry()).plan("gpt-9", request(), 1)
    assert isinstance(BudgetTracker(10, registry()).cost_model, FlopsCost)


async def test_policy_gives_each_run_a_tracker_and_wraps_roles_and_nodes():
    from agentflow.budget.policy import BudgetPolicy

    policy = BudgetPolicy.for_models(5_000, ["tiny-served-model"], unit="tokens", samples=3)
    assert policy.registry.get("tiny-served-model").params == 1.0  # size is irrelevant to a token budget
    with pytest.raises(ConfigurationError, match="parameter count"):
        BudgetPolicy.for_models(5_000, ["tiny-served-model"], unit="flops")
    assert BudgetPolicy.for_models(5_000, ["Qwen2.5-7B-Instruct"], unit="flops").registry.get(
        "Qwen2.5-7B-Instruct").params == 7e9

    backend = ScriptedModel(answers(), name="tiny-served-model")
    run_a, run_b = policy.tracker(run_id="a"), policy.tracker(run_id="b")
    node = policy.wrap(backend, run_a, node_id="n1", kind="solver")
    role = policy.wrap(backend, run_a)
    await node.complete(request())
    await role.complete(request(node="plan"))
    assert [c.request.n for c in backend.calls] == [3, 1]
    assert run_a.summary().calls == 2 and run_b.spent == 0
    with pytest.raises(ConfigurationError, match="not in the budget registry"):
        policy.wrap(ScriptedModel(answers(), name="other"), run_a)
