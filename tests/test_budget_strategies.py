"""Search strategies: every one stays within budget; the search loop; the insight-guided algorithm."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import pytest

from agentflow.budget.offline.generator import generate_task
from agentflow.budget.offline.metrics import normalized_curve, trials_to
from agentflow.budget.offline.table import LookupEnvironment
from agentflow.budget.search import Trial, run_search
from agentflow.budget.space import Config, SubtaskChoice
from agentflow.budget.strategies import STRATEGIES, InsightGuidedStrategy, SearchStrategy, make_strategy
from agentflow.budget.strategies.probes import budget_shares, insight_probes
from agentflow.errors import ConfigurationError

NON_LLM = [name for name, cls in STRATEGIES.items() if not cls.uses_llm]


@pytest.mark.parametrize("name", NON_LLM)
@pytest.mark.parametrize("seed", [0, 5])
async def test_every_strategy_stays_within_budget(name, seed):
    task = generate_task(seed)
    env = LookupEnvironment(task.table, task.space.budget)
    strategy = make_strategy(name, task.space, seed=seed)
    result = await run_search(strategy, env, 40)
    assert result.infeasible == 0
    assert result.trials, "every strategy proposes something"
    for trial in result.trials:
        assert task.space.cost(trial.proposed) <= task.space.budget + 1e-9
        assert trial.cost <= task.space.budget + 1e-9
    if name != "uniform":  # uniform tries each model tuple once and may run out early
        assert len(result.trials) == 40
    proposals = [t.proposed for t in result.trials]
    assert len(set(proposals)) == len(proposals), f"{name} repeated a configuration"


async def test_uniform_splits_budget_evenly_and_then_stops():
    task = generate_task(1)
    strategy = make_strategy("uniform", task.space)
    result = await run_search(strategy, LookupEnvironment(task.table, task.space.budget), 500)
    tuples = {tuple(c.model for c in t.proposed) for t in result.trials}
    assert len(tuples) == len(result.trials) <= len(list(task.space.all_model_tuples()))
    assert result.stopped_early and "no further configurations" in result.stopped_early


class _Overspender(SearchStrategy):
    name = "overspender"

    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        levels = [self.space.levels(i)[-1] for i in range(len(self.space))]
        return [tuple(SubtaskChoice(model=self.space.models_by_size(i)[-1], samples=s)
                      for i, s in enumerate(levels))]


async def test_run_search_refuses_infeasible_proposals_without_evaluating_them():
    task = generate_task(2)
    env = LookupEnvironment(task.table, task.space.budget)
    result = await run_search(_Overspender(task.space), env, 3)
    assert result.infeasible == 3 and env.calls == 0
    assert all(t.score is None and "exceeds the budget" in (t.note or "") for t in result.trials)


def test_make_strategy_errors():
    task = generate_task(0)
    with pytest.raises(ConfigurationError, match="unknown strategy"):
        make_strategy("annealing", task.space)
    with pytest.raises(ConfigurationError, match="needs a model"):
        make_strategy("agenttts", task.space)


def test_probes_compare_models_at_equal_spend_with_identical_context():
    task = generate_task(4)
    space = task.space
    probes, _ = insight_probes(space)
    shares = budget_shares(space)
    assert sum(shares) == pytest.approx(space.budget)
    for i in range(len(space)):
        mine = [p for p in probes if p.subtask == i]
        assert {p.model for p in mine} <= set(space.subtasks[i].models)
        for p in mine:
            assert space.cost(p.config) <= space.budget + 1e-9
            assert p.config[i].model == p.model
            # every probe spends (up to ladder rounding) the same on the probed subtask, unless one
            # sample of the model alone costs more
            one = space.choice_cost(i, SubtaskChoice(model=p.model, samples=1))
            assert space.choice_cost(i, p.config[i]) <= max(shares[i], one) + 1e-9
        smaller = [p for p in mine if p.model == space.models_by_size(i)[0]]
        larger = [p for p in mine if p.model == space.models_by_size(i)[-1]]
        if smaller and larger:
            assert smaller[0].config[i].samples >= larger[0].config[i].samples


async def test_insight_phases_run_in_order_and_finish_with_the_best_found():
    task = generate_task(3)
    strategy = InsightGuidedStrategy(task.space, seed=3)
    phases: list[str] = []
    result = await run_search(strategy, LookupEnvironment(task.table, task.space.budget), 60,
                              on_trial=lambda t: phases.append(strategy.phase))
    n_probes = len({p.config for p in insight_probes(task.space)[0]})
    assert set(phases[:n_probes]) == {"probe"}
    assert "probe" not in phases[n_probes:]
    assert set(phases) <= {"probe", "start", "greedy", "rebalance", "switch", "widen", "polish"}
    assert {"greedy", "rebalance"} & set(phases), "the ascent ran after the probes"
    assert all(r for r in strategy.probe_ranking)
    best = result.best
    assert best is not None and best.score >= 0.95 * task.table.optimum(task.space.budget)[1]


async def test_insight_needs_fewer_trials_than_random_search():
    """On fixed seeds (deterministic), the insight-guided search reaches 95% of the optimum in
    fewer trials on average than random search. The full comparison with Bayesian optimisation
    over many seeds is the benchmark's job (``agentflow bench tts``)."""
    trials = 60
    reached: dict[str, list[int]] = {"insight": [], "random": []}
    for seed in range(6):
        task = generate_task(seed)
        optimum = task.table.optimum(task.space.budget)[1]
        for name in reached:
            result = await run_search(make_strategy(name, task.space, seed=seed),
                                      LookupEnvironment(task.table, task.space.budget), trials)
            curve = normalized_curve([t.score for t in result.trials], optimum, trials)
            reached[name].append(trials_to(curve, 0.95) or trials + 1)
    assert statistics.fmean(reached["insight"]) < statistics.fmean(reached["random"])
    assert max(reached["insight"]) <= trials


async def test_bayesian_repairs_over_budget_suggestions_and_learns_from_them():
    task = generate_task(6)
    strategy = make_strategy("bayesian", task.space, seed=6)
    result = await run_search(strategy, LookupEnvironment(task.table, task.space.budget), 25)
    assert result.infeasible == 0
    counters = result.diagnostics["counters"]
    assert counters.get("over_budget_suggestions", 0) > 0  # TPE does not know the budget ...
    assert len(strategy.study.trials) >= 25  # ... and every evaluation went back to the study
