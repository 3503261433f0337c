"""The planner: one structured-output call that emits the whole task DAG.

The model is asked for every node *with its dependencies* in one reply, constrained by the plan's
JSON schema (the backend maps ``output_schema`` to vLLM structured outputs, or prompts and
validates where a server has none). The reply is parsed leniently (near-JSON is repaired, common
synonyms are accepted), then validated as a DAG; what is wrong goes back to the model by name in a
bounded repair loop. Only when that budget is spent does planning fail, with a
:class:`PlanValidationError` that lists the remaining problems.

The same planner decomposes a node further (``mode="decompose"``), replaces a failed sub-DAG
(``"replan"``) and, as the last resort, re-plans the whole request around finished results
(``"full_replan"``).
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, ValidationError

from agentflow.errors import PlanValidationError
from agentflow.llm.base import ChatModel
from agentflow.llm.types import CallContext, ChatRequest, Message, OutputSchema
from agentflow.runs.events import EventSink, discard
from agentflow.workforce.calls import complete_logged, parse_json_object
from agentflow.workforce.coordinator import WorkerProfile
from agentflow.workforce.events import PlanInvalidEvent, PlanMode
from agentflow.workforce.plan import MapSpec, Plan, PlanNode
from agentflow.workforce.validation import PlanLimits, check_plan

logger = logging.getLogger(__name__)


class ExistingResult(BaseModel):
    """A node outside the replaced part that a replan may build on (by id) instead of redoing it.

    ``result`` is the (shortened) result of a finished node, or a note that it is still running.
    """

    id: str
    goal: str
    result: str


class PlanningTask(BaseModel):
    """Everything a planner needs for one planning job."""

    request: str
    mode: PlanMode = "initial"
    #: decompose: the goal of the node being decomposed
    goal: str | None = None
    #: decompose: the results the node may use; replan: extra notes
    context: str | None = None
    nesting: int = 0
    workers: list[WorkerProfile] = Field(default_factory=list)
    #: "name(signature): description" lines of the registered functions
    functions: list[str] = Field(default_factory=list)
    function_names: list[str] = Field(default_factory=list)
    limits: PlanLimits = Field(default_factory=PlanLimits)
    allow_decompose: bool = True
    #: replan: finished results the new nodes may list as inputs
    existing: list[ExistingResult] = Field(default_factory=list)
    #: replan: the nodes being replaced (the failed node first, then its descendants)
    replaced: list[PlanNode] = Field(default_factory=list)
    #: replan: why the failed node failed (reason and critic feedback)
    failure: str | None = None


class PlanOutcome(BaseModel):
    """A valid plan (references resolved) and how much effort it took."""

    plan: Plan
    attempts: int = 1
    issues_fixed: list[str] = Field(default_factory=list)


@runtime_checkable
class Planner(Protocol):
    #: whether this planner can replace a failed sub-DAG or re-plan the whole request
    can_replan: bool

    async def plan(
        self,
        task: PlanningTask,
        *,
        model: ChatModel | None = None,
        call_context: CallContext | None = None,
        sink: EventSink | None = None,
    ) -> PlanOutcome:
        """Return a valid plan or raise ``PlanValidationError`` saying why none could be made."""
        ...


# --- wire format ----------------------------------------------------------------------------------


def plan_json_schema(task: PlanningTask) -> dict[str, Any]:
    """The JSON schema the planner's reply is constrained to.

    Every property is required (nullable where optional) and objects are closed, which is what
    OpenAI's strict mode demands and what vLLM's grammar backends compile fastest. ``arguments``
    is a JSON-encoded string because strict schemas cannot contain open objects.
    """
    handlers = ["worker"]
    if task.function_names:
        handlers.append("function")
    if task.allow_decompose:
        handlers.append("decompose")
    names = [w.name for w in task.workers]
    worker_schema: dict[str, Any] = ({"anyOf": [{"type": "string", "enum": names}, {"type": "null"}]}
                                     if names else {"type": "null"})
    function_schema: dict[str, Any] = ({"anyOf": [{"type": "string", "enum": task.function_names},
                                                  {"type": "null"}]} if task.function_names else {"type": "null"})
    node = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
            "goal": {"type": "string"},
            "inputs": {"type": "array", "items": {"type": "string"}},
            "expected_output": {"type": "string"},
            "acceptance_criteria": {"type": "string"},
            "worker": worker_schema,
            "handler": {"type": "string", "enum": handlers},
            "function": function_schema,
            "arguments": {"type": "string"},
            "map_over": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "map_mode": {"type": "string", "enum": ["project", "filter"]},
        },
        "required": ["id", "goal", "inputs", "expected_output", "acceptance_criteria", "worker", "handler",
                     "function", "arguments", "map_over", "map_mode"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "nodes": {"type": "array", "items": node, "minItems": 1, "maxItems": task.limits.max_nodes},
            "outputs": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["nodes", "outputs"],
        "additionalProperties": False,
    }


_NODE_LIST_KEYS = ("nodes", "tasks", "steps", "subtasks", "plan")
_GOAL_KEYS = ("goal", "task", "description", "instruction", "question", "prompt")
_INPUT_KEYS = ("inputs", "depends_on", "dependencies", "deps", "needs", "requires")
_HANDLER_ALIASES = {
    "worker": "worker", "agent": "worker", "llm": "worker", "model": "worker", "tool": "worker",
    "function": "function", "symbolic": "function", "code": "function", "python": "function",
    "decompose": "decompose", "plan": "decompose", "subplan": "decompose", "nested": "decompose",
}


def plan_from_data(data: Any, *, allow_decompose: bool = True) -> tuple[Plan | None, list[str]]:
    """Build a ``Plan`` from a model's JSON, accepting common synonyms; ``(None, problems)`` if impossible."""
    if isinstance(data, list):
        data = {"nodes": data}
    if not isinstance(data, dict):
        return None, ["the reply must be a JSON object with a `nodes` array"]
    raw_nodes = next((data[k] for k in _NODE_LIST_KEYS if isinstance(data.get(k), list)), None)
    if raw_nodes is None:
        return None, ["the reply has no `nodes` array; return {\"nodes\": [...], \"outputs\": [...]}"]
    problems: list[str] = []
    nodes: list[PlanNode] = []
    for i, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            problems.append(f"nodes[{i}] is not an object; every node must be a JSON object")
            continue
        node_id = raw.get("id", raw.get("name", raw.get("task_id")))
        node_id = str(node_id).strip() if node_id not in (None, "") else f"n{i + 1}"
        goal = next((raw[k] for k in _GOAL_KEYS if isinstance(raw.get(k), str) and raw[k].strip()), None)
        if goal is None:
            problems.append(f"node '{node_id}' has no goal; say what the node must do in `goal`")
            continue
        inputs = next((raw[k] for k in _INPUT_KEYS if raw.get(k) is not None), [])
        handler = _HANDLER_ALIASES.get(str(raw.get("handler") or "worker").strip().lower(), "worker")
        if handler == "decompose" and not allow_decompose:
            handler = "worker"  # the nesting limit is reached: the node is done by a worker instead
        arguments = raw.get("arguments") or {}
        if isinstance(arguments, str):
            text = arguments.strip()
            try:
                arguments = json.loads(text) if text else {}
            except json.JSONDecodeError as exc:
                problems.append(f"node '{node_id}': `arguments` must be a JSON object encoded as a string "
                                f"(e.g. \"{{\\\"n\\\": 3}}\"); got {text[:80]!r} ({exc.msg})")
                continue
        if not isinstance(arguments, dict):
            problems.append(f"node '{node_id}': `arguments` must be a JSON object")
            continue
        map_over = raw.get("map_over")
        map_mode = raw.get("map_mode") or "project"
        if isinstance(raw.get("map"), dict):
            map_over = raw["map"].get("over", map_over)
            map_mode = raw["map"].get("mode", map_mode)
        if map_mode not in ("project", "filter"):
            map_mode = "project"
        worker = raw.get("worker")
        function = raw.get("function")
        try:
            nodes.append(PlanNode(
                id=node_id,
                goal=goal.strip(),
                inputs=inputs,
                expected_output=str(raw.get("expected_output") or ""),
                acceptance_criteria=str(raw.get("acceptance_criteria") or raw.get("acceptance") or ""),
                worker=str(worker).strip() if worker not in (None, "") else None,
                handler=handler,  # type: ignore[arg-type]
                function=str(function).strip() if function not in (None, "") else None,
                arguments=arguments,
                map=MapSpec(over=str(map_over).strip(), mode=map_mode) if map_over not in (None, "") else None,
            ))
        except ValidationError as exc:
            first = exc.errors()[0]
            problems.append(f"node '{node_id}': {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    if problems:
        return None, problems
    outputs = data.get("outputs") or data.get("output") or []
    try:
        return Plan(nodes=nodes, outputs=outputs, rationale=str(data.get("rationale") or "")), []
    except ValidationError as exc:
        return None, [f"`outputs` must be a list of node ids: {exc.errors()[0]['msg']}"]


# --- prompts --------------------------------------------------------------------------------------


def _system_prompt(task: PlanningTask) -> str:
    lim = task.limits
    lines = [
        "You are the planner of a team of AI workers. Turn the request into a small directed acyclic graph "
        "(DAG) of tasks and reply with JSON only, matching the schema.",
        "",
        "Rules:",
        "- Each node is one self-contained task; its goal must make sense on its own.",
        "- `inputs` lists the ids of the nodes whose results the node needs. A node sees only the results of "
        "its inputs. Nodes that do not depend on each other run in parallel, so add an input only when the "
        "result is really needed. Never create a cycle.",
        "- Refer to an input's result inside a goal as {id}.",
        "- `outputs` lists the node(s) whose results answer the request (usually the last node).",
        f"- Keep it small: at most {lim.max_nodes} nodes and chains of at most {lim.max_depth} dependent nodes. "
        "A simple request needs a single node.",
        "- `expected_output` says what the result looks like; `acceptance_criteria` how to check it.",
        "- `worker`: the best worker for the node (or null).",
    ]
    handler_line = '- `handler`: "worker" (a worker does it)'
    if task.function_names:
        handler_line += ('; "function" calls a registered function with the input results as positional '
                         'arguments (set `function`, and `arguments` to a JSON object string of extra keyword '
                         'arguments, "{}" if none)')
    if task.allow_decompose:
        handler_line += '; "decompose" for a task complex enough to be planned separately'
    lines.append(handler_line + ". Otherwise set `function` to null and `arguments` to \"{}\".")
    lines.append("- `map_over`: the id of an input whose result is a list, to run the node once per element "
                 "(write {item} in the goal for the element); `map_mode` \"project\" collects each result, "
                 "\"filter\" keeps the elements whose result is yes. Otherwise null and \"project\".")
    if task.workers:
        lines += ["", "Workers:"] + [w.describe() for w in task.workers]
    if task.functions:
        lines += ["", "Functions:"] + [f"- {f}" for f in task.functions]
    return "\n".join(lines)


def _user_prompt(task: PlanningTask) -> str:
    if task.mode == "initial":
        return f"Request:\n{task.request}"
    if task.mode == "decompose":
        parts = [f"Overall request (for orientation): {task.request}", "",
                 "Plan this sub-task of it; your nodes only have to achieve this sub-task:", task.goal or ""]
        if task.context:
            parts += ["", "Results this sub-task may use (already known, no need to recompute):", task.context]
        return "\n".join(parts)
    existing = "\n".join(f"- {e.id}: {e.goal}\n  result: {e.result}" for e in task.existing) or "(none)"
    if task.mode == "replan":
        replaced = "\n".join(f"- {n.id}: {n.goal}" + (f" (inputs: {', '.join(n.inputs)})" if n.inputs else "")
                             for n in task.replaced)
        return "\n".join([
            f"Request:\n{task.request}", "",
            "Part of the plan failed and must be replaced. Other nodes of the plan, which you may use as inputs "
            "(by id):",
            existing, "",
            "The failed part (the first node failed; the others depended on it):", replaced, "",
            f"Failure: {task.failure or 'unknown'}", "",
            "Plan a replacement for the failed part only, taking another approach where the failure calls "
            "for it. Use new ids (not the ones above); inputs may be your new nodes or the finished results "
            "listed above. `outputs` are the node(s) whose results complete the failed part.",
        ])
    return "\n".join([
        f"Request:\n{task.request}", "",
        "The previous plan failed. Finished results you may reuse as inputs (by id) instead of redoing them:",
        existing, "",
        f"Failure: {task.failure or 'unknown'}", "",
        "Make a new plan for the whole request with new node ids, building on the finished results.",
    ])


# --- planners -------------------------------------------------------------------------------------


class LLMPlanner:
    """Plans with one structured-output model call, repairing invalid plans by feedback.

    Args:
        model: the planning model.
        max_attempts: model calls per planning job (first try plus repairs/retries).
        instructions: extra guidance appended to the system prompt (domain hints, style).
    """

    can_replan = True

    def __init__(self, model: ChatModel | None = None, *, max_attempts: int = 3, temperature: float | None = None,
                 max_tokens: int | None = None, instructions: str | None = None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.model = model
        self.max_attempts = max_attempts
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.instructions = instructions

    def messages(self, task: PlanningTask) -> list[Message]:
        system = _system_prompt(task)
        if self.instructions:
            system += "\n\n" + self.instructions
        return [Message.system(system), Message.user(_user_prompt(task))]

    async def plan(
        self,
        task: PlanningTask,
        *,
        model: ChatModel | None = None,
        call_context: CallContext | None = None,
        sink: EventSink | None = None,
    ) -> PlanOutcome:
        chosen = model or self.model
        if chosen is None:
            raise PlanValidationError("the planner has no model", hint="pass LLMPlanner(model=...)")
        emit = sink or discard
        ctx = (call_context or CallContext()).model_copy(update={"role": "planner"})
        base = self.messages(task)
        messages = base
        schema = OutputSchema(name="plan", json_schema=plan_json_schema(task))
        external = [e.id for e in task.existing]
        functions = task.function_names
        fixed: list[str] = []
        last_problems: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            request = ChatRequest(messages=messages, output_schema=schema, temperature=self.temperature,
                                  max_tokens=self.max_tokens, context=ctx)
            response, error = await complete_logged(chosen, request, emit)
            if response is None:
                last_problems = [f"the planning model call failed: {error}"]
                await emit(PlanInvalidEvent(run_id=ctx.run_id, node_id=ctx.node_id, mode=task.mode,
                                            attempt=attempt, issues=last_problems))
                continue  # transport trouble: same prompt again
            choice = response.first
            raw = choice.text or ""
            data, problem = parse_json_object(choice)
            if problem is not None:
                problems = [problem]
            else:
                plan, problems = plan_from_data(data, allow_decompose=task.allow_decompose)
                if plan is not None:
                    check = check_plan(plan, task.limits, external=external, functions=functions)
                    if check.ok:
                        return PlanOutcome(plan=check.plan, attempts=attempt, issues_fixed=fixed)
                    problems = [i.message for i in check.issues]
            if choice.finish_reason == "length":
                problems.append("the reply was cut off by the token limit; make the plan smaller")
            last_problems = problems
            fixed.extend(problems)
            logger.info("plan attempt %d invalid: %s", attempt, "; ".join(problems))
            await emit(PlanInvalidEvent(run_id=ctx.run_id, node_id=ctx.node_id, mode=task.mode, attempt=attempt,
                                        issues=problems, raw=raw[:4000]))
            # only the latest attempt goes back: a transcript of every failed plan would grow past
            # a small local model's context window within a few attempts
            messages = [*base, Message.assistant(raw[:6000] or "(empty reply)"), Message.user(
                "That plan cannot be used:\n" + "\n".join(f"- {p}" for p in problems)
                + "\nReply with the complete corrected plan as JSON.")]
        raise PlanValidationError(
            f"no valid plan after {self.max_attempts} attempt(s); last problems:\n"
            + "\n".join(f"- {p}" for p in last_problems),
            hint="use a stronger planning model, raise max_attempts, or pass a plan explicitly",
        )


PlanSource = Plan | Callable[[PlanningTask], "Plan | Awaitable[Plan]"]


class StaticPlanner:
    """A fixed plan, or a function of the planning task — for hand-written DAGs, tests and benchmarks.

    With a plain plan it serves only the initial planning job; with a function it serves every
    mode the function handles (set ``can_replan`` when it handles replans).
    """

    def __init__(self, plan: PlanSource, *, can_replan: bool = False) -> None:
        self._source = plan
        self.can_replan = can_replan

    async def plan(
        self,
        task: PlanningTask,
        *,
        model: ChatModel | None = None,
        call_context: CallContext | None = None,
        sink: EventSink | None = None,
    ) -> PlanOutcome:
        if isinstance(self._source, Plan):
            if task.mode != "initial":
                raise PlanValidationError(f"a fixed plan cannot serve a {task.mode!r} planning job",
                                          hint="pass a function of the PlanningTask to StaticPlanner, or use LLMPlanner")
            plan = self._source
        else:
            result = self._source(task)
            plan = await result if inspect.isawaitable(result) else result
        if not isinstance(plan, Plan):
            raise PlanValidationError(f"the plan function returned {type(plan).__name__}, not a Plan",
                                      hint="return agentflow.workforce.Plan(nodes=[...])")
        check = check_plan(plan, task.limits, external=[e.id for e in task.existing],
                           functions=task.function_names)
        if not check.ok:
            raise PlanValidationError(
                "the plan is not a valid task DAG:\n" + "\n".join(f"- {i.message}" for i in check.issues),
                hint="fix the listed nodes in the plan you passed",
            )
        return PlanOutcome(plan=check.plan)
