"""The plan IR: a typed task DAG.

A plan is what the planner emits and what the scheduler runs: nodes with a goal, the ids of the
nodes whose results they need (``inputs``), what a good result looks like, and how the node is
handled — by a worker agent, by a registered Python function (DecomP's symbolic handlers) or by a
nested decomposition. A node may ``map`` its goal over a list-valued input (DecomP's
``project``/``filter``).

References follow Decomposed Prompting: an input may name a node by id or as ``#k`` (the k-th node
of the plan, 1-based), and a goal may mention ``#k`` or ``{id}``. :func:`resolve_references`
rewrites all of them to plain ids so every later stage deals with one form only.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel, Field, field_validator

HandlerKind = Literal["worker", "function", "decompose"]
MapMode = Literal["project", "filter"]

#: ``#3`` in an input list or a goal: the third node of the plan
_HASH_REF = re.compile(r"#(\d+)\b")
#: ``{n2}`` in a goal: a placeholder for the result of node ``n2`` (``{item}`` is a map element)
PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_][A-Za-z0-9_.\-\[\]/]*)\}")
ITEM_PLACEHOLDER = "item"


def _id_list(value: Any) -> Any:
    """A model's list of node ids as stripped strings: ``None`` is none, a lone id (``3``, ``"n2"``) is a list of one.

    Models write ids as ints and sometimes send one id where a list belongs; anything else is
    left for pydantic to reject with its usual message.
    """
    if value is None:
        return []
    if isinstance(value, str | int):
        value = [value]
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    return value


class MapSpec(BaseModel):
    """Run the node once per element of a list-valued input (one child per element, concurrently).

    ``project`` collects every child's result into a list; ``filter`` keeps the elements whose
    child answered yes/true.
    """

    over: str
    mode: MapMode = "project"


class PlanNode(BaseModel):
    """One task of the DAG."""

    id: str = Field(min_length=1)
    goal: str = Field(min_length=1)
    #: ids (or ``#k``) of the nodes whose results this node needs; it sees nothing else
    inputs: list[str] = Field(default_factory=list)
    expected_output: str = ""
    acceptance_criteria: str = ""
    #: preferred worker name; the coordinator decides
    worker: str | None = None
    handler: HandlerKind = "worker"
    #: registered function name when ``handler == "function"``
    function: str | None = None
    #: literal keyword arguments for a function handler
    arguments: dict[str, Any] = Field(default_factory=dict)
    map: MapSpec | None = None
    #: seconds before one attempt of this node is abandoned (overrides the workforce default)
    timeout_s: float | None = Field(default=None, gt=0)
    #: run the critic on this node's result
    check: bool = True

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, value: Any) -> Any:
        return str(value).strip() if isinstance(value, int | str) else value

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs_to_str(cls, value: Any) -> Any:
        return _id_list(value)


class Plan(BaseModel):
    """A DAG of nodes plus the ids whose results answer the request.

    ``outputs`` empty means "every sink" (every node nothing depends on).
    """

    nodes: list[PlanNode]
    outputs: list[str] = Field(default_factory=list)
    rationale: str = ""

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs_to_str(cls, value: Any) -> Any:
        return _id_list(value)

    def node(self, node_id: str) -> PlanNode:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    @property
    def ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def sinks(self) -> list[str]:
        used = {i for n in self.nodes for i in n.inputs}
        return [n.id for n in self.nodes if n.id not in used]

    def output_ids(self) -> list[str]:
        return list(self.outputs) if self.outputs else self.sinks()

    def to_networkx(self) -> nx.DiGraph:
        """Edges run from a dependency to the node that needs it (data-flow direction)."""
        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.id, goal=n.goal, handler=n.handler, worker=n.worker or "",
                       function=n.function or "", map=n.map.over if n.map else "")
        for n in self.nodes:
            for dep in n.inputs:
                g.add_edge(dep, n.id)
        return g


def resolve_reference(ref: str, ids: list[str], id_set: frozenset[str] | set[str] | None = None) -> str | None:
    """An input reference as a node id: an exact id, else ``#k`` / ``k`` as a 1-based position."""
    if ref in (id_set if id_set is not None else ids):
        return ref
    text = ref[1:] if ref.startswith("#") else ref
    if text.isdigit():
        k = int(text)
        if 1 <= k <= len(ids):
            return ids[k - 1]
    return None


def resolve_references(plan: Plan, external: frozenset[str] | set[str] = frozenset()) -> tuple[Plan, list[str]]:
    """Rewrite ``#k`` references to ids and add goal references to ``inputs``.

    Returns the rewritten plan and the references that resolve to nothing (left as written, for
    validation to report). ``external`` ids (finished nodes a replan may build on) resolve as
    themselves. A ``#k`` in a goal counts as a reference only for an *earlier* node, as in DecomP,
    so text such as "rank #1" in a late node never invents a cycle; ``{id}`` placeholders count
    for any node id.
    """
    ids = [n.id for n in plan.nodes]
    id_set = set(ids)
    unresolved: list[str] = []
    nodes: list[PlanNode] = []
    for pos, node in enumerate(plan.nodes):
        inputs: list[str] = []
        for ref in node.inputs:
            rid = ref if ref in external and ref not in id_set else resolve_reference(ref, ids, id_set)
            if rid is None:
                unresolved.append(f"{node.id}:{ref}")
                rid = ref
            if rid not in inputs:
                inputs.append(rid)

        def _hash(match: re.Match[str], pos: int = pos, inputs: list[str] = inputs) -> str:
            k = int(match.group(1))
            if 1 <= k <= pos:  # an earlier node
                target = ids[k - 1]
                if target not in inputs:
                    inputs.append(target)
                return "{" + target + "}"
            return match.group(0)

        goal = _HASH_REF.sub(_hash, node.goal)
        for name in PLACEHOLDER.findall(goal):
            if name != node.id and (name in id_set or name in external) and name not in inputs:
                inputs.append(name)
        map_spec = node.map
        if map_spec is not None:
            over = map_spec.over
            rid = over if over in external and over not in id_set else resolve_reference(over, ids, id_set)
            if rid is not None:
                if rid not in inputs:
                    inputs.append(rid)
                map_spec = MapSpec(over=rid, mode=map_spec.mode)
        nodes.append(node.model_copy(update={"inputs": inputs, "goal": goal, "map": map_spec}))
    outputs = []
    for ref in plan.outputs:
        rid = resolve_reference(ref, ids, id_set)
        outputs.append(rid if rid is not None else ref)
    return Plan(nodes=nodes, outputs=outputs, rationale=plan.rationale), unresolved
