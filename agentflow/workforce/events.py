"""Typed events for every transition of a workforce run.

They are the source of truth for a run: :mod:`agentflow.workforce.state` rebuilds the plan, the node
statuses and results from the event list alone, and the live run keeps its state *by applying the
events it emits*, so a replayed log and the live run cannot disagree. Model and tool calls reuse
``ModelCallEvent`` / ``ToolCallEvent`` from :mod:`agentflow.runs.events`; their ``context`` carries
the node and role, so token usage and latency are attributable from the log.

Every event that concerns a node sets ``node_id``; payloads are JSON-safe so a log round-trips
through ``model_dump(mode="json")`` / ``parse_event`` without loss.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agentflow.llm.types import Usage
from agentflow.runs.events import Event
from agentflow.workforce.plan import Plan, PlanNode

PlanMode = Literal["initial", "decompose", "replan", "full_replan"]
NextStep = Literal["retry", "reassign", "replan", "full_replan", "escalate", "give_up"]


class RunStartedEvent(Event):
    type: Literal["run_started"] = "run_started"
    request: str
    #: the effective configuration (JSON-safe), for reading a log later
    options: dict[str, Any] = Field(default_factory=dict)


class PlanCreatedEvent(Event):
    """The planner produced a valid plan.

    Only the ``initial`` plan puts nodes into the run's graph directly; decomposition and replan
    plans enter it through ``NodeExpandedEvent`` / ``NodeReplannedEvent`` with their final ids.
    """

    type: Literal["plan_created"] = "plan_created"
    plan: Plan
    mode: PlanMode = "initial"
    #: model calls the planner needed (1 + repairs + retries)
    attempts: int = 1


class PlanRepairedEvent(PlanCreatedEvent):
    """A valid plan that needed repair: earlier attempts were invalid and fed back to the planner."""

    type: Literal["plan_repaired"] = "plan_repaired"  # type: ignore[assignment]
    issues_fixed: list[str] = Field(default_factory=list)


class PlanInvalidEvent(Event):
    """One planner attempt was unusable; ``issues`` went back to the planner."""

    type: Literal["plan_invalid"] = "plan_invalid"
    mode: PlanMode = "initial"
    attempt: int = 1
    issues: list[str] = Field(default_factory=list)
    raw: str = ""


class PlanFailedEvent(Event):
    """The planner gave up (repair budget spent or the model unreachable)."""

    type: Literal["plan_failed"] = "plan_failed"
    mode: PlanMode = "initial"
    error: str


class NodeAssignedEvent(Event):
    type: Literal["node_assigned"] = "node_assigned"
    worker: str | None = None
    #: hint, llm, rules, fallback, only (a single worker), inherited (map child), function
    source: str = ""
    reason: str = ""


class NodeReadyEvent(Event):
    type: Literal["node_ready"] = "node_ready"
    #: queued on inputs that the critic has not confirmed yet
    speculative: bool = False


class NodeStartedEvent(Event):
    type: Literal["node_started"] = "node_started"
    attempt: int = 1
    worker: str | None = None
    handler: str = "worker"
    #: "collect" when a map/decompose parent gathers its children's results
    phase: Literal["run", "collect"] = "run"
    note: str | None = None


class CriticVerdictEvent(Event):
    type: Literal["critic_verdict"] = "critic_verdict"
    phase: Literal["check", "feasibility"] = "check"
    passed: bool
    probability: float
    #: logprobs, verbalized, default (malformed or unavailable critic), rule
    source: str = "verbalized"
    feedback: str = ""
    malformed: bool = False
    raw: str | None = None


class NodeOutputEvent(Event):
    """A node's handler produced a result; it is final once ``NodeFinishedEvent`` follows."""

    type: Literal["node_output"] = "node_output"
    attempt: int = 1
    output: str = ""
    #: the structured value (a symbolic handler's return value, a map's list), JSON-safe
    value: Any = None
    model_calls: int = 0
    tool_calls: int = 0
    usage: Usage = Field(default_factory=Usage)
    duration_s: float = 0.0
    note: str | None = None


class NodeFinishedEvent(Event):
    """The result was accepted (critic passed, or no check applies)."""

    type: Literal["node_finished"] = "node_finished"


class NodeFailedEvent(Event):
    """An attempt failed (handler failure, timeout, critic rejection); ``next_step`` says what follows."""

    type: Literal["node_failed"] = "node_failed"
    attempt: int = 1
    reason: str
    next_step: NextStep = "give_up"


class NodeRetriedEvent(Event):
    type: Literal["node_retried"] = "node_retried"
    attempt: int
    feedback: str = ""


class NodeReassignedEvent(Event):
    type: Literal["node_reassigned"] = "node_reassigned"
    from_worker: str | None = None
    to_worker: str
    source: str = ""
    reason: str = ""


class NodeReplannedEvent(Event):
    """The failed node (``node_id``) and the nodes in ``removed`` were replaced by ``added``.

    Finished nodes are never in ``removed``: the new nodes may use their results as inputs.
    """

    type: Literal["node_replanned"] = "node_replanned"
    full: bool = False
    removed: list[str] = Field(default_factory=list)
    added: list[PlanNode] = Field(default_factory=list)
    #: the run's output node ids after the splice
    outputs: list[str] = Field(default_factory=list)


class NodeExpandedEvent(Event):
    """A map or decompose node spawned children; it completes by collecting ``collect``.

    Re-expanding a node (after a retry) replaces the children of its previous expansion.
    """

    type: Literal["node_expanded"] = "node_expanded"
    kind: Literal["map", "decompose"]
    children: list[PlanNode] = Field(default_factory=list)
    #: the children whose results the parent gathers (a decompose node's sub-plan outputs)
    collect: list[str] = Field(default_factory=list)
    #: map elements, one per child, JSON-safe
    items: list[Any] = Field(default_factory=list)
    nesting: int = 0


class NodeSkippedEvent(Event):
    """Never ran (or its work was dropped) because an upstream node failed for good."""

    type: Literal["node_skipped"] = "node_skipped"
    reason: str = ""


class NodeInvalidatedEvent(Event):
    """A speculative start or result was discarded: an input it used was rejected by the critic."""

    type: Literal["node_invalidated"] = "node_invalidated"
    reason: str = ""


class NodeCancelledEvent(Event):
    type: Literal["node_cancelled"] = "node_cancelled"
    reason: str = ""


class AnswerEvent(Event):
    type: Literal["answer"] = "answer"
    answer: str
    raw: str = ""
    formatter: str = ""
    failed: bool = False
    reason: str | None = None


RunStatus = Literal["planning", "running", "succeeded", "partial", "failed", "cancelled"]


class RunFinishedEvent(Event):
    type: Literal["run_finished"] = "run_finished"
    status: RunStatus
    answer: str | None = None
    error: str | None = None
    failed_nodes: list[str] = Field(default_factory=list)
