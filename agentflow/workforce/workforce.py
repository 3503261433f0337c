"""``Workforce``: the public entry point — workers plus planner, coordinator, critic and answer stage.

    workforce = Workforce(workers=[researcher, coder], model=model)   # defaults built from one model
    result = await workforce.run("Which ...?")
    print(result.answer, result.status, result.usage_by_role)

Everything optional has a default that works from a single model; every default can be replaced
(``planner=StaticPlanner(plan)``, ``coordinator=RuleBasedCoordinator()``, ``critic=None``,
``answer=AnswerStage(model, formatter=GaiaAnswerFormat())``). Settings live in
:class:`WorkforceConfig` and may also be passed as keywords (``Workforce(..., max_concurrency=8)``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from agentflow.budget.policy import BudgetPolicy
from agentflow.budget.tracker import BudgetSummary
from agentflow.errors import ConfigurationError
from agentflow.llm.base import ChatModel
from agentflow.llm.types import Usage
from agentflow.runs.events import Event, EventSink, parse_event
from agentflow.workforce.answer import AnswerStage
from agentflow.workforce.answer_format import AnswerFormatter
from agentflow.workforce.coordinator import Coordinator, LLMCoordinator, RuleBasedCoordinator, WorkerProfile
from agentflow.workforce.critic import Critic, LLMCritic
from agentflow.workforce.events import RunStatus
from agentflow.workforce.functions import FunctionRegistry, FunctionsLike
from agentflow.workforce.plan import Plan
from agentflow.workforce.planner import LLMPlanner, Planner
from agentflow.workforce.policy import FailurePolicy
from agentflow.workforce.runner import WorkforceRun
from agentflow.workforce.state import RunState
from agentflow.workforce.validation import PlanLimits


class WorkforceConfig(BaseModel):
    """Settings of a workforce; every field can also be passed to ``Workforce(...)`` as a keyword."""

    model_config = ConfigDict(extra="forbid")

    #: nodes running at once
    max_concurrency: int = Field(default=16, ge=1)
    #: in-flight calls per model name (``"*"`` applies to every model without its own entry)
    per_model_limits: dict[str, int] = Field(default_factory=dict)
    #: seconds one node attempt may take (a node's ``timeout_s`` overrides it); None = no limit
    node_timeout_s: float | None = Field(default=None, gt=0)
    #: let dependents start on results the critic has not confirmed yet (never for side effects)
    speculate: bool = True
    #: run the critic's feasibility check before nodes whose tools have side effects
    feasibility_checks: bool = False
    #: let the critic judge symbolic function nodes too (they are deterministic code by default)
    check_functions: bool = False
    #: characters of each dependency's result a node sees (longer ones are shortened, with a reference)
    context_chars: int = Field(default=4000, ge=200)
    limits: PlanLimits = Field(default_factory=PlanLimits)
    policy: FailurePolicy = Field(default_factory=FailurePolicy)
    #: when no valid plan can be made: fail the run, or run the request as one worker node
    on_plan_failure: Literal["fail", "single_node"] = "fail"

    @field_validator("per_model_limits")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for name, limit in value.items():
            if limit < 1:
                raise ValueError(f"per_model_limits[{name!r}] must be at least 1, got {limit}")
        return value


class NodeResult(BaseModel):
    """One node's outcome, flattened from the run state for convenient reading."""

    id: str
    goal: str
    status: str
    handler: str
    worker: str | None = None
    parent: str | None = None
    output: str | None = None
    value: Any = None
    attempts: int = 0
    probability: float | None = None
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    duration_s: float | None = None


class RunResult(BaseModel):
    """Everything about a finished run: the answer, the final graph, per-node results, events, usage."""

    run_id: str
    request: str
    status: RunStatus
    answer: str | None = None
    error: str | None = None
    duration_s: float = 0.0
    state: RunState
    events: list[SerializeAsAny[Event]] = Field(default_factory=list)
    #: spending against the run's budget (None when the workforce has no budget policy)
    budget: BudgetSummary | None = None

    @field_validator("events", mode="before")
    @classmethod
    def _typed_events(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [parse_event(e) if isinstance(e, dict) else e for e in value]
        return value

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def usage(self) -> Usage:
        return self.state.usage

    @property
    def usage_by_role(self) -> dict[str, Usage]:
        return self.state.usage_by_role

    @property
    def usage_by_node(self) -> dict[str, Usage]:
        return self.state.usage_by_node

    @property
    def model_calls(self) -> int:
        return self.state.model_calls

    @property
    def plan(self) -> Plan:
        """The final top-level plan (replaced nodes left out; expansions are in ``graph()``)."""
        return self.state.plan()

    @cached_property
    def nodes(self) -> dict[str, NodeResult]:
        out = {}
        for nid, rec in self.state.nodes.items():
            out[nid] = NodeResult(
                id=nid, goal=rec.spec.goal, status=rec.status, handler=rec.spec.handler, worker=rec.worker,
                parent=rec.parent, output=rec.output, value=rec.value, attempts=rec.attempts,
                probability=rec.verdict.probability if rec.verdict else None, error=rec.error, usage=rec.usage,
                model_calls=rec.model_calls, tool_calls=rec.tool_calls, duration_s=rec.duration_s)
        return out

    def graph(self, *, include_replaced: bool = False) -> nx.DiGraph:
        """The final task graph as a networkx DiGraph (export with ``nx.node_link_data``)."""
        return self.state.graph(include_replaced=include_replaced)

    def events_of(self, *types: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, types)]


class RunHandle:
    """A run in progress: watch ``state`` live, ``cancel()`` it, ``await`` its result."""

    def __init__(self, run: WorkforceRun, task: asyncio.Task[RunResult]) -> None:
        self._run = run
        self._task = task

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def state(self) -> RunState:
        return self._run.state

    @property
    def events(self) -> list[Event]:
        return self._run.log

    def done(self) -> bool:
        return self._task.done()

    def cancel(self, reason: str = "cancelled by the user") -> None:
        """Stop the run; awaiting the handle then gives a result with status ``cancelled``."""
        self._run.cancel(reason)

    async def result(self) -> RunResult:
        return await self._task

    def __await__(self):
        return self._task.__await__()


_DEFAULT: Any = object()


class Workforce:
    """Workers plus the roles that plan, assign, check and answer.

    Args:
        workers: the workers (``agentflow.Worker`` or anything with ``name``, ``description``,
            ``tools``, ``model`` and an async ``run(task, context, *, sink, call_context, model)``).
        model: the default model: builds the default planner, coordinator, critic and answer stage,
            and serves workers that have no model of their own.
        planner: an ``LLMPlanner`` by default; ``StaticPlanner(plan)`` for a fixed DAG; ``None`` to
            require ``run(plan=...)``.
        coordinator: ``LLMCoordinator`` by default when there are several workers, else rules.
        critic: ``LLMCritic(model)`` by default; ``None`` turns checking off.
        answer: ``AnswerStage(model)`` by default.
        functions: symbolic handlers (``{name: fn}`` or a list of functions / ``FunctionHandler``s).
        formatter: answer format rules for the default answer stage (e.g. ``GaiaAnswerFormat()``).
        budget: an ``agentflow.budget.BudgetPolicy``: each run gets its own budget book, worker
            nodes are sampled per their allocation, and no run spends more than the budget (calls
            that would are degraded, and refused only when nothing cheaper fits).
        config: a ``WorkforceConfig``; keyword ``options`` override its fields.
    """

    def __init__(
        self,
        workers: Iterable[Any] = (),
        *,
        model: ChatModel | None = None,
        planner: Planner | None = _DEFAULT,
        coordinator: Coordinator | None = _DEFAULT,
        critic: Critic | None = _DEFAULT,
        answer: AnswerStage | None = _DEFAULT,
        functions: FunctionsLike | None = None,
        formatter: AnswerFormatter | None = None,
        budget: BudgetPolicy | None = None,
        config: WorkforceConfig | None = None,
        **options: Any,
    ) -> None:
        self.budget = budget
        self.workers: dict[str, Any] = {}
        for w in workers:
            name = getattr(w, "name", None)
            if not name or not callable(getattr(w, "run", None)):
                raise ConfigurationError(f"{w!r} is not a worker", hint="pass agentflow.Worker instances")
            if name in self.workers:
                raise ConfigurationError(f"two workers are named {name!r}", hint="give every worker a unique name")
            self.workers[name] = w
        self.model = model or next((w.model for w in self.workers.values() if getattr(w, "model", None)), None)
        from agentflow.agent import Worker

        for w in self.workers.values():  # custom worker objects may need no model at all
            if isinstance(w, Worker) and w.model is None and self.model is None:
                raise ConfigurationError(f"worker {w.name!r} has no model",
                                         hint="pass model= to the Workforce or to the Worker")
        try:
            base = config.model_dump() if config is not None else {}
            self.config = WorkforceConfig(**{**base, **options})
        except ValidationError as exc:
            fields = ", ".join(WorkforceConfig.model_fields)
            raise ConfigurationError(f"invalid workforce option: {exc.errors()[0]['msg']} "
                                     f"({'.'.join(str(p) for p in exc.errors()[0]['loc'])})",
                                     hint=f"valid options: {fields}") from None
        self.functions = functions if isinstance(functions, FunctionRegistry) else FunctionRegistry(functions)
        self.planner: Planner | None = (LLMPlanner(self.model) if self.model is not None else None) \
            if planner is _DEFAULT else planner
        if coordinator is _DEFAULT or coordinator is None:
            coordinator = (LLMCoordinator(self.model) if self.model is not None and len(self.workers) > 1
                           else RuleBasedCoordinator())
        self.coordinator: Coordinator = coordinator
        self.critic: Critic | None = (LLMCritic(self.model) if self.model is not None else None) \
            if critic is _DEFAULT else critic
        if answer is _DEFAULT or answer is None:
            answer = AnswerStage(self.model if answer is _DEFAULT else None, formatter=formatter)
        self.answer: AnswerStage = answer
        self.profiles: list[WorkerProfile] = [WorkerProfile.of(w) for w in self.workers.values()]
        self._profiles_by_name = {p.name: p for p in self.profiles}
        self.function_lines = [fh.describe() for fh in self.functions]

    def profile(self, name: str | None) -> WorkerProfile | None:
        return self._profiles_by_name.get(name) if name else None

    def describe(self) -> dict[str, Any]:
        """The effective setup, JSON-safe (recorded in the run's first event)."""
        return {
            "workers": [p.model_dump() for p in self.profiles],
            "functions": self.functions.names(),
            "planner": type(self.planner).__name__ if self.planner is not None else None,
            "coordinator": type(self.coordinator).__name__,
            "critic": type(self.critic).__name__ if self.critic is not None else None,
            "answer": type(self.answer).__name__,
            "formatter": getattr(self.answer.formatter, "name", ""),
            "model": getattr(self.model, "name", None),
            "config": self.config.model_dump(mode="json"),
        }

    def start(self, request: str, *, plan: Plan | None = None, sink: EventSink | None = None,
              run_id: str | None = None, timeout: float | None = None) -> RunHandle:
        """Start a run in the background (inside a running event loop) and return its handle."""
        if not isinstance(request, str) or not request.strip():
            raise ConfigurationError("the request is empty", hint="pass the question or task as a non-empty string")
        run = WorkforceRun(self, request, run_id=run_id or uuid.uuid4().hex[:12], sink=sink, plan=plan,
                           timeout=timeout)

        async def go() -> RunResult:
            await run.execute()
            return _result(run)

        return RunHandle(run, asyncio.ensure_future(go()))

    async def run(self, request: str, *, plan: Plan | None = None, sink: EventSink | None = None,
                  run_id: str | None = None, timeout: float | None = None) -> RunResult:
        """Solve ``request``: plan, run the DAG, check, recover, answer. Never raises for model trouble.

        Args:
            plan: run this DAG instead of asking the planner (validated first).
            sink: receives every event as it happens (in order; a slow sink does not slow the run).
            timeout: seconds for the whole run; on expiry the result has status ``cancelled``.
        """
        handle = self.start(request, plan=plan, sink=sink, run_id=run_id, timeout=timeout)
        try:
            return await handle.result()
        except asyncio.CancelledError:
            handle._task.cancel()
            raise

    def run_sync(self, request: str, **kwargs: Any) -> RunResult:
        """``run`` for scripts without an event loop."""
        return run_sync(self, request, **kwargs)


def _result(run: WorkforceRun) -> RunResult:
    end = run.finished_at if run.finished_at is not None else run.started
    return RunResult(run_id=run.run_id, request=run.request, status=run.state.status, answer=run.state.answer,
                     error=run.state.error, duration_s=end - run.started, state=run.state, events=list(run.log),
                     budget=run.tracker.summary() if run.tracker is not None else None)


def run_sync(workforce: Workforce, request: str, **kwargs: Any) -> RunResult:
    """Run a workforce from synchronous code (a script, a notebook cell without a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(workforce.run(request, **kwargs))
    raise ConfigurationError("run_sync was called inside a running event loop",
                             hint="use `await workforce.run(...)` there instead")


def build_default_workforce(
    model: ChatModel,
    tools: Sequence[Any] = (),
    *,
    max_steps: int = 8,
    max_tokens: int | None = None,
    formatter: AnswerFormatter | None = None,
    critic: bool = True,
    **options: Any,
) -> Workforce:
    """The workforce ``agentflow run`` uses: a tool-using worker and a tool-free writer, one model.

    The writer reasons over upstream results without tool definitions in its prompt (cheaper and
    faster); the assistant does everything that needs tools.
    """
    from agentflow.agent import Worker

    assistant = Worker(
        "assistant",
        "solves tasks that need tools: computing, running Python, reading files, looking things up",
        model=model, tools=tools, max_steps=max_steps, max_tokens=max_tokens,
    )
    writer = Worker(
        "writer",
        "reasons over given results and writes text: summaries, comparisons, explanations, final wording; no tools",
        model=model, max_steps=2, max_tokens=max_tokens,
    )
    workers = [assistant, writer] if tools else [assistant]
    return Workforce(workers, model=model, formatter=formatter, critic=_DEFAULT if critic else None, **options)
