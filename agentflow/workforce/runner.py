"""One workforce run: plan -> assign -> schedule -> execute -> check -> recover -> answer.

``WorkforceRun`` owns everything that lives for one request: the event log and the state folded
from it, the scheduler, the node tasks. Every change of state is an event (``_emit`` applies it
to the state, appends it to the log and forwards it), so the log alone reconstructs the run.

Concurrency model: each node attempt is an asyncio task. A task runs the node's handler, publishes
the output (which may let speculative dependents start), releases its concurrency slot and then
waits for the critic — so the critic calls of sibling nodes run side by side and never block the
next wave. Recovery steps that change the graph (replans) run as separate tasks; graph surgery
itself is synchronous, so no task ever sees a half-spliced graph.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentflow.errors import PlanValidationError
from agentflow.llm.base import ChatModel
from agentflow.llm.types import CallContext, Usage
from agentflow.runs.events import Event, EventSink
from agentflow.workforce.concurrency import LimitedModel, PriorityLimiter
from agentflow.workforce.context import as_text, build_context, render_goal, shorten
from agentflow.workforce.coordinator import Assignment, RuleBasedCoordinator
from agentflow.workforce.critic import Verdict
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
    PlanMode,
    PlanRepairedEvent,
    RunFinishedEvent,
    RunStartedEvent,
    RunStatus,
)
from agentflow.workforce.mapping import as_list, truthy
from agentflow.workforce.plan import Plan, PlanNode
from agentflow.workforce.planner import ExistingResult, PlanningTask, PlanOutcome
from agentflow.workforce.policy import NodeHistory, next_step
from agentflow.workforce.scheduler import CLOSED, NodeSpec, Scheduler
from agentflow.workforce.splice import avoid_collisions, nest_plan, unique_id
from agentflow.workforce.state import TERMINAL_STATUSES, RunState

if TYPE_CHECKING:
    from agentflow.workforce.workforce import Workforce

logger = logging.getLogger(__name__)


@dataclass
class _Output:
    text: str
    value: Any
    usage: Usage = field(default_factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    note: str | None = None
    duration_s: float = 0.0


@dataclass
class _Failure:
    reason: str
    partial: str | None = None


@dataclass
class _Expansion:
    kind: str
    children: list[PlanNode]
    collect: list[str]
    nesting: int
    items: list[Any] = field(default_factory=list)
    assignments: dict[str, Assignment] = field(default_factory=dict)


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of a result value (so the event log round-trips)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return json.loads(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return str(value)


class WorkforceRun:
    """The state and machinery of one request. Use ``Workforce.run`` / ``Workforce.start``."""

    def __init__(self, workforce: Workforce, request: str, *, run_id: str, sink: EventSink | None = None,
                 plan: Plan | None = None, timeout: float | None = None) -> None:
        self.wf = workforce
        self.cfg = workforce.config
        self.request = request
        self.run_id = run_id
        self.state = RunState()
        self.log: list[Event] = []
        self._seq = 0
        self._given_plan = plan
        self._timeout = timeout
        self.sched = Scheduler(self.cfg.max_concurrency, on_ready=self._on_ready)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._all_tasks: set[asyncio.Task[Any]] = set()
        self._aux: set[asyncio.Task[Any]] = set()
        self.gen: dict[str, int] = {}
        self.hist: dict[str, NodeHistory] = {}
        self.values: dict[str, Any] = {}
        self.items: dict[str, Any] = {}
        self.phase: dict[str, str] = {}
        self.collect: dict[str, list[str]] = {}
        self._reserved: set[str] = set()
        self.replans_used = 0
        self.full_replans_used = 0
        self._wake = asyncio.Event()
        self._limited: dict[int, ChatModel] = {}
        self._limiters: dict[str, PriorityLimiter] = {}
        self._cancel_reason: str | None = None
        self._body: asyncio.Task[None] | None = None
        self._sink_queue: asyncio.Queue[Event | None] | None = None
        self._forwarder: asyncio.Task[None] | None = None
        self._external_sink = sink
        self._budgeted: dict[int, ChatModel] = {}
        #: the run's budget book (None when the workforce has no budget policy)
        self.tracker = workforce.budget.tracker(run_id=run_id, sink=self._sink) if workforce.budget else None
        self.started = time.monotonic()
        self.finished_at: float | None = None

    # --- events ----------------------------------------------------------------------------------

    def _emit(self, cls: type[Event], **fields: Any) -> None:
        """Create one of the run's own events and record it.

        Its id is run-scoped and sequential (``<run_id>.<n>``): cheaper than a uuid on the hottest
        path of a large run (an event per transition), and it sorts in emission order.
        """
        self._seq += 1
        self._record(cls(id=f"{self.run_id}.{self._seq}", run_id=self.run_id, **fields))

    def _record(self, event: Event) -> None:
        """The single place state changes: fold the event into the state, log it, forward it."""
        if event.run_id is None:
            event.run_id = self.run_id
        self.state.apply(event)
        self.log.append(event)
        if self._sink_queue is not None:
            self._sink_queue.put_nowait(event)

    async def _sink(self, event: Event) -> None:
        """The sink handed to workers, planner, coordinator and critic."""
        self._record(event)

    async def _forward(self, sink: EventSink) -> None:
        assert self._sink_queue is not None
        while True:
            event = await self._sink_queue.get()
            if event is None:
                return
            try:
                await sink(event)
            except asyncio.CancelledError:
                raise
            except Exception:  # a listener's bug must not stop the run
                logger.exception("event sink raised on %s; continuing", event.type)

    def _ctx(self, role: str, node_id: str | None = None) -> CallContext:
        return CallContext(run_id=self.run_id, node_id=node_id, role=role)

    def _on_ready(self, node_id: str, speculative: bool) -> None:
        self._emit(NodeReadyEvent, node_id=node_id, speculative=speculative)

    # --- models ----------------------------------------------------------------------------------

    def _model(self, model: ChatModel | None, *, node_id: str | None = None,
               kind: str | None = None) -> ChatModel | None:
        """The model as the run uses it: behind its per-model limit, and under the run's budget.

        With a budget, worker nodes (``node_id``/``kind`` given) get their allocation (model,
        samples, aggregation); the planner, coordinator, critic and answer stage are booked against
        the same budget, so the whole run never exceeds it.
        """
        limited = self._limit(model)
        if limited is None or self.tracker is None or self.wf.budget is None:
            return limited
        if node_id is None and kind is None:
            wrapped = self._budgeted.get(id(limited))
            if wrapped is None:
                wrapped = self._budgeted[id(limited)] = self.wf.budget.wrap(limited, self.tracker)
            return wrapped
        return self.wf.budget.wrap(limited, self.tracker, node_id=node_id, kind=kind)

    def _limit(self, model: ChatModel | None) -> ChatModel | None:
        """The model behind the run's per-model limit (itself when no limit applies)."""
        if model is None or not self.cfg.per_model_limits:
            return model
        key = id(model)
        wrapped = self._limited.get(key)
        if wrapped is None:
            limit = self.cfg.per_model_limits.get(model.name, self.cfg.per_model_limits.get("*"))
            if limit is None:
                wrapped = model
            else:
                limiter = self._limiters.setdefault(model.name, PriorityLimiter(limit))
                wrapped = LimitedModel(model, limiter, lambda req: self.sched.rank(req.context.node_id))
            self._limited[key] = wrapped
        return wrapped

    # --- lifecycle -------------------------------------------------------------------------------

    async def execute(self) -> None:
        """Run to completion. Cancelling the caller cancels the run (and re-raises)."""
        if self._external_sink is not None:
            self._sink_queue = asyncio.Queue()
            self._forwarder = asyncio.ensure_future(self._forward(self._external_sink))
        self._emit(RunStartedEvent, request=self.request, options=self.wf.describe())
        self._body = asyncio.ensure_future(self._run_body())
        if self._cancel_reason is not None:  # cancelled before it started
            self._body.cancel()
        timer = (asyncio.get_running_loop().call_later(self._timeout, self.cancel,
                                                       f"the run exceeded its timeout of {self._timeout:g}s")
                 if self._timeout else None)
        try:
            await self._body
        except asyncio.CancelledError:
            if self._cancel_reason is None:  # our caller was cancelled: clean up, then propagate
                self._body.cancel()
                await self._teardown("the run was cancelled by its caller")
                raise
            await self._teardown(self._cancel_reason)
        except Exception as exc:  # a bug in the orchestration must still end the run with a record
            logger.exception("workforce run %s crashed", self.run_id)
            await self._teardown(None)
            self._finish("failed", error=f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if timer is not None:
                timer.cancel()
            self.finished_at = time.monotonic()
            await self._close_sink()

    def cancel(self, reason: str = "the run was cancelled") -> None:
        """Stop the run: running nodes are cancelled and the result has status ``cancelled``.

        Safe to call at any time: before the run has started (it then stops at once), while it
        runs, or after it finished (no effect).
        """
        if self._cancel_reason is not None or (self._body is not None and self._body.done()):
            return
        self._cancel_reason = reason
        if self._body is not None:
            self._body.cancel()

    async def _close_sink(self) -> None:
        if self._sink_queue is None or self._forwarder is None:
            return
        self._sink_queue.put_nowait(None)
        try:
            await asyncio.shield(self._forwarder)
        except asyncio.CancelledError:
            pass

    async def _teardown(self, reason: str | None) -> None:
        pending = [t for t in self._all_tasks | self._aux if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if reason is None:
            return
        for nid, rec in self.state.nodes.items():
            if rec.status not in TERMINAL_STATUSES:
                self._emit(NodeCancelledEvent, node_id=nid, reason=reason)
        if self.state.status not in ("succeeded", "partial", "failed", "cancelled"):
            self._finish("cancelled", error=reason)

    def _finish(self, status: RunStatus, *, answer: str | None = None, error: str | None = None) -> None:
        self._emit(RunFinishedEvent, status=status, answer=answer, error=error,
                   failed_nodes=self.state.failed_nodes())

    async def _run_body(self) -> None:
        plan = await self._initial_plan()
        if plan is None:
            self._finish("failed", error=self.state.error)
            return
        assignments = await self._assign(plan.nodes)
        self.sched.add_nodes(self._schedule(plan.nodes, assignments))
        await self._drive()
        await self._answer()

    # --- planning --------------------------------------------------------------------------------

    def _planning_task(self, mode: PlanMode, **extra: Any) -> PlanningTask:
        return PlanningTask(
            request=self.request, mode=mode, workers=self.wf.profiles, functions=self.wf.function_lines,
            function_names=self.wf.functions.names(), limits=self.cfg.limits,
            allow_decompose=self.cfg.limits.max_nesting > extra.pop("nesting_base", 0), **extra,
        )

    def _emit_plan(self, outcome: PlanOutcome, mode: PlanMode, node_id: str | None) -> None:
        if outcome.attempts > 1 and outcome.issues_fixed:
            self._emit(PlanRepairedEvent, node_id=node_id, plan=outcome.plan, mode=mode, attempts=outcome.attempts,
                       issues_fixed=outcome.issues_fixed)
        else:
            self._emit(PlanCreatedEvent, node_id=node_id, plan=outcome.plan, mode=mode, attempts=outcome.attempts)

    async def _call_planner(self, task: PlanningTask, node_id: str | None) -> PlanOutcome | str:
        """The planner's outcome, or the reason planning failed (never an exception)."""
        planner = self.wf.planner
        if planner is None:
            return "the workforce has no planner"
        try:
            return await planner.plan(task, model=self._model(getattr(planner, "model", None)),
                                      call_context=self._ctx("planner", node_id), sink=self._sink)
        except asyncio.CancelledError:
            raise
        except PlanValidationError as exc:
            return exc.message
        except Exception as exc:  # a custom planner's bug becomes a planning failure
            logger.exception("planner raised")
            return f"the planner raised {type(exc).__name__}: {exc}"

    async def _initial_plan(self) -> Plan | None:
        if self._given_plan is not None:
            from agentflow.workforce.validation import check_plan

            check = check_plan(self._given_plan, self.cfg.limits, functions=self.wf.functions.names())
            if not check.ok:
                error = "the given plan is not a valid task DAG:\n" + "\n".join(f"- {i.message}" for i in check.issues)
                self._emit(PlanFailedEvent, mode="initial", error=error)
                return None
            self._emit(PlanCreatedEvent, plan=check.plan, mode="initial")
            return check.plan
        if self.wf.planner is None:
            self._emit(PlanFailedEvent, mode="initial", error="no planner and no plan: pass planner=... or plan=...")
            return None
        outcome = await self._call_planner(self._planning_task("initial"), None)
        if isinstance(outcome, str):
            self._emit(PlanFailedEvent, mode="initial", error=f"planning failed: {outcome}")
            if self.cfg.on_plan_failure != "single_node":
                return None
            outcome = PlanOutcome(plan=Plan(nodes=[PlanNode(id="task", goal=self.request)]))
        self._emit_plan(outcome, "initial", None)
        return outcome.plan

    # --- assignment and admission ----------------------------------------------------------------

    def _needs_worker(self, node: PlanNode) -> bool:
        return node.handler != "function"

    async def _assign(self, nodes: list[PlanNode], exclude: dict[str, list[str]] | None = None) -> dict[str, Assignment]:
        need = [n for n in nodes if self._needs_worker(n)]
        profiles = self.wf.profiles
        if not need or not profiles:
            return {}
        if len(profiles) == 1 and not exclude:
            return {n.id: Assignment(node_id=n.id, worker=profiles[0].name, source="only") for n in need}
        coordinator = self.wf.coordinator
        result: dict[str, Assignment] = {}
        try:
            result = await coordinator.assign(
                need, profiles, request=self.request, exclude=exclude,
                model=self._model(getattr(coordinator, "model", None)),
                call_context=self._ctx("coordinator"), sink=self._sink)
        except asyncio.CancelledError:
            raise
        except Exception:  # a custom coordinator's bug: fall back to rules
            logger.exception("coordinator raised; falling back to rule-based assignment")
        rules = RuleBasedCoordinator()
        out: dict[str, Assignment] = {}
        for n in need:
            a = result.get(n.id)
            banned = (exclude or {}).get(n.id, [])
            if a is None or a.worker not in self.wf.workers or a.worker in banned:
                a = rules.choose(n, profiles, banned)
                if a is not None:
                    a = a.model_copy(update={"source": "fallback"})
            if a is not None:
                out[n.id] = a
        return out

    def _side_effects(self, node: PlanNode, worker: str | None) -> bool:
        if node.handler == "function":
            fh = self.wf.functions.get(node.function)
            return bool(fh and fh.side_effects)
        profile = self.wf.profile(worker)
        return bool(profile and profile.side_effects)

    def _speculative(self, node: PlanNode, worker: str | None) -> bool:
        if not self.cfg.speculate or node.map is not None or node.handler == "decompose":
            return False  # expansions are planned from their inputs: never from unchecked ones
        return not self._side_effects(node, worker)

    def _schedule(self, nodes: list[PlanNode], assignments: dict[str, Assignment]) -> list[NodeSpec]:
        specs = []
        for n in nodes:
            a = assignments.get(n.id)
            if a is not None:
                self._emit(NodeAssignedEvent, node_id=n.id, worker=a.worker, source=a.source, reason=a.reason)
            specs.append(NodeSpec(id=n.id, deps=list(n.inputs), speculative=self._speculative(n, a.worker if a else None)))
        return specs

    # --- the main loop ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while (nid := self.sched.pop_ready()) is not None:
            g = self.gen.get(nid, 0) + 1
            self.gen[nid] = g
            task = asyncio.ensure_future(self._node_task(nid, g))
            self.tasks[nid] = task
            self._all_tasks.add(task)
            task.add_done_callback(lambda t, nid=nid, g=g: self._task_done(nid, g, t))

    def _task_done(self, nid: str, g: int, task: asyncio.Task[None]) -> None:
        self._all_tasks.discard(task)
        if self.tasks.get(nid) is task:
            del self.tasks[nid]
        if self.gen.get(nid) == g:
            self.sched.release(nid)
        if not task.cancelled() and task.exception() is not None:
            logger.error("node task %s ended with an exception", nid, exc_info=task.exception())
        self._dispatch()
        self._wake.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._aux.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._aux.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("recovery task ended with an exception", exc_info=t.exception())
            self._dispatch()
            self._wake.set()

        task.add_done_callback(done)

    async def _drive(self) -> None:
        self._dispatch()
        while self.tasks or self._aux:
            self._wake.clear()
            await self._wake.wait()
        for nid, slot in list(self.sched.slots.items()):
            if slot.state != CLOSED and not slot.confirmed:
                # cannot happen when every failure path closes its descendants; never hang on it
                logger.warning("node %s never became ready; skipping it", nid)
                self._emit(NodeSkippedEvent, node_id=nid, reason="never became ready: its inputs did not finish")
                self.sched.close(nid)

    def _current(self, nid: str, g: int) -> bool:
        return self.gen.get(nid) == g and self.sched.state_of(nid) not in (None, CLOSED)

    # --- one node attempt ------------------------------------------------------------------------

    async def _node_task(self, nid: str, g: int) -> None:
        try:
            if self.phase.get(nid) == "collect":
                await self._collect(nid, g)
            else:
                await self._attempt(nid, g)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an orchestration bug on one node: record it as that node's failure
            logger.exception("node %s crashed", nid)
            if self._current(nid, g):
                await self._on_failure(nid, g, f"internal error: {type(exc).__name__}: {exc}", None, None)

    def _kind(self, nid: str) -> tuple[str, str | None]:
        rec = self.state.nodes[nid]
        spec = rec.spec
        if spec.map is not None:
            return "map", None
        if spec.handler == "function":
            return "function", None
        if spec.handler == "decompose":
            if rec.nesting < self.cfg.limits.max_nesting and self.wf.planner is not None:
                return "decompose", None
            return "worker", f"nesting limit ({self.cfg.limits.max_nesting}) reached: done by one worker"
        return "worker", None

    def _text(self, nid: str) -> str:
        rec = self.state.nodes.get(nid)
        return (rec.output or "") if rec is not None else ""

    def _value(self, nid: str) -> Any:
        if nid in self.values:
            return self.values[nid]
        rec = self.state.nodes.get(nid)
        return rec.value if rec is not None and rec.value is not None else self._text(nid)

    def _context(self, spec: PlanNode) -> tuple[dict[str, str], str | None]:
        texts = {d: self._text(d) for d in spec.inputs}
        deps = [(d, self.state.nodes[d].spec.goal, texts[d]) for d in spec.inputs]
        return texts, build_context(deps, max_chars_per_input=self.cfg.context_chars)

    async def _attempt(self, nid: str, g: int) -> None:
        rec = self.state.nodes[nid]
        spec = rec.spec
        kind, note = self._kind(nid)
        attempt = rec.attempts + 1
        self._emit(NodeStartedEvent, node_id=nid, attempt=attempt, worker=rec.worker if kind == "worker" else None,
                   handler=kind, note=note)
        texts, context = self._context(spec)
        critic = self.wf.critic
        if critic is not None and self.cfg.feasibility_checks and self._side_effects(spec, rec.worker):
            verdict = await self._critic_call(critic.feasibility(
                request=self.request, node=spec, worker=self.wf.profile(rec.worker), context=context,
                model=self._model(getattr(critic, "model", None)), call_context=self._ctx("critic", nid),
                sink=self._sink))
            if not self._current(nid, g):
                return
            self._emit_verdict(nid, verdict, "feasibility")
            if not verdict.passed:
                await self._on_failure(nid, g, f"the feasibility check failed (p={verdict.probability:.2f}): "
                                       f"{verdict.feedback}", verdict.feedback, None)
                return
        started = time.monotonic()
        timeout = spec.timeout_s or self.cfg.node_timeout_s
        handler = self._run_handler(nid, kind, texts, context)
        try:
            outcome = await (asyncio.wait_for(handler, timeout) if timeout else handler)
        except asyncio.TimeoutError:
            outcome = _Failure(f"timed out after {timeout:g}s")
        if not self._current(nid, g):
            return
        if isinstance(outcome, _Expansion):
            self._apply_expansion(nid, outcome)
        elif isinstance(outcome, _Failure):
            await self._on_failure(nid, g, outcome.reason, None, outcome.partial)
        else:
            outcome.duration_s = time.monotonic() - started
            await self._accept(nid, g, attempt, outcome, context)

    async def _run_handler(self, nid: str, kind: str, texts: dict[str, str],
                           context: str | None) -> _Output | _Failure | _Expansion:
        if kind == "function":
            return await self._run_function(nid)
        if kind == "map":
            return self._expand_map(nid)
        if kind == "decompose":
            return await self._expand_decompose(nid, texts, context)
        return await self._run_worker(nid, texts, context)

    def _task_text(self, nid: str, texts: dict[str, str]) -> str:
        rec = self.state.nodes[nid]
        spec = rec.spec
        has_item = nid in self.items
        parts = [render_goal(spec.goal, texts, self.items.get(nid), has_item=has_item)]
        if spec.expected_output:
            parts.append(f"Expected output: {spec.expected_output}")
        if spec.acceptance_criteria:
            parts.append(f"It must satisfy: {spec.acceptance_criteria}")
        if has_item and rec.parent is not None:
            parent_map = self.state.nodes[rec.parent].spec.map
            if parent_map is not None and parent_map.mode == "filter":
                parts.append("Begin your answer with yes or no.")
        hist = self.hist.get(nid)
        if hist is not None and hist.feedback:
            retry = f"A previous attempt was not accepted: {hist.feedback}"
            if hist.last_output:
                retry += f"\nThat attempt's result was:\n{shorten(hist.last_output, 1500, nid)}"
            parts.append(retry + "\nFix the problem in this attempt.")
        return "\n\n".join(parts)

    async def _run_worker(self, nid: str, texts: dict[str, str], context: str | None) -> _Output | _Failure:
        rec = self.state.nodes[nid]
        worker = self.wf.workers.get(rec.worker or "")
        if worker is None:
            return _Failure(f"no worker can take this node (assigned: {rec.worker!r}; workers: "
                            f"{', '.join(self.wf.workers) or 'none'})")
        result = await worker.run(
            self._task_text(nid, texts), context, sink=self._sink,
            call_context=CallContext(run_id=self.run_id, node_id=nid, role="worker"),
            model=self._model(getattr(worker, "model", None) or self.wf.model, node_id=nid, kind=rec.worker),
        )
        if result.failed:
            return _Failure(result.reason or "the worker failed", partial=result.content or None)
        value = result.parsed if getattr(result, "parsed", None) is not None else result.content
        return _Output(text=result.content, value=value, usage=result.usage, model_calls=result.model_calls,
                       tool_calls=result.tool_calls, note=result.reason)

    async def _run_function(self, nid: str) -> _Output | _Failure:
        spec = self.state.nodes[nid].spec
        fh = self.wf.functions.get(spec.function)
        if fh is None:
            return _Failure(f"function {spec.function!r} is not registered (available: "
                            f"{', '.join(self.wf.functions.names()) or 'none'})")
        args = ([self.items[nid]] if nid in self.items else []) + [self._value(d) for d in spec.inputs]
        kwargs = dict(spec.arguments)
        problem = fh.binding_problem(args, kwargs)
        if problem is not None:
            return _Failure(problem)
        try:
            value = await fh(args, kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return _Failure(f"function '{fh.name}' raised {type(exc).__name__}: {exc}")
        return _Output(text=as_text(value), value=value)

    def _fresh(self, base: str) -> str:
        new = unique_id(base, lambda x: x in self.state.nodes or x in self._reserved)
        self._reserved.add(new)
        return new

    def _expand_map(self, nid: str) -> _Expansion | _Failure:
        rec = self.state.nodes[nid]
        spec = rec.spec
        assert spec.map is not None
        over = spec.map.over
        elements = as_list(self._value(over))
        if elements is None:
            return _Failure(f"cannot map over the result of '{over}': it is not a list")
        limit = self.cfg.limits.max_map_items
        if len(elements) > limit:
            return _Failure(f"the list from '{over}' has {len(elements)} elements; the map limit is {limit}")
        inputs = [d for d in spec.inputs if d != over]
        children: list[PlanNode] = []
        assignments: dict[str, Assignment] = {}
        for i, element in enumerate(elements):
            cid = self._fresh(f"{nid}[{i}]")
            children.append(spec.model_copy(update={"id": cid, "map": None, "inputs": inputs, "check": False}))
            self.items[cid] = element
            if spec.handler != "function" and rec.worker:
                assignments[cid] = Assignment(node_id=cid, worker=rec.worker, source="inherited")
        return _Expansion(kind="map", children=children, collect=[c.id for c in children], nesting=rec.nesting,
                          items=[jsonable(e) for e in elements], assignments=assignments)

    async def _expand_decompose(self, nid: str, texts: dict[str, str], context: str | None) -> _Expansion | _Failure:
        rec = self.state.nodes[nid]
        nesting = rec.nesting + 1
        goal = self._task_text(nid, texts)
        task = self._planning_task("decompose", goal=goal, context=context, nesting=nesting, nesting_base=nesting)
        outcome = await self._call_planner(task, nid)
        if isinstance(outcome, str):
            self._emit(PlanFailedEvent, node_id=nid, mode="decompose", error=outcome)
            return _Failure(f"could not decompose the task: {outcome}")
        self._emit_plan(outcome, "decompose", nid)
        sub = nest_plan(outcome.plan, rec.spec, lambda x: x in self.state.nodes or x in self._reserved)
        self._reserved.update(n.id for n in sub.nodes)
        assignments = await self._assign(sub.nodes)
        return _Expansion(kind="decompose", children=sub.nodes, collect=sub.output_ids(), nesting=nesting,
                          assignments=assignments)

    def _apply_expansion(self, nid: str, exp: _Expansion) -> None:
        self._emit(NodeExpandedEvent, node_id=nid, kind=exp.kind, children=exp.children,  # type: ignore[arg-type]
                   collect=exp.collect, items=exp.items, nesting=exp.nesting)
        self._reserved.difference_update(c.id for c in exp.children)
        specs = self._schedule(exp.children, exp.assignments)
        self.phase[nid] = "collect"
        self.collect[nid] = list(exp.collect)
        self.sched.expand(nid, specs, exp.collect)
        self._dispatch()

    async def _collect(self, nid: str, g: int) -> None:
        rec = self.state.nodes[nid]
        spec = rec.spec
        self._emit(NodeStartedEvent, node_id=nid, attempt=rec.attempts, worker=None, handler=self._kind(nid)[0],
                   phase="collect")
        kids = self.collect.get(nid, [])
        started = time.monotonic()
        if spec.map is not None:
            values = [self._value(c) for c in kids]
            if spec.map.mode == "filter":
                value: Any = [self.items[c] for c, v in zip(kids, values, strict=True) if truthy(v)]
            else:
                value = values
            text = as_text(value)
        elif len(kids) == 1:
            value, text = self._value(kids[0]), self._text(kids[0])
        else:
            value = {c: self._value(c) for c in kids}
            text = "\n\n".join(f"## {c}\n{self._text(c)}" for c in kids)
        _, context = self._context(spec)
        out = _Output(text=text, value=value, duration_s=time.monotonic() - started)
        await self._accept(nid, g, rec.attempts, out, context)

    # --- results, critic, recovery ---------------------------------------------------------------

    def _checks(self, nid: str) -> bool:
        spec = self.state.nodes[nid].spec
        if self.wf.critic is None or not spec.check:
            return False
        return spec.handler != "function" or self.cfg.check_functions

    async def _critic_call(self, coro: Any) -> Verdict:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a custom critic's bug must not abort the run
            logger.exception("critic raised")
            return Verdict(passed=True, probability=getattr(self.wf.critic, "threshold", 0.5),
                           feedback=f"critic raised {type(exc).__name__}: {exc}", source="default", malformed=True)

    def _emit_verdict(self, nid: str, verdict: Verdict, phase: str) -> None:
        self._emit(CriticVerdictEvent, node_id=nid, phase=phase, passed=verdict.passed,  # type: ignore[arg-type]
                   probability=verdict.probability, source=verdict.source,
                   feedback=verdict.feedback, malformed=verdict.malformed, raw=verdict.raw)

    async def _accept(self, nid: str, g: int, attempt: int, out: _Output, context: str | None) -> None:
        self.values[nid] = out.value
        self._emit(NodeOutputEvent, node_id=nid, attempt=attempt, output=out.text, value=jsonable(out.value),
                   model_calls=out.model_calls, tool_calls=out.tool_calls, usage=out.usage,
                   duration_s=out.duration_s, note=out.note)
        self.sched.mark_output(nid)
        self.sched.release(nid)  # the critic phase does not hold a concurrency slot
        self._dispatch()
        critic = self.wf.critic
        if critic is not None and self._checks(nid):
            verdict = await self._critic_call(critic.check(
                request=self.request, node=self.state.nodes[nid].spec, output=out.text, context=context,
                model=self._model(getattr(critic, "model", None)), call_context=self._ctx("critic", nid),
                sink=self._sink))
            if not self._current(nid, g):
                return
            self._emit_verdict(nid, verdict, "check")
            if not verdict.passed:
                threshold = getattr(critic, "threshold", 0.5)
                await self._on_failure(
                    nid, g, f"the critic rejected the result (p={verdict.probability:.2f} < {threshold:g}): "
                    f"{verdict.feedback or 'no feedback'}", verdict.feedback or None, out.text)
                return
        self._emit(NodeFinishedEvent, node_id=nid)
        self.sched.mark_done(nid)
        self._dispatch()

    def _cancel_task(self, nid: str) -> None:
        self.gen[nid] = self.gen.get(nid, 0) + 1
        task = self.tasks.pop(nid, None)
        if task is not None and not task.done():
            task.cancel()

    def _subtree(self, nid: str) -> list[str]:
        """Nested children of a map/decompose node, recursively (not the node itself)."""
        out: list[str] = []
        stack = list(self.state.nodes[nid].children)
        while stack:
            c = stack.pop()
            out.append(c)
            rec = self.state.nodes.get(c)
            if rec is not None:
                stack.extend(rec.children)
        return out

    def _cancel_nodes(self, ids: list[str], reason: str) -> None:
        for c in ids:
            rec = self.state.nodes.get(c)
            if rec is None or rec.status in TERMINAL_STATUSES:
                continue
            self._cancel_task(c)
            self._emit(NodeCancelledEvent, node_id=c, reason=reason)
            self.sched.close(c)

    def _reset_expansion(self, nid: str) -> None:
        kids = self._subtree(nid)
        self._cancel_nodes(kids, f"'{nid}' is being redone")
        for c in kids:
            self._cancel_task(c)
        self.sched.reset_expansion(nid, kids)
        self.phase[nid] = "run"
        self.collect.pop(nid, None)

    def _invalidate(self, nid: str, reason: str) -> None:
        self._cancel_task(nid)
        self._emit(NodeInvalidatedEvent, node_id=nid, reason=reason)

    def _can_reassign(self, nid: str) -> bool:
        rec = self.state.nodes[nid]
        kind = self._kind(nid)[0]
        if kind == "map":
            if rec.spec.handler == "function":
                return False
        elif kind != "worker":
            return False
        tried = set(self.hist.get(nid, NodeHistory()).workers_tried) | {rec.worker}
        return any(name not in tried for name in self.wf.workers)

    def _can_replan(self) -> bool:
        planner = self.wf.planner
        return planner is not None and bool(getattr(planner, "can_replan", False))

    def _restart(self, nid: str) -> None:
        if self.phase.get(nid) == "collect" or self.state.nodes[nid].children:
            self._reset_expansion(nid)
        self.sched.requeue(nid)
        self._dispatch()

    async def _on_failure(self, nid: str, g: int, reason: str, feedback: str | None, partial: str | None) -> None:
        if nid not in self.sched.slots or self.sched.state_of(nid) == CLOSED:
            return
        for d in self.sched.retract(nid):
            self._invalidate(d, f"its input '{nid}' was rejected")
        rec = self.state.nodes[nid]
        hist = self.hist.setdefault(nid, NodeHistory())
        hist.feedback = feedback or reason
        hist.last_output = partial
        step = next_step(self.cfg.policy, hist, can_reassign=self._can_reassign(nid), is_child=rec.parent is not None,
                         can_replan=self._can_replan(), replans_used=self.replans_used,
                         full_replans_used=self.full_replans_used)
        self._emit(NodeFailedEvent, node_id=nid, attempt=rec.attempts, reason=reason, next_step=step)
        if step == "retry":
            hist.retries += 1
            self._emit(NodeRetriedEvent, node_id=nid, attempt=rec.attempts + 1, feedback=hist.feedback or "")
            self._restart(nid)
        elif step == "reassign":
            hist.reassignments += 1
            if rec.worker and rec.worker not in hist.workers_tried:
                hist.workers_tried.append(rec.worker)
            choice = (await self._assign([rec.spec], exclude={nid: list(hist.workers_tried)})).get(nid)
            if self.gen.get(nid) != g or self.sched.state_of(nid) in (None, CLOSED):
                return
            if choice is None:
                self._give_up(nid, reason)
                return
            self._emit(NodeReassignedEvent, node_id=nid, from_worker=rec.worker, to_worker=choice.worker,
                       source=choice.source, reason=choice.reason)
            self.sched.set_speculative(nid, self._speculative(rec.spec, choice.worker))
            self._restart(nid)
        elif step == "escalate":
            self._escalate(nid, reason)
        elif step in ("replan", "full_replan"):
            self.sched.close(nid)
            if step == "full_replan":
                self.full_replans_used += 1
            else:
                self.replans_used += 1
            self._spawn(self._replan(nid, step == "full_replan", reason))
        else:
            self._give_up(nid, reason)

    def _escalate(self, nid: str, reason: str) -> None:
        self.sched.close(nid)
        parent = self.state.nodes[nid].parent
        assert parent is not None
        siblings = [c for c in self._subtree(parent) if c != nid]
        self._cancel_nodes(siblings, f"'{nid}' failed, so '{parent}' is redone")
        self._spawn(self._on_failure(parent, self.gen.get(parent, 0), f"its part '{nid}' failed: {reason}",
                                     None, None))

    def _give_up(self, nid: str, reason: str) -> None:
        self.sched.close(nid)
        if self.state.nodes[nid].children:
            self._cancel_nodes(self._subtree(nid), f"'{nid}' failed")
        for d in self.sched.descendants(nid):
            rec = self.state.nodes[d]
            if rec.status in TERMINAL_STATUSES and rec.status != "done":
                continue
            self._cancel_task(d)
            if rec.children:
                self._cancel_nodes(self._subtree(d), f"upstream '{nid}' failed")
            self._emit(NodeSkippedEvent, node_id=d, reason=f"upstream node '{nid}' failed: {reason}")
            self.sched.close(d)

    def _replan_scope(self, nid: str, full: bool) -> list[str]:
        if full:
            base = [x for x, slot in self.sched.slots.items() if not slot.confirmed]
        else:
            base = [nid, *self.sched.descendants(nid)] if nid in self.sched.slots else [nid]
        scope: dict[str, None] = dict.fromkeys(base)
        for x in base:
            if x in self.state.nodes:
                for c in self._subtree(x):
                    scope[c] = None
        return list(scope)

    def _gone(self, nid: str) -> bool:
        slot = self.sched.slots.get(nid)
        return slot is None or (slot.state == CLOSED and not slot.confirmed)

    async def _replan(self, nid: str, full: bool, reason: str) -> None:
        mode: PlanMode = "full_replan" if full else "replan"
        scope = self._replan_scope(nid, full)
        scope_set = set(scope)
        existing = []
        for x, rec in self.state.nodes.items():
            slot = self.sched.slots.get(x)
            if rec.parent is not None or x in scope_set or slot is None or slot.state == CLOSED and not slot.confirmed:
                continue
            result = (shorten(rec.output or "", 800, x) if slot.confirmed
                      else "(still in progress; its result will be available to nodes that list it as an input)")
            existing.append(ExistingResult(id=x, goal=rec.spec.goal, result=result))
        replaced = [self.state.nodes[x].spec for x in scope if self.state.nodes[x].parent is None]
        task = self._planning_task(mode, existing=existing, replaced=replaced, failure=reason)
        outcome = await self._call_planner(task, nid)
        if nid not in self.sched.slots or self.state.nodes[nid].status == "replaced":
            return  # superseded meanwhile (a full replan removed it)
        if isinstance(outcome, str):
            self._emit(PlanFailedEvent, node_id=nid, mode=mode, error=outcome)
            if not full and self.full_replans_used < self.cfg.policy.max_full_replans:
                self.full_replans_used += 1
                self._emit(NodeFailedEvent, node_id=nid, attempt=self.state.nodes[nid].attempts,
                           reason=f"replanning failed: {outcome}", next_step="full_replan")
                await self._replan(nid, True, reason)
                return
            self._emit(NodeFailedEvent, node_id=nid, attempt=self.state.nodes[nid].attempts,
                       reason=f"{reason}; replanning failed: {outcome}", next_step="give_up")
            self._give_up(nid, reason)
            return
        self._emit_plan(outcome, mode, nid)
        mini = avoid_collisions(outcome.plan, lambda x: x in self.state.nodes or x in self._reserved)
        self._reserved.update(n.id for n in mini.nodes)
        assignments = await self._assign(mini.nodes)
        self._reserved.difference_update(n.id for n in mini.nodes)
        if nid not in self.sched.slots or self.state.nodes[nid].status == "replaced":
            return
        removed = self._replan_scope(nid, full)
        removed_set = set(removed)
        own = {n.id for n in mini.nodes}
        if any(self._gone(d) or d in removed_set for n in mini.nodes for d in n.inputs if d not in own):
            # an input the new nodes rely on disappeared while the planner worked: give up cleanly
            self._give_up(nid, f"{reason}; the replacement plan refers to results that are gone")
            return
        for x in removed:
            self._cancel_task(x)
        kept = [] if full else [o for o in self.state.outputs if o not in removed_set]
        outputs = kept + [o for o in mini.output_ids() if o not in kept]
        self._emit(NodeReplannedEvent, node_id=nid, full=full, removed=removed, added=mini.nodes, outputs=outputs)
        self.sched.remove(removed)
        self.sched.add_nodes(self._schedule(mini.nodes, assignments))
        self._dispatch()

    # --- answer ----------------------------------------------------------------------------------

    async def _answer(self) -> None:
        results: list[tuple[str, str, str]] = []
        missing: list[tuple[str, str, str]] = []
        for o in self.state.outputs:
            rec = self.state.nodes.get(o)
            if rec is None:
                continue
            if rec.status == "done":
                results.append((o, rec.spec.goal, rec.output or ""))
            else:
                missing.append((o, rec.spec.goal, rec.error or rec.status))
        stage = self.wf.answer
        model = self._model(getattr(stage, "model", None))
        try:
            outcome = await stage.run(request=self.request, results=results, missing=missing, model=model,
                                      call_context=self._ctx("answer"), sink=self._sink)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a custom answer stage's bug: answer with the raw results
            logger.exception("answer stage raised")
            from agentflow.workforce.answer import AnswerOutcome

            text = "\n\n".join(r[2] for r in results)
            outcome = AnswerOutcome(answer=text, raw=text, failed=not results,
                                    reason=f"answer stage raised {type(exc).__name__}: {exc}")
        self._emit(AnswerEvent, answer=outcome.answer, raw=outcome.raw, formatter=getattr(stage.formatter, "name", ""),
                   failed=outcome.failed, reason=outcome.reason)
        if results and not missing:
            status: RunStatus = "succeeded"
            error = None
        elif results:
            status = "partial"
            error = "some output nodes failed: " + "; ".join(f"{o}: {why}" for o, _, why in missing)
        else:
            status = "failed"
            error = ("every output node failed: " + "; ".join(f"{o}: {why}" for o, _, why in missing)
                     if missing else "the plan produced no output")
        self._finish(status, answer=outcome.answer if not outcome.failed else None, error=error)
