"""A workforce run under a budget: worker nodes sampled per their allocation, every call paid for.

The workforce itself has no budget option yet; models wrapped by ``BudgetPolicy.wrap`` put a run
under a tracker all the same, which is what this test exercises.
"""

from __future__ import annotations

from agentflow import ScriptedModel, Worker
from agentflow.budget.allocator import Allocation, BudgetAllocator
from agentflow.budget.cost import TokenCost
from agentflow.budget.policy import BudgetPolicy
from agentflow.budget.registry import ModelRegistry, ModelSpec
from agentflow.llm.types import ChatRequest
from agentflow.testing import by_role, reply
from agentflow.workforce import FailurePolicy, Plan, PlanNode, Workforce

NO_RECOVERY = FailurePolicy(max_retries=0, max_reassignments=0, max_replans=0, max_full_replans=0)
PLAN = Plan(nodes=[PlanNode(id="a", goal="A"), PlanNode(id="b", goal="B"), PlanNode(id="c", goal="C"),
                   PlanNode(id="d", goal="join", inputs=["a", "b", "c"])], outputs=[])


def backend() -> ScriptedModel:
    def worker(req: ChatRequest):
        return reply(f"RESULT-{req.context.node_id}")

    return ScriptedModel(by_role(worker=worker, answer=lambda req: reply("final answer")), name="served")


def policy(budget: float) -> BudgetPolicy:
    registry = ModelRegistry([ModelSpec(name="served", params=8e9)])
    return BudgetPolicy(budget, registry, cost_model=TokenCost(), default_max_tokens=32,
                        allocator=BudgetAllocator(by_kind={"w": Allocation(model="served", samples=3)}))


async def run(budget: float):
    m = backend()
    p = policy(budget)
    tracker = p.tracker(run_id="r1")
    worker = Worker("w", "general worker", model=p.wrap(m, tracker, kind="w"), max_tokens=24)
    wf = Workforce([worker], model=p.wrap(m, tracker), planner=None, critic=None, policy=NO_RECOVERY)
    result = await wf.run("req", plan=PLAN)
    return result, tracker, m


async def test_a_workforce_run_samples_per_allocation_and_stays_within_budget():
    result, tracker, m = await run(1e9)
    assert result.ok, result.error
    worker_calls = [c for c in m.calls if c.role == "worker"]
    assert len(worker_calls) == 4 and all(c.request.n == 3 for c in worker_calls)
    assert result.nodes["d"].output is not None
    assert tracker.summary().calls == 5  # four nodes and the answer stage
    per_node = next(r.estimated_cost for r in tracker.records if r.node_id == "a")

    # a, b and c reserve together: room for two at three samples and one at two (24 tokens each)
    result, tracker, m = await run(2 * per_node + (per_node - 24))
    assert result.ok, result.error
    assert tracker.spent <= tracker.budget and tracker.overruns == 0
    assert [(d.from_samples, d.to_samples) for d in tracker.degradations] == [(3, 2)]
    assert "lowered to 2" in tracker.degradations[0].reason
    ns = sorted(c.request.n for c in m.calls if c.role == "worker")
    assert ns == [2, 3, 3, 3]


async def test_workforce_budget_option_books_every_role_and_never_overspends():
    """``Workforce(budget=policy)``: one book per run covering planner, workers, critic and answer."""
    from agentflow.workforce import rebuild_state

    plan = {"nodes": [{"id": n, "goal": f"part {n}", "inputs": []} for n in "abc"]
            + [{"id": "d", "goal": "join", "inputs": ["a", "b", "c"]}], "outputs": ["d"]}
    m = ScriptedModel(by_role(
        planner=lambda req: reply(plan),
        worker=lambda req: reply(f"RESULT-{req.context.node_id}"),
        critic=lambda req: reply({"verdict": "yes", "score": 0.9, "feedback": ""}),
        answer=lambda req: reply("final answer"),
    ), name="served")
    generous = policy(1e9)
    wf = Workforce([Worker("w", "general worker", model=m, max_tokens=24)], model=m, budget=generous)
    result = await wf.run("req")
    assert result.ok, result.error
    assert result.budget is not None and 0 < result.budget.spent <= result.budget.budget
    roles = {c.role for c in m.calls}
    assert roles == {"planner", "worker", "critic", "answer"}
    assert sum(1 for c in m.calls if c.role == "worker" and c.request.n == 3) == 4  # allocation applied
    booked = result.budget.calls
    assert booked == len(m.calls)  # every model call was paid for, not only the workers'
    assert "budget_spent" in {e.type for e in result.events}
    assert rebuild_state(result.events).status == result.state.status

    # a second run of the same workforce gets a fresh book, and a tight budget degrades instead of overspending
    tight = policy(result.budget.spent * 0.6)
    calls_before = len(m.calls)
    wf_tight = Workforce([Worker("w", "general worker", model=m, max_tokens=24)], model=m, budget=tight,
                         policy=NO_RECOVERY)
    squeezed = await wf_tight.run("req")
    assert squeezed.budget.spent <= squeezed.budget.budget
    assert squeezed.budget.overruns == 0
    if squeezed.status == "succeeded":
        assert squeezed.budget.degradations
    else:  # refused outright: the run ends with a reason naming the budget, never an exception
        assert "budget" in (squeezed.error or "").lower(), squeezed.error
    assert squeezed.budget.calls == len(m.calls) - calls_before
