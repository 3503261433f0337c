"""Plan validation: is this a DAG the scheduler can run?

Each problem is reported as a :class:`PlanIssue` whose message names the exact node and says how
to fix it, because the messages go back to the planner model verbatim in the repair loop — a
vague "invalid plan" teaches a model nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal

import networkx as nx
from pydantic import BaseModel, Field

from agentflow.errors import PlanValidationError
from agentflow.workforce.plan import Plan, resolve_references

IssueCode = Literal[
    "empty", "duplicate_id", "bad_id", "unknown_input", "self_input", "cycle", "orphan", "unknown_output",
    "too_many_nodes", "too_deep", "function_missing", "unknown_function", "bad_map",
]


class PlanLimits(BaseModel):
    """Bounds that keep a plan cheap to run and a planner from running away."""

    max_nodes: int = Field(default=24, ge=1)
    #: nodes on the longest dependency chain
    max_depth: int = Field(default=10, ge=1)
    #: levels of nested decomposition (a "decompose" node at this level runs as a worker task)
    max_nesting: int = Field(default=2, ge=0)
    #: elements a ``map`` node may fan out to
    max_map_items: int = Field(default=64, ge=1)


class PlanIssue(BaseModel):
    code: IssueCode
    node_id: str | None = None
    message: str


class PlanCheck(BaseModel):
    """A plan with references resolved, and what is wrong with it (nothing when ``ok``)."""

    plan: Plan
    issues: list[PlanIssue] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def format_issues(issues: Collection[PlanIssue]) -> str:
    return "\n".join(f"- {i.message}" for i in issues)


def _id_list(ids: Collection[str], limit: int = 20) -> str:
    ids = list(ids)
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def check_plan(
    plan: Plan,
    limits: PlanLimits | None = None,
    *,
    external: Collection[str] = (),
    functions: Collection[str] | None = None,
) -> PlanCheck:
    """Resolve references, then check structure, references and limits.

    ``external`` ids are nodes outside this plan that it may use as inputs (finished results a
    replan builds on). ``functions``, when given, are the registered symbolic handler names.
    """
    limits = limits or PlanLimits()
    ext = frozenset(external)
    issues: list[PlanIssue] = []
    if not plan.nodes:
        return PlanCheck(plan=plan, issues=[PlanIssue(
            code="empty", message="the plan has no nodes; add at least one node that works on the request")])

    seen: set[str] = set()
    for node in plan.nodes:
        if node.id in seen:
            issues.append(PlanIssue(code="duplicate_id", node_id=node.id,
                                    message=f"two nodes have the id '{node.id}'; give every node a unique id"))
        seen.add(node.id)
        if any(ch.isspace() for ch in node.id) or any(ch in node.id for ch in "{}#,"):
            issues.append(PlanIssue(code="bad_id", node_id=node.id, message=(
                f"node id '{node.id}' contains spaces or one of {{ }} # ,; use letters, digits, '_' or '-'")))
        if node.id in ext:
            issues.append(PlanIssue(code="duplicate_id", node_id=node.id, message=(
                f"node id '{node.id}' is already used by an existing node; choose a new id")))

    resolved, unresolved = resolve_references(plan, ext)
    ids = [n.id for n in resolved.nodes]
    id_set = set(ids)
    for item in unresolved:
        node_id, ref = item.split(":", 1)
        known = _id_list(ids + sorted(ext))
        issues.append(PlanIssue(code="unknown_input", node_id=node_id, message=(
            f"node '{node_id}' lists input '{ref}', which is not a node of this plan (ids: {known}); "
            "reference an existing node id or remove the input")))

    for node in resolved.nodes:
        if node.id in node.inputs:
            issues.append(PlanIssue(code="self_input", node_id=node.id, message=(
                f"node '{node.id}' lists itself as an input; a node cannot use its own result")))
        if node.handler == "function":
            if not node.function:
                issues.append(PlanIssue(code="function_missing", node_id=node.id, message=(
                    f"node '{node.id}' has handler 'function' but names no function; set `function` "
                    "to a registered function or use handler 'worker'")))
            elif functions is not None and node.function not in functions:
                avail = _id_list(sorted(functions)) or "none"
                issues.append(PlanIssue(code="unknown_function", node_id=node.id, message=(
                    f"node '{node.id}' calls function '{node.function}', which is not registered "
                    f"(available: {avail}); use one of them or handler 'worker'")))
        if node.map is not None:
            if node.handler == "decompose":
                issues.append(PlanIssue(code="bad_map", node_id=node.id, message=(
                    f"node '{node.id}' maps a 'decompose' handler over a list; map a 'worker' or "
                    "'function' node instead")))
            if node.map.over not in id_set and node.map.over not in ext:
                issues.append(PlanIssue(code="bad_map", node_id=node.id, message=(
                    f"node '{node.id}' maps over '{node.map.over}', which is not a node id; set map_over "
                    "to the id of an input whose result is a list")))

    for out in resolved.outputs:
        if out not in id_set:
            issues.append(PlanIssue(code="unknown_output", node_id=out, message=(
                f"outputs lists '{out}', which is not a node of this plan (ids: {_id_list(ids)})")))

    if len(resolved.nodes) > limits.max_nodes:
        issues.append(PlanIssue(code="too_many_nodes", message=(
            f"the plan has {len(resolved.nodes)} nodes; the limit is {limits.max_nodes}: merge small steps "
            "into one node")))

    graph = nx.DiGraph()
    graph.add_nodes_from(ids)
    for node in resolved.nodes:
        for dep in node.inputs:
            if dep in id_set and dep != node.id:
                graph.add_edge(dep, node.id)
    cycle = None
    if not nx.is_directed_acyclic_graph(graph):  # linear time; find_cycle only when there is one
        cycle = nx.find_cycle(graph)
    if cycle:
        path = [edge[0] for edge in cycle] + [cycle[0][0]]
        issues.append(PlanIssue(code="cycle", node_id=path[0], message=(
            "the inputs form a cycle: " + " -> ".join(path) + "; a node may only use results of nodes "
            "that do not (directly or indirectly) use its own result — remove one of these inputs")))
    else:
        longest = nx.dag_longest_path(graph)
        if len(longest) > limits.max_depth:
            chain = " -> ".join(longest) if len(longest) <= 12 else " -> ".join(longest[:5] + ["..."] + longest[-3:])
            issues.append(PlanIssue(code="too_deep", node_id=longest[-1], message=(
                f"the longest chain of dependent nodes has {len(longest)} nodes ({chain}); the limit is "
                f"{limits.max_depth}: run independent steps in parallel or merge steps")))
        if resolved.outputs and all(o in id_set for o in resolved.outputs):
            needed = set(resolved.outputs)  # everything some output depends on: one reverse BFS
            frontier = list(needed)
            while frontier:
                for dep in graph.predecessors(frontier.pop()):
                    if dep not in needed:
                        needed.add(dep)
                        frontier.append(dep)
            for node_id in ids:
                if node_id not in needed:
                    issues.append(PlanIssue(code="orphan", node_id=node_id, message=(
                        f"node '{node_id}' is an orphan: no output depends on its result; make a later "
                        "node use it as an input, list it in `outputs`, or remove it")))
    return PlanCheck(plan=resolved, issues=issues)


def ensure_valid(
    plan: Plan,
    limits: PlanLimits | None = None,
    *,
    external: Collection[str] = (),
    functions: Collection[str] | None = None,
) -> Plan:
    """Return the resolved plan, or raise :class:`PlanValidationError` listing every problem."""
    check = check_plan(plan, limits, external=external, functions=functions)
    if not check.ok:
        raise PlanValidationError(
            "the plan is not a valid task DAG:\n" + format_issues(check.issues),
            hint="fix the listed nodes (or let the planner repair its plan)",
        )
    return check.plan
