"""Plan IR and DAG validation: references resolve, problems are named exactly."""

from __future__ import annotations

import pytest

from agentflow.errors import PlanValidationError
from agentflow.workforce import MapSpec, Plan, PlanLimits, PlanNode, check_plan, ensure_valid
from agentflow.workforce.planner import PlanningTask, plan_from_data, plan_json_schema


def _plan(*nodes: dict, outputs: list[str] | None = None) -> Plan:
    return Plan(nodes=[PlanNode(**n) for n in nodes], outputs=outputs or [])


def test_hash_references_and_placeholders_resolve_to_ids() -> None:
    plan = _plan(
        {"id": "find", "goal": "find the cities"},
        {"id": "pop", "goal": "population of each city in #1", "inputs": []},
        {"id": "sum", "goal": "add up {pop}", "inputs": ["#2"]},
    )
    check = check_plan(plan)
    assert check.ok, check.issues
    nodes = {n.id: n for n in check.plan.nodes}
    assert nodes["pop"].inputs == ["find"]
    assert nodes["pop"].goal == "population of each city in {find}"
    assert nodes["sum"].inputs == ["pop"]


def test_hash_in_goal_only_refers_to_earlier_nodes() -> None:
    # "rank #3" in the first node must not invent a dependency on a later node (and a cycle)
    plan = _plan({"id": "a", "goal": "who was ranked #3 in 1999?"}, {"id": "b", "goal": "x"},
                 {"id": "c", "goal": "combine", "inputs": ["a", "b"]})
    check = check_plan(plan)
    assert check.ok
    assert check.plan.nodes[0].inputs == []
    assert check.plan.nodes[0].goal == "who was ranked #3 in 1999?"


def test_cycle_is_named_with_its_path() -> None:
    plan = _plan({"id": "a", "goal": "x", "inputs": ["c"]}, {"id": "b", "goal": "y", "inputs": ["a"]},
                 {"id": "c", "goal": "z", "inputs": ["b"]})
    check = check_plan(plan)
    codes = [i.code for i in check.issues]
    assert codes == ["cycle"]
    message = check.issues[0].message
    assert "a -> b -> c -> a" in message or "b -> c -> a -> b" in message or "c -> a -> b -> c" in message


def test_dangling_reference_names_node_and_known_ids() -> None:
    check = check_plan(_plan({"id": "a", "goal": "x"}, {"id": "b", "goal": "y", "inputs": ["a", "zz"]}))
    assert [i.code for i in check.issues] == ["unknown_input"]
    assert "node 'b' lists input 'zz'" in check.issues[0].message
    assert "ids: a, b" in check.issues[0].message


def test_hash_reference_out_of_range_is_dangling() -> None:
    check = check_plan(_plan({"id": "a", "goal": "x"}, {"id": "b", "goal": "y", "inputs": ["#7"]}))
    assert [i.code for i in check.issues] == ["unknown_input"]


def test_orphan_is_reported_when_outputs_are_declared() -> None:
    plan = _plan({"id": "a", "goal": "x"}, {"id": "stray", "goal": "unused"}, {"id": "b", "goal": "y", "inputs": ["a"]},
                 outputs=["b"])
    check = check_plan(plan)
    assert [(i.code, i.node_id) for i in check.issues] == [("orphan", "stray")]
    # without declared outputs every sink is an output, so nothing is orphaned
    assert check_plan(plan.model_copy(update={"outputs": []})).ok


def test_limits_on_size_and_depth() -> None:
    chain = [{"id": f"n{i}", "goal": "step", "inputs": [f"n{i - 1}"] if i else []} for i in range(6)]
    check = check_plan(_plan(*chain), PlanLimits(max_nodes=5, max_depth=4))
    codes = {i.code for i in check.issues}
    assert codes == {"too_many_nodes", "too_deep"}
    deep = next(i for i in check.issues if i.code == "too_deep")
    assert "6 nodes" in deep.message and "limit is 4" in deep.message


def test_duplicate_ids_self_input_and_bad_ids() -> None:
    check = check_plan(_plan({"id": "a", "goal": "x"}, {"id": "a", "goal": "y"},
                             {"id": "my node", "goal": "z", "inputs": ["my node"]}))
    codes = sorted(i.code for i in check.issues)
    assert "duplicate_id" in codes and "bad_id" in codes and "self_input" in codes


def test_function_and_map_checks() -> None:
    plan = _plan({"id": "a", "goal": "list"}, {"id": "b", "goal": "count", "handler": "function", "function": "cnt",
                                               "inputs": ["a"]},
                 {"id": "c", "goal": "each", "map": MapSpec(over="nope")}, {"id": "d", "goal": "?",
                                                                               "handler": "function"})
    check = check_plan(plan, functions=["count"])
    messages = {i.code: i.message for i in check.issues}
    assert "'cnt', which is not registered (available: count)" in messages["unknown_function"]
    assert "maps over 'nope'" in messages["bad_map"]
    assert "names no function" in messages["function_missing"]


def test_map_over_adds_the_input() -> None:
    check = check_plan(_plan({"id": "a", "goal": "list"}, {"id": "b", "goal": "each {item}", "map": {"over": "#1"}}))
    assert check.ok
    b = check.plan.nodes[1]
    assert b.map is not None and b.map.over == "a" and b.inputs == ["a"]


def test_external_ids_allowed_as_inputs_but_not_reused() -> None:
    plan = _plan({"id": "new", "goal": "use {old}", "inputs": ["old"]})
    assert check_plan(plan, external=["old"]).ok
    clash = _plan({"id": "old", "goal": "again"})
    assert [i.code for i in check_plan(clash, external=["old"]).issues] == ["duplicate_id"]


def test_ensure_valid_raises_a_clear_error() -> None:
    with pytest.raises(PlanValidationError) as err:
        ensure_valid(_plan({"id": "a", "goal": "x", "inputs": ["a"]}))
    assert "lists itself as an input" in str(err.value)
    assert err.value.hint


def test_empty_plan() -> None:
    assert [i.code for i in check_plan(Plan(nodes=[])).issues] == ["empty"]


def test_plan_from_data_accepts_synonyms_and_string_arguments() -> None:
    plan, problems = plan_from_data({"tasks": [
        {"name": 1, "task": "list things", "depends_on": None},
        {"id": "2", "description": "count them", "dependencies": [1], "handler": "python", "function": "count",
         "arguments": "{\"min\": 2}"},
    ], "outputs": [2]})
    assert problems == [] and plan is not None
    assert plan.nodes[0].id == "1" and plan.nodes[1].inputs == ["1"]
    assert plan.nodes[1].handler == "function" and plan.nodes[1].arguments == {"min": 2}
    assert check_plan(plan, functions=["count"]).ok


def test_plan_from_data_reports_problems() -> None:
    plan, problems = plan_from_data({"nodes": [{"id": "a"}, "oops", {"id": "b", "goal": "x", "arguments": "{bad"}]})
    assert plan is None
    assert any("node 'a' has no goal" in p for p in problems)
    assert any("nodes[1] is not an object" in p for p in problems)
    assert any("`arguments` must be a JSON object" in p for p in problems)
    assert plan_from_data("text")[0] is None


def test_decompose_downgraded_when_not_allowed() -> None:
    plan, _ = plan_from_data({"nodes": [{"id": "a", "goal": "x", "handler": "decompose"}]}, allow_decompose=False)
    assert plan is not None and plan.nodes[0].handler == "worker"


def test_plan_schema_is_strict_and_lists_choices() -> None:
    from agentflow.workforce import WorkerProfile

    task = PlanningTask(request="r", workers=[WorkerProfile(name="w1"), WorkerProfile(name="w2")],
                        function_names=["count"], allow_decompose=False, limits=PlanLimits(max_nodes=7))
    schema = plan_json_schema(task)
    node = schema["properties"]["nodes"]["items"]
    assert node["additionalProperties"] is False
    assert set(node["required"]) == set(node["properties"])
    assert node["properties"]["handler"]["enum"] == ["worker", "function"]
    assert node["properties"]["worker"]["anyOf"][0]["enum"] == ["w1", "w2"]
    assert schema["properties"]["nodes"]["maxItems"] == 7


def test_plan_exports_to_networkx() -> None:
    g = _plan({"id": "a", "goal": "x"}, {"id": "b", "goal": "y", "inputs": ["a"]}).to_networkx()
    assert list(g.edges) == [("a", "b")]
    assert g.nodes["b"]["goal"] == "y"
