"""Worker: the tool-calling loop.

A worker turns one task into a ``TaskResult``: call the model with the tools, run the tool calls it
asks for (concurrently), feed the results back, and stop at a final answer or ``max_steps``.

The loop is built so that nothing a model does can crash it. Malformed tool arguments, unknown
tools, empty replies and schema-invalid final answers go back to the model as feedback; transport
failures that survive the backend's retries end the task with ``failed=True`` and a reason. Only
cancellation propagates.

Prompt layout is deliberately cache-friendly: the system prompt (instructions, worker description)
and the tool list are identical across calls and sibling workers, the volatile parts (context from
upstream nodes, the task, the growing transcript) come last, so vLLM's prefix cache can reuse them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from agentflow.errors import AgentflowError, BudgetExceededError, ContextLengthExceededError, ModelError
from agentflow.llm.base import ChatModel
from agentflow.llm.types import (
    CallContext,
    ChatRequest,
    ChatResponse,
    Choice,
    Latency,
    Message,
    OutputSchema,
    ToolCall,
    ToolChoice,
    Usage,
)
from agentflow.runs.events import (
    CANCELLED_CALL,
    EventSink,
    ModelCallEvent,
    ToolCallEvent,
    WorkerFinishedEvent,
    WorkerStepEvent,
    discard,
)
from agentflow.tools import Tool, Toolkit, ToolResult

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTIONS = (
    "You are a careful assistant that solves the task step by step. Use the tools when they help; "
    "call several tools at once when their calls are independent. When you have the answer, reply "
    "with the final answer only, without calling a tool."
)
_EMPTY_REPLY_FEEDBACK = (
    "Your last reply was empty. Either call one of the tools or give the final answer as text."
)
_STEP_LIMIT_FEEDBACK = (
    "You have used all available steps. Do not call tools any more: give your best final answer now, "
    "based on what you found so far."
)
#: how many empty / schema-invalid replies in a row the worker tolerates before giving up
_MAX_CONSECUTIVE_BAD_REPLIES = 3


class StepRecord(BaseModel):
    """One model turn and the tool calls it triggered."""

    index: int
    text: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency: Latency = Field(default_factory=Latency)
    #: what the worker did about a problem in this step (feedback sent, context trimmed, ...)
    note: str | None = None


class TaskResult(BaseModel):
    """What a worker returns for a task; ``failed`` results still carry whatever was produced."""

    content: str = ""
    failed: bool = False
    reason: str | None = None
    worker: str = ""
    steps: list[StepRecord] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    #: structured output when the task asked for an output schema
    parsed: Any = None
    #: every sample's final text when the task ran with ``n > 1``
    samples: list[str] = Field(default_factory=list)
    seconds: float = 0.0


class Worker:
    """A tool-calling agent.

    Args:
        name: unique name; the coordinator assigns work by it.
        description: what this worker is good at (read by the coordinator, and put in the system prompt).
        model: the default ChatModel; ``run(model=...)`` overrides it per task (budget allocation).
        tools: the tools it may call.
        instructions: system prompt; a general tool-use prompt by default.
        max_steps: model turns before the worker is asked for a final answer without tools.
        context_window: token budget for the prompt; defaults to the model's ``context_window``
            attribute when it has one. Old tool outputs are elided to stay inside it.
        chars_per_token: rough ratio for estimating prompt size without a tokenizer.
    """

    def __init__(
        self,
        name: str,
        description: str = "",
        model: ChatModel | None = None,
        tools: Iterable[Tool] = (),
        instructions: str | None = None,
        max_steps: int = 8,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        context_window: int | None = None,
        chars_per_token: float = 3.5,
        keep_recent_tool_outputs: int = 4,
    ) -> None:
        if max_steps < 1:
            raise AgentflowError(f"max_steps must be at least 1, got {max_steps}", hint="pass max_steps >= 1")
        self.name = name
        self.description = description
        self.model = model
        self.toolkit = tools if isinstance(tools, Toolkit) else Toolkit(tools)
        self.instructions = instructions or DEFAULT_INSTRUCTIONS
        self.max_steps = max_steps
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.context_window = context_window
        self.chars_per_token = chars_per_token
        self.keep_recent_tool_outputs = keep_recent_tool_outputs

    def __repr__(self) -> str:
        return f"Worker(name={self.name!r}, tools={self.toolkit.names()})"

    @property
    def tools(self) -> list[Tool]:
        return list(self.toolkit)

    def system_prompt(self) -> str:
        return self.instructions

    def build_messages(self, task: str, context: str | None = None) -> list[Message]:
        """Stable text first, volatile text last, so vLLM's prefix cache can reuse the start.

        The chat template renders the tool list right after the system prompt, so the system
        prompt holds only the shared instructions: sibling workers with the same instructions and
        tools then share the whole system-plus-tools prefix. The worker's role, the upstream
        context and the task follow in the user message, in that order of volatility.
        """
        parts = []
        if self.description:
            parts.append(f"Your role: {self.name} — {self.description}")
        if context:
            parts.append(f"Context from earlier steps:\n{context}")
        parts.append(f"Task:\n{task}" if parts else task)
        return [Message.system(self.system_prompt()), Message.user("\n\n".join(parts))]

    async def run(
        self,
        task: str,
        context: str | None = None,
        *,
        sink: EventSink | None = None,
        call_context: CallContext | None = None,
        output_schema: OutputSchema | None = None,
        model: ChatModel | None = None,
        n: int = 1,
        max_tokens: int | None = None,
        tool_choice: ToolChoice | None = None,
    ) -> TaskResult:
        """Solve ``task``; never raises for model or tool trouble (only cancellation propagates).

        With ``n > 1`` the worker draws n samples: one request with ``n`` choices when it has no
        tools (the prompt is prefilled once), else n independent trajectories run concurrently.
        ``tool_choice`` applies to the first model turn only (e.g. ``"required"`` or a
        ``NamedToolChoice`` to make the worker start with a tool); later turns use ``"auto"``, since
        forcing a call on every turn would never let the worker answer.
        """
        chosen = model or self.model
        ctx = (call_context or CallContext()).model_copy(update={"worker": self.name})
        if ctx.role is None:
            ctx.role = "worker"
        emit = sink or discard
        started = time.monotonic()
        if chosen is None:
            result = TaskResult(failed=True, reason=f"worker {self.name!r} has no model; pass model=...",
                                worker=self.name)
        elif n > 1 and len(self.toolkit):
            result = await self._run_trajectories(task, context, emit, ctx, output_schema, chosen, n, max_tokens,
                                                  tool_choice)
        else:
            try:
                result = await self._loop(task, context, emit, ctx, output_schema, chosen, n, max_tokens,
                                          tool_choice)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not take the whole run down: record it
                logger.exception("worker %s crashed on task", self.name)
                result = TaskResult(failed=True, reason=f"internal error in worker: {type(exc).__name__}: {exc}",
                                    worker=self.name)
        result.seconds = time.monotonic() - started
        if emit is not discard:  # building events costs CPU on the hot path; skip it when nobody listens
            await emit(WorkerFinishedEvent(run_id=ctx.run_id, node_id=ctx.node_id, worker=self.name,
                                           failed=result.failed, reason=result.reason, content=result.content,
                                           steps=len(result.steps), usage=result.usage))
        return result

    async def _run_trajectories(self, task, context, emit, ctx, output_schema, model, n, max_tokens,
                                tool_choice) -> TaskResult:
        runs = await asyncio.gather(*[
            self._loop(task, context, emit, ctx, output_schema, model, 1, max_tokens, tool_choice) for _ in range(n)
        ])
        ok = [r for r in runs if not r.failed] or list(runs)
        merged = ok[0].model_copy()
        merged.samples = [r.content for r in runs if not r.failed]
        merged.usage = sum((r.usage for r in runs), Usage())
        merged.model_calls = sum(r.model_calls for r in runs)
        merged.tool_calls = sum(r.tool_calls for r in runs)
        merged.steps = [s for r in runs for s in r.steps]
        return merged

    async def _loop(
        self,
        task: str,
        context: str | None,
        emit: EventSink,
        ctx: CallContext,
        output_schema: OutputSchema | None,
        model: ChatModel,
        n: int,
        max_tokens: int | None,
        first_tool_choice: ToolChoice | None = None,
    ) -> TaskResult:
        messages = self.build_messages(task, context)
        result = TaskResult(worker=self.name)
        specs = self.toolkit.specs()
        bad_replies = 0
        step = 0
        forced_final = False
        while True:
            step += 1
            out_of_steps = step > self.max_steps
            if out_of_steps:
                if forced_final:
                    return self._fail(result, f"no final answer within max_steps={self.max_steps}")
                forced_final = True
                messages.append(Message.user(_STEP_LIMIT_FEEDBACK))
            request = ChatRequest(
                messages=self._fit_context(messages, model),
                tools=specs if not out_of_steps else [],
                tool_choice=self._tool_choice(step, specs, out_of_steps, first_tool_choice),
                output_schema=output_schema,
                temperature=self.temperature,
                max_tokens=max_tokens or self.max_tokens,
                n=n if not specs else 1,
                context=ctx,
            )
            record = StepRecord(index=step)
            response = await self._call_model(model, request, emit, ctx, record)
            if response is None:
                result.steps.append(record)
                return self._fail(result, record.note or "model call failed")
            result.model_calls += 1
            result.usage = result.usage + response.usage
            choice = response.first
            record.text = choice.text
            record.finish_reason = choice.finish_reason
            record.usage = response.usage
            record.latency = response.latency
            record.tool_calls = list(choice.tool_calls)

            if choice.tool_calls and not out_of_steps:
                bad_replies = 0
                messages.append(Message.assistant(choice.text, choice.tool_calls))
                if len(choice.tool_calls) == 1:  # the common case: no task to create
                    results = [await self._run_tool(choice.tool_calls[0], emit, ctx, step)]
                else:
                    results = await asyncio.gather(*[self._run_tool(c, emit, ctx, step) for c in choice.tool_calls])
                record.tool_results = list(results)
                result.tool_calls += len(results)
                for call, res in zip(choice.tool_calls, results, strict=True):
                    messages.append(Message.tool(call.id, res.content, name=call.name))
                result.steps.append(record)
                await self._emit_step(emit, ctx, record)
                continue

            problem = self._final_answer_problem(choice, output_schema)
            if problem is None:
                result.steps.append(record)
                await self._emit_step(emit, ctx, record)
                result.content = (choice.text or "").strip()
                result.parsed = choice.parsed
                if n > 1 and not specs:
                    result.samples = [(c.text or "").strip() for c in response.choices]
                if forced_final:
                    result.reason = f"step limit ({self.max_steps}) reached; answer given without further tools"
                if choice.finish_reason == "length":
                    result.reason = "answer cut off by max_tokens"
                return result

            bad_replies += 1
            record.note = f"rejected reply: {problem}"
            result.steps.append(record)
            await self._emit_step(emit, ctx, record)
            if bad_replies >= _MAX_CONSECUTIVE_BAD_REPLIES:
                return self._fail(result, f"model gave {bad_replies} unusable replies in a row; last: {problem}")
            if choice.text:
                messages.append(Message.assistant(choice.text))
            messages.append(Message.user(problem))

    @staticmethod
    def _tool_choice(step: int, specs: list, out_of_steps: bool, first: ToolChoice | None) -> ToolChoice | None:
        if not specs or out_of_steps:
            return None
        if step == 1 and first is not None:
            return first
        return "auto"

    @staticmethod
    def _final_answer_problem(choice: Choice, output_schema: OutputSchema | None) -> str | None:
        """Why a tool-free reply cannot be the final answer, phrased as feedback for the model."""
        if not (choice.text or "").strip():
            return _EMPTY_REPLY_FEEDBACK
        if output_schema is not None and choice.parse_error:
            return (f"Your answer must be JSON matching the schema {json.dumps(output_schema.json_schema)}. "
                    f"Problem: {choice.parse_error}. Reply again with valid JSON only.")
        return None

    async def _call_model(
        self, model: ChatModel, request: ChatRequest, emit: EventSink, ctx: CallContext, record: StepRecord
    ) -> ChatResponse | None:
        """One model call; transport failures become a note and ``None`` instead of an exception."""
        for attempt in (1, 2):
            try:
                response = await model.complete(request)
            except asyncio.CancelledError:
                # the call was in flight and may have cost the server work: keep it in the record
                if emit is not discard:
                    await emit(ModelCallEvent.failed(request, getattr(model, "name", ""), CANCELLED_CALL))
                raise
            except ContextLengthExceededError as exc:
                if attempt == 2:
                    record.note = f"prompt does not fit the context window even after trimming: {exc.message}"
                    await emit(ModelCallEvent.failed(request, getattr(model, "name", ""), str(exc)))
                    return None
                limit = exc.max_context or self._window(model) or 4096
                request = request.model_copy(update={
                    "messages": self._trim(request.messages, int(limit * 0.6), aggressive=True)})
                continue
            except (ModelError, BudgetExceededError) as exc:
                record.note = f"model call failed: {exc.message}"
                await emit(ModelCallEvent.failed(request, getattr(model, "name", ""), str(exc)))
                return None
            if not response.choices:
                record.note = "model returned no choices"
                return None
            if emit is not discard:
                await emit(ModelCallEvent.succeeded(request, response))
            return response
        return None

    async def _run_tool(self, call: ToolCall, emit: EventSink, ctx: CallContext, step: int) -> ToolResult:
        result = await self.toolkit.execute(call)
        if emit is discard:
            return result
        await emit(ToolCallEvent(
            run_id=ctx.run_id, node_id=ctx.node_id, worker=self.name, step=step, call_id=call.id,
            tool=call.name, arguments=call.arguments, raw_arguments=call.raw_arguments, result=result.content,
            is_error=result.is_error, error_kind=result.error_kind, duration_s=result.duration_s))
        return result

    async def _emit_step(self, emit: EventSink, ctx: CallContext, record: StepRecord) -> None:
        if emit is discard:
            return
        await emit(WorkerStepEvent(run_id=ctx.run_id, node_id=ctx.node_id, worker=self.name, step=record.index,
                                   text=record.text, tool_names=[c.name for c in record.tool_calls],
                                   note=record.note))

    def _fail(self, result: TaskResult, reason: str) -> TaskResult:
        result.failed = True
        result.reason = reason
        if not result.content:
            # keep the last thing the model said: partial progress is still useful to a replanner
            for step in reversed(result.steps):
                if step.text:
                    result.content = step.text.strip()
                    break
        return result

    # --- context window management -------------------------------------------------------------

    def _window(self, model: ChatModel) -> int | None:
        return self.context_window or getattr(model, "context_window", None)

    def _fit_context(self, messages: list[Message], model: ChatModel) -> list[Message]:
        window = self._window(model)
        if not window:
            return list(messages)
        reserve = self.max_tokens or min(1024, window // 4)
        return self._trim(messages, window - reserve)

    def _estimate(self, messages: list[Message]) -> int:
        chars = 0
        for m in messages:
            chars += len(m.content or "") + 16
            for c in m.tool_calls or []:
                chars += len(c.raw_arguments) + len(c.name) + 16
        return int(chars / self.chars_per_token)

    def _trim(self, messages: list[Message], budget: int, aggressive: bool = False) -> list[Message]:
        """Elide old tool outputs, then drop old turns, until the estimate fits ``budget`` tokens.

        The system prompt and the task message are always kept; the most recent tool outputs are
        kept verbatim because the model is most likely to need them next.
        """
        if self._estimate(messages) <= budget:
            return list(messages)
        out = [m.model_copy() for m in messages]
        keep_recent = 0 if aggressive else self.keep_recent_tool_outputs
        tool_idx = [i for i, m in enumerate(out) if m.role == "tool"]
        elidable = tool_idx[:-keep_recent] if keep_recent else tool_idx
        for i in elidable:
            content = out[i].content or ""
            if len(content) > 200:
                out[i].content = (f"[older tool output elided to save context: {len(content)} chars; "
                                  f"began: {content[:160]!r}]")
            if self._estimate(out) <= budget:
                return out
        # still too long: drop whole old turns (assistant message + its tool results) after the task
        head, body = out[:2], out[2:]
        while body and self._estimate(head + body) > budget:
            first = body.pop(0)
            if first.role == "assistant" and first.tool_calls:
                ids = {c.id for c in first.tool_calls}
                while body and body[0].role == "tool" and body[0].tool_call_id in ids:
                    body.pop(0)
        if len(body) < len(out) - 2:
            head = head + [Message.user("[earlier steps were removed to fit the context window]")]
        return head + body
