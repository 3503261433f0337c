"""Graph surgery helpers: bring a sub-plan into a run's id space.

A decomposition's nodes get their parent's id as a prefix (``research/n1``); a replacement plan's
ids are renamed only where they collide with an id the run has ever used, so the event log never
describes two different nodes under one id.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from agentflow.workforce.plan import PLACEHOLDER, MapSpec, Plan, PlanNode


def rename_plan(plan: Plan, mapping: Mapping[str, str]) -> Plan:
    """Apply an id mapping to ids, inputs, ``{id}`` placeholders, map sources and outputs."""

    def ref(x: str) -> str:
        return mapping.get(x, x)

    def goal(text: str) -> str:
        return PLACEHOLDER.sub(lambda m: "{" + ref(m.group(1)) + "}" if m.group(1) in mapping else m.group(0), text)

    nodes = [
        n.model_copy(update={
            "id": ref(n.id),
            "inputs": [ref(i) for i in n.inputs],
            "goal": goal(n.goal),
            "map": MapSpec(over=ref(n.map.over), mode=n.map.mode) if n.map else None,
        })
        for n in plan.nodes
    ]
    return Plan(nodes=nodes, outputs=[ref(o) for o in plan.outputs], rationale=plan.rationale)


def unique_id(base: str, taken: Callable[[str], bool]) -> str:
    """``base``, or ``base~2``, ``base~3``... whichever is free."""
    if not taken(base):
        return base
    k = 2
    while taken(f"{base}~{k}"):
        k += 1
    return f"{base}~{k}"


def nest_plan(plan: Plan, parent: PlanNode, taken: Callable[[str], bool]) -> Plan:
    """A decomposition's plan with ``parent/`` ids; its roots also receive the parent's inputs."""
    mapping: dict[str, str] = {}
    claimed: set[str] = set()
    for n in plan.nodes:
        new = unique_id(f"{parent.id}/{n.id}", lambda x: taken(x) or x in claimed)
        claimed.add(new)
        mapping[n.id] = new
    nested = rename_plan(plan, mapping)
    nodes = [
        n if n.inputs else n.model_copy(update={"inputs": list(parent.inputs)})
        for n in nested.nodes
    ]
    return Plan(nodes=nodes, outputs=nested.output_ids(), rationale=nested.rationale)


def avoid_collisions(plan: Plan, taken: Collection[str] | Callable[[str], bool]) -> Plan:
    """Rename the plan's nodes whose ids are already taken; references follow the new names."""
    is_taken = taken if callable(taken) else taken.__contains__
    mapping: dict[str, str] = {}
    claimed: set[str] = set()
    own = {n.id for n in plan.nodes}
    for n in plan.nodes:
        if is_taken(n.id):
            new = unique_id(n.id, lambda x: is_taken(x) or x in claimed or x in own)
            mapping[n.id] = new
            claimed.add(new)
    return rename_plan(plan, mapping) if mapping else plan
