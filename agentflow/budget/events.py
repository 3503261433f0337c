"""Budget events: what the tracker reports to a run's event log.

A degradation is a decision a user wants to audit later ("why did node 3 run on the 8B model
with 2 samples?"), so each one is an event with its reason; every committed call is one too, so
the run's spending can be rebuilt from the log.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from agentflow.runs.events import Event


class Degradation(BaseModel):
    """A call planned cheaper than asked for, and why.

    The tracker keeps these records (``BudgetTracker.degradations``) and publishes each as a
    ``BudgetDegradedEvent``; defining the facts once keeps the record and the event in step.
    """

    node_id: str | None = None
    from_model: str
    to_model: str
    from_samples: int
    to_samples: int
    reason: str
    estimated_cost: float
    remaining: float


class BudgetDegradedEvent(Degradation, Event):
    """A call was planned cheaper than requested to stay within the budget (a ``Degradation``'s fields)."""

    type: Literal["budget_degraded"] = "budget_degraded"


class BudgetSpentEvent(Event):
    """A call finished and its actual cost was booked."""

    type: Literal["budget_spent"] = "budget_spent"
    model: str
    samples: int
    estimated_cost: float
    actual_cost: float
    spent: float
    budget: float
    unit: str
    #: the actual cost exceeded the reservation (the prompt tokenized worse than estimated)
    overrun: bool = False


class BudgetExhaustedEvent(Event):
    """A call was refused: not even the cheapest option fits the remaining budget."""

    type: Literal["budget_exhausted"] = "budget_exhausted"
    model: str
    samples: int
    cheapest_cost: float
    remaining: float
    budget: float
