"""The failure policy: what happens when a node fails or the critic rejects its result.

The steps escalate from cheap and local to expensive and global, each with its own bound:

1. **retry** the node with the critic's feedback (per node),
2. **reassign** it to another worker (per node),
3. **replan** the failed node and its descendants only, keeping every finished result (per run),
4. **full replan** of the request around the finished results, as the last resort (per run),
5. **give up**: the node fails, its descendants are skipped, the rest of the run goes on.

Children of a map or decompose node do not replan on their own: after their retries they
*escalate*, failing the parent, whose own policy then runs (a retried decompose node plans its
sub-task afresh, which is a local replan of that nested scope).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from agentflow.workforce.events import NextStep


class FailurePolicy(BaseModel):
    max_retries: int = Field(default=1, ge=0)
    max_reassignments: int = Field(default=1, ge=0)
    max_replans: int = Field(default=2, ge=0)
    max_full_replans: int = Field(default=1, ge=0)


class NodeHistory(BaseModel):
    """What has already been tried for one node."""

    retries: int = 0
    reassignments: int = 0
    workers_tried: list[str] = Field(default_factory=list)
    #: the last failure reason and critic feedback, handed to the next attempt
    feedback: str | None = None
    last_output: str | None = None


def next_step(
    policy: FailurePolicy,
    history: NodeHistory,
    *,
    can_reassign: bool,
    is_child: bool,
    can_replan: bool,
    replans_used: int,
    full_replans_used: int,
) -> NextStep:
    """The next recovery step for a failed node, given what was tried and what is possible."""
    if history.retries < policy.max_retries:
        return "retry"
    if can_reassign and history.reassignments < policy.max_reassignments:
        return "reassign"
    if is_child:
        return "escalate"
    if can_replan and replans_used < policy.max_replans:
        return "replan"
    if can_replan and full_replans_used < policy.max_full_replans:
        return "full_replan"
    return "give_up"
