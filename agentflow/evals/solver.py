"""What the benchmark runner runs: a *solver* turns one GAIA task into an answer.

A solver is any async callable ``solver(task)`` or ``solver(task, context)`` returning a
``SolverOutput`` (or the tuple ``(answer, trace, usage, events)``). Keeping this seam narrow lets
the runner be tested with a ``ScriptedModel`` and lets researchers plug in their own agents;
``agentflow.evals.adapters`` holds the adapters for agentflow's Worker and Workforce.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentflow.evals.answer_format import GAIA_ANSWER_RULES
from agentflow.evals.loader import GaiaTask
from agentflow.llm.base import ChatModel
from agentflow.llm.types import CallContext, ChatRequest, Message, Usage
from agentflow.runs.events import Event, EventSink, ModelCallEvent, discard

logger = logging.getLogger(__name__)


class SolveContext(BaseModel):
    """What the runner tells a solver about the attempt it is making."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    attempt: int = 0
    #: a stable id for this attempt's run (``<task_id>`` or ``<task_id>-a<k>``)
    run_id: str
    #: events sent here are written to the attempt's events file as they happen
    sink: EventSink = discard
    #: folder holding the task's attachment (the dataset's split folder)
    workspace: Path | None = None
    #: folder of documents for local search, when the task set has one
    corpus: Path | None = None
    #: an empty folder for this attempt only (tools may write there; the dataset stays untouched)
    scratch: Path | None = None


class SolverOutput(BaseModel):
    """A solver's answer plus what it cost and how it got there."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    answer: str | None
    #: human-readable reasoning, submitted to the leaderboard as ``reasoning_trace``
    trace: str = ""
    usage: Usage = Field(default_factory=Usage)
    #: events not already sent to ``SolveContext.sink`` (the runner writes them after the fact)
    events: list[Event] = Field(default_factory=list)
    #: cost in the solver's own unit (budget units, dollars); ``None`` when unknown
    cost: float | None = None
    model_calls: int = 0


SolverResult = SolverOutput | tuple[Any, ...]
Solver = Callable[..., Awaitable[SolverResult]]


def coerce_output(result: Any) -> SolverOutput:
    """Accept a ``SolverOutput``, ``(answer, trace, usage, events)`` (shorter tuples too) or a bare answer."""
    if isinstance(result, SolverOutput):
        return result
    if isinstance(result, tuple):
        if not 1 <= len(result) <= 4:
            raise TypeError(f"a solver tuple has 1 to 4 items (answer, trace, usage, events), got {len(result)}")
        answer, trace, usage, events = (*result, *([None] * (4 - len(result))))
        return SolverOutput(
            answer=None if answer is None else str(answer),
            trace=str(trace or ""),
            usage=usage if isinstance(usage, Usage) else Usage.model_validate(usage or {}),
            events=list(events or []),
        )
    if result is None or isinstance(result, str):
        return SolverOutput(answer=result)
    raise TypeError(f"a solver must return SolverOutput, a tuple or a string, not {type(result).__name__}")


def wants_context(solver: Solver) -> bool:
    """Whether ``solver`` takes a second positional argument (the ``SolveContext``)."""
    try:
        params = list(inspect.signature(solver).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def task_prompt(task: GaiaTask, *, workspace: Path | None = None, corpus: Path | None = None,
                attachment_text: str | None = None, rules: str = GAIA_ANSWER_RULES) -> str:
    """The request given to an agent for one task: question, where the attachment is, answer rules."""
    lines = [task.question.strip()]
    if task.file_path is not None:
        shown = task.file_path
        if workspace is not None and task.file_path.is_relative_to(workspace):
            shown = task.file_path.relative_to(workspace)
        lines.append(f"\nAttached file: {shown.as_posix()} (read it with the document reader tool).")
    if attachment_text is not None:
        lines.append(f"\nContents of the attached file:\n{attachment_text}")
    if corpus is not None:
        lines.append("\nA local document collection is searchable with the document search tool.")
    lines.append("\n" + rules)
    return "\n".join(lines)


class ChatModelSolver:
    """Baseline solver: one model call, no tools; the attachment's text (first part) goes in the prompt.

    It measures what a model does without agentic help, and it is what the tests drive with a
    ``ScriptedModel``. Agentic solvers (a Worker with tools, the Workforce) live in
    ``agentflow.evals.adapters``.
    """

    def __init__(self, model: ChatModel, *, system: str = "You are a careful research assistant.",
                 max_tokens: int | None = 1024, temperature: float | None = None,
                 attachment_chars: int = 12_000) -> None:
        self.model = model
        self.system = system
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.attachment_chars = attachment_chars

    def _attachment(self, task: GaiaTask) -> str | None:
        if task.file_path is None:
            return None
        from agentflow.tools.readers import MissingDependencyError, ReaderError, ReadLimits, read_path

        try:
            return read_path(task.file_path, ReadLimits(max_text_chars=self.attachment_chars))
        except (ReaderError, MissingDependencyError) as exc:
            return f"[the attachment could not be read: {exc.message}]"

    async def __call__(self, task: GaiaTask, context: SolveContext) -> SolverOutput:
        import asyncio

        attachment = await asyncio.to_thread(self._attachment, task)
        request = ChatRequest(
            messages=[Message.system(self.system),
                      Message.user(task_prompt(task, workspace=context.workspace, attachment_text=attachment))],
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            context=CallContext(run_id=context.run_id, role="solver"),
        )
        response = await self.model.complete(request)
        await context.sink(ModelCallEvent.succeeded(request, response))
        text = response.text
        return SolverOutput(answer=text, trace=text, usage=response.usage, model_calls=1)


def events_from_dicts(items: Sequence[dict[str, Any] | Event]) -> list[Event]:
    """Events given as JSON dicts (a solver reading them back from a store) to typed events."""
    from agentflow.runs.events import parse_event

    return [item if isinstance(item, Event) else parse_event(item) for item in items]


__all__ = [
    "ChatModelSolver", "SolveContext", "Solver", "SolverOutput", "coerce_output", "events_from_dicts", "task_prompt",
    "wants_context",
]
