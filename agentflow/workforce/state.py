"""A run's state, defined as a fold over its events.

``RunState.apply`` is the only way state changes: the live run applies each event it emits, and
:func:`rebuild_state` applies a stored log. Both therefore produce equal states — the property
crash-resume and replay rely on. Application is O(1) per event (dictionary updates only), so a
1,000-node run does not pay quadratic bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel, Field

from agentflow.llm.types import Usage
from agentflow.runs.events import Event, ModelCallEvent, ToolCallEvent, parse_event
from agentflow.workforce.events import (
    AnswerEvent,
    CriticVerdictEvent,
    NodeAssignedEvent,
    NodeCancelledEvent,
    NodeExpandedEvent,
    NodeFailedEvent,
    NodeFinishedEvent,
    NodeInvalidatedEvent,
    NodeOutputEvent,
    NodeReadyEvent,
    NodeReassignedEvent,
    NodeReplannedEvent,
    NodeRetriedEvent,
    NodeSkippedEvent,
    NodeStartedEvent,
    PlanCreatedEvent,
    PlanFailedEvent,
    RunFinishedEvent,
    RunStartedEvent,
    RunStatus,
)
from agentflow.workforce.plan import Plan, PlanNode

NodeStatus = Literal[
    "pending", "ready", "running", "checking", "expanded", "done", "failed", "skipped", "replaced", "cancelled",
]
#: statuses a node never leaves (except "done", which a rejected upstream result can reopen)
TERMINAL_STATUSES: frozenset[str] = frozenset({"done", "failed", "skipped", "replaced", "cancelled"})


class VerdictRecord(BaseModel):
    phase: str = "check"
    passed: bool
    probability: float
    source: str = ""
    feedback: str = ""
    malformed: bool = False


class NodeRecord(BaseModel):
    spec: PlanNode
    #: every node this one waits for: its inputs plus, for map/decompose parents, their children
    deps: list[str] = Field(default_factory=list)
    status: NodeStatus = "pending"
    #: the map/decompose parent that spawned this node
    parent: str | None = None
    nesting: int = 0
    #: the map element this child works on
    item: Any = None
    #: map/decompose parents: the children of the latest expansion
    children: list[str] = Field(default_factory=list)
    worker: str | None = None
    assigned_by: str | None = None
    attempts: int = 0
    output: str | None = None
    value: Any = None
    verdict: VerdictRecord | None = None
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    #: monotonic times of the first start and of the final result
    started: float | None = None
    finished: float | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started


class RunState(BaseModel):
    run_id: str | None = None
    request: str = ""
    status: RunStatus = "planning"
    nodes: dict[str, NodeRecord] = Field(default_factory=dict)
    #: the top-level node ids whose results answer the request
    outputs: list[str] = Field(default_factory=list)
    plans_made: int = 0
    plan_repairs: int = 0
    replans: int = 0
    full_replans: int = 0
    answer: str | None = None
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    usage_by_role: dict[str, Usage] = Field(default_factory=dict)
    usage_by_node: dict[str, Usage] = Field(default_factory=dict)
    calls_by_role: dict[str, int] = Field(default_factory=dict)
    model_calls: int = 0
    tool_calls: int = 0
    started: float | None = None
    finished: float | None = None

    # --- folding ---------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)

    def _node(self, event: Event) -> NodeRecord | None:
        return self.nodes.get(event.node_id) if event.node_id else None

    def _add(self, spec: PlanNode, *, parent: str | None = None, nesting: int = 0, item: Any = None) -> None:
        self.nodes[spec.id] = NodeRecord(spec=spec, deps=list(spec.inputs), parent=parent, nesting=nesting,
                                         item=item)

    # --- views -----------------------------------------------------------------------------------

    @property
    def active_nodes(self) -> list[NodeRecord]:
        """Nodes that belong to the current plan (not replaced by a replan)."""
        return [r for r in self.nodes.values() if r.status != "replaced"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rec in self.nodes.values():
            out[rec.status] = out.get(rec.status, 0) + 1
        return out

    def failed_nodes(self) -> list[str]:
        return [nid for nid, r in self.nodes.items() if r.status == "failed"]

    def plan(self) -> Plan:
        """The current top-level plan (after replans); map/decompose children are in ``graph()``."""
        nodes = [r.spec for r in self.nodes.values() if r.status != "replaced" and r.parent is None]
        return Plan(nodes=nodes, outputs=list(self.outputs))

    def graph(self, *, include_replaced: bool = False) -> nx.DiGraph:
        """A networkx DiGraph (dependency -> dependent) with each node's status and result.

        Map/decompose children are linked to their parent with ``kind="part_of"`` edges; input
        edges have ``kind="input"``. Export with ``networkx.node_link_data`` or ``write_graphml``.
        """
        g = nx.DiGraph()
        for nid, rec in self.nodes.items():
            if rec.status == "replaced" and not include_replaced:
                continue
            g.add_node(nid, goal=rec.spec.goal, status=rec.status, handler=rec.spec.handler,
                       worker=rec.worker or "", attempts=rec.attempts, output=rec.output or "",
                       parent=rec.parent or "", probability=rec.verdict.probability if rec.verdict else -1.0,
                       prompt_tokens=rec.usage.prompt_tokens, completion_tokens=rec.usage.completion_tokens)
        for nid, rec in self.nodes.items():
            if nid not in g:
                continue
            for dep in rec.deps:
                if dep in g:
                    g.add_edge(dep, nid, kind="part_of" if self.nodes[dep].parent == nid else "input")
        return g


# --- event handlers -------------------------------------------------------------------------------


def _run_started(s: RunState, e: RunStartedEvent) -> None:
    s.run_id = e.run_id
    s.request = e.request
    s.status = "planning"
    s.started = e.mono


def _plan_created(s: RunState, e: PlanCreatedEvent) -> None:
    s.plans_made += 1
    if e.type == "plan_repaired":
        s.plan_repairs += 1
    if e.mode == "initial":
        for spec in e.plan.nodes:
            s._add(spec)
        s.outputs = e.plan.output_ids()
        s.status = "running"


def _plan_failed(s: RunState, e: PlanFailedEvent) -> None:
    if e.mode == "initial":
        s.error = e.error


def _assigned(s: RunState, e: NodeAssignedEvent) -> None:
    rec = s._node(e)
    if rec is not None:
        rec.worker = e.worker
        rec.assigned_by = e.source


def _ready(s: RunState, e: NodeReadyEvent) -> None:
    rec = s._node(e)
    if rec is not None:
        rec.status = "ready"


def _started(s: RunState, e: NodeStartedEvent) -> None:
    rec = s._node(e)
    if rec is None:
        return
    rec.status = "running"
    if e.phase == "run":
        rec.attempts = e.attempt
    if e.worker is not None:
        rec.worker = e.worker
    if rec.started is None:
        rec.started = e.mono


def _verdict(s: RunState, e: CriticVerdictEvent) -> None:
    rec = s._node(e)
    if rec is not None:
        rec.verdict = VerdictRecord(phase=e.phase, passed=e.passed, probability=e.probability, source=e.source,
                                    feedback=e.feedback, malformed=e.malformed)


def _output(s: RunState, e: NodeOutputEvent) -> None:
    rec = s._node(e)
    if rec is None:
        return
    rec.status = "checking"
    rec.output = e.output
    rec.value = e.value
    rec.error = None


def _finished(s: RunState, e: NodeFinishedEvent) -> None:
    rec = s._node(e)
    if rec is not None:
        rec.status = "done"
        rec.finished = e.mono


def _failed(s: RunState, e: NodeFailedEvent) -> None:
    rec = s._node(e)
    if rec is None:
        return
    rec.error = e.reason
    if e.next_step in ("give_up", "escalate", "replan", "full_replan"):
        rec.status = "failed"
        rec.finished = e.mono
    else:
        rec.status = "pending"


def _retried(s: RunState, e: NodeRetriedEvent) -> None:
    rec = s._node(e)
    if rec is not None:
        rec.status = "pending"


def _reassigned(s: RunState, e: NodeReassignedEvent) -> None:
    rec = s._node(e)
    if rec is not None:
        rec.worker = e.to_worker
        rec.assigned_by = e.source or "reassign"
        rec.status = "pending"


def _replanned(s: RunState, e: NodeReplannedEvent) -> None:
    s.replans += 1
    if e.full:
        s.full_replans += 1
    for nid in e.removed:
        rec = s.nodes.get(nid)
        if rec is not None:
            rec.status = "replaced"
    for spec in e.added:
        s._add(spec)
    s.outputs = list(e.outputs)


def _expanded(s: RunState, e: NodeExpandedEvent) -> None:
    parent = s._node(e)
    if parent is None:
        return
    for old in parent.children:  # a re-expansion supersedes the previous children
        rec = s.nodes.get(old)
        if rec is not None:
            rec.status = "replaced"
    for i, spec in enumerate(e.children):
        item = e.items[i] if e.kind == "map" and i < len(e.items) else None
        s._add(spec, parent=parent.spec.id, nesting=e.nesting, item=item)
    parent.children = [c.id for c in e.children]
    parent.deps = list(parent.spec.inputs) + [c for c in e.collect if c not in parent.spec.inputs]
    parent.status = "expanded"


def _skipped(s: RunState, e: NodeSkippedEvent) -> None:
    rec = s._node(e)
    if rec is not None:
        rec.status = "skipped"
        rec.error = e.reason


def _invalidated(s: RunState, e: NodeInvalidatedEvent) -> None:
    rec = s._node(e)
    if rec is not None:
        rec.status = "pending"
        rec.output = None
        rec.value = None
        rec.verdict = None
        rec.finished = None


def _cancelled(s: RunState, e: NodeCancelledEvent) -> None:
    rec = s._node(e)
    if rec is not None and rec.status not in ("done", "failed", "skipped", "replaced"):
        rec.status = "cancelled"
        rec.error = e.reason


def _answer(s: RunState, e: AnswerEvent) -> None:
    s.answer = e.answer


def _run_finished(s: RunState, e: RunFinishedEvent) -> None:
    s.status = e.status
    s.answer = e.answer
    s.error = e.error
    s.finished = e.mono


def _model_call(s: RunState, e: ModelCallEvent) -> None:
    s.model_calls += 1
    s.usage = s.usage + e.usage
    role = e.context.role or "unknown"
    s.usage_by_role[role] = s.usage_by_role.get(role, Usage()) + e.usage
    s.calls_by_role[role] = s.calls_by_role.get(role, 0) + 1
    node_id = e.context.node_id or e.node_id
    if node_id:
        s.usage_by_node[node_id] = s.usage_by_node.get(node_id, Usage()) + e.usage
        rec = s.nodes.get(node_id)
        if rec is not None:
            rec.model_calls += 1
            rec.usage = rec.usage + e.usage


def _tool_call(s: RunState, e: ToolCallEvent) -> None:
    s.tool_calls += 1
    rec = s._node(e)
    if rec is not None:
        rec.tool_calls += 1


_HANDLERS: dict[str, Any] = {
    "run_started": _run_started,
    "plan_created": _plan_created,
    "plan_repaired": _plan_created,
    "plan_failed": _plan_failed,
    "node_assigned": _assigned,
    "node_ready": _ready,
    "node_started": _started,
    "critic_verdict": _verdict,
    "node_output": _output,
    "node_finished": _finished,
    "node_failed": _failed,
    "node_retried": _retried,
    "node_reassigned": _reassigned,
    "node_replanned": _replanned,
    "node_expanded": _expanded,
    "node_skipped": _skipped,
    "node_invalidated": _invalidated,
    "node_cancelled": _cancelled,
    "answer": _answer,
    "run_finished": _run_finished,
    "model_call": _model_call,
    "tool_call": _tool_call,
}


def rebuild_state(events: Iterable[Event | dict[str, Any]]) -> RunState:
    """Fold an event log (typed events or their JSON dicts) into the run's state."""
    state = RunState()
    for event in events:
        state.apply(parse_event(event) if isinstance(event, dict) else event)
    return state
