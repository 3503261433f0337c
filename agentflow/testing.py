"""Deterministic stand-ins for model backends, for agentflow's tests and for users' own tests.

``ScriptedModel`` answers from a script: a list consumed in order, or a function of the request.
It records every request with start/end timestamps (so tests can assert overlap and ordering
without wall-clock thresholds), can add latency, and can inject failures.

    model = ScriptedModel([
        call("add", a=1, b=2),          # first call: the model asks for a tool
        reply("The sum is 3."),         # second call: final answer
    ])

Route by role when several components share one model::

    model = ScriptedModel(by_role(planner=[reply(plan_json)], critic=lambda req: reply('{"ok": true}'),
                                  default=[reply("done")]))
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentflow.errors import ScriptExhaustedError
from agentflow.llm.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    Latency,
    StreamDone,
    StreamEvent,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)


class Reply(BaseModel):
    """One scripted choice: text and/or tool calls, plus optional per-reply latency."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    #: log-probability reported for every token of ``text`` when the request asks for logprobs
    logprob: float | None = None
    #: extra seconds this reply takes (added to the model's base latency)
    delay: float = 0.0


def reply(text: str | dict | list, *, logprob: float | None = None, delay: float = 0.0,
          finish_reason: FinishReason | None = None) -> Reply:
    """A text answer; dicts and lists are JSON-encoded (handy for structured-output roles)."""
    if not isinstance(text, str):
        text = json.dumps(text)
    return Reply(text=text, logprob=logprob, delay=delay, finish_reason=finish_reason)


def call(name: str, _raw: str | None = None, *, _delay: float = 0.0, **arguments: Any) -> Reply:
    """A single tool call. Pass ``_raw`` to script malformed arguments verbatim."""
    if _raw is not None:
        tc = ToolCall(name=name, raw_arguments=_raw, arguments=None)
    else:
        tc = ToolCall(name=name, arguments=arguments)
    return Reply(tool_calls=[tc], delay=_delay)


def calls(*replies: Reply) -> Reply:
    """Several tool calls in one assistant turn (parallel tool calling)."""
    merged: list[ToolCall] = []
    for r in replies:
        merged.extend(r.tool_calls)
    return Reply(tool_calls=merged)


ScriptItem = Reply | str | dict | list | ChatResponse | BaseException
ScriptFn = Callable[[ChatRequest], Any]  # returns a ScriptItem, possibly awaitable
Script = Sequence[ScriptItem] | ScriptFn


class RecordedCall(BaseModel):
    """A request the scripted model received, with monotonic start/end times."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    request: ChatRequest
    started: float
    ended: float | None = None
    error: str | None = None

    @property
    def role(self) -> str | None:
        return self.request.context.role

    @property
    def node_id(self) -> str | None:
        return self.request.context.node_id


def request_role(request: ChatRequest) -> str | None:
    """The role a request plays: explicit context role, else the output schema's name."""
    if request.context.role:
        return request.context.role
    if request.output_schema is not None:
        return request.output_schema.name
    return None


class by_role:  # noqa: N801 - reads as a function at the call site
    """Dispatch to a different script per role.

    The role is ``request.context.role`` (agentflow's planner, coordinator, critic, answer stage
    and workers always set it), else the output schema name. For requests from code that sets
    neither, ``match_system_prompt=True`` also tries each key as a case-insensitive substring of
    the system prompt; it is off by default because ordinary words ("answer") would match.
    Unmatched requests go to ``default``.
    """

    def __init__(self, default: Script | None = None, *, match_system_prompt: bool = False,
                 **scripts: Script) -> None:
        self._scripts = {k: _ScriptCursor(v) for k, v in scripts.items()}
        self._default = _ScriptCursor(default) if default is not None else None
        self._match_system_prompt = match_system_prompt

    def __call__(self, request: ChatRequest) -> Any:
        role = request_role(request)
        cursor = self._scripts.get(role) if role else None
        if cursor is None and self._match_system_prompt:
            system = " ".join(m.content or "" for m in request.messages if m.role == "system").lower()
            for key, candidate in self._scripts.items():
                if key.lower() in system:
                    cursor = candidate
                    break
        if cursor is None:
            cursor = self._default
        if cursor is None:
            raise ScriptExhaustedError(
                f"by_role: no script for role {role!r}",
                hint="add a script for this role or a default= script",
            )
        return cursor.next(request)


class _ScriptCursor:
    def __init__(self, script: Script) -> None:
        self._fn: ScriptFn | None = script if callable(script) else None
        self._items: list[ScriptItem] = [] if callable(script) else list(script)
        self._pos = 0

    def next(self, request: ChatRequest) -> Any:
        if self._fn is not None:
            return self._fn(request)
        if self._pos >= len(self._items):
            raise ScriptExhaustedError(
                f"script exhausted after {len(self._items)} replies "
                f"(role={request_role(request)!r}, node={request.context.node_id!r})",
                hint="add more replies to the script or use a function of the request",
            )
        item = self._items[self._pos]
        self._pos += 1
        return item


def _estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


class ScriptedModel:
    """A deterministic ``ChatModel``.

    Args:
        script: replies in order, or a function ``request -> reply`` (sync or async).
        latency: base seconds per call (``asyncio.sleep``, so concurrent calls overlap).
        name: model name reported in responses.
        fail_first: raise this many injected failures before answering normally.
        failure: the exception used by ``fail_first`` (default: a retryable ServerError).
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        latency: float | Callable[[ChatRequest], float] = 0.0,
        name: str = "scripted",
        fail_first: int = 0,
        failure: BaseException | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        self.name = name
        self._cursor = _ScriptCursor(script if script is not None else [])
        self._latency = latency
        self._fail_left = fail_first
        self._failure = failure
        self.calls: list[RecordedCall] = []
        self._in_flight = 0
        self.max_in_flight = 0
        self._semaphore = asyncio.Semaphore(max_concurrency) if max_concurrency else None

    @property
    def requests(self) -> list[ChatRequest]:
        return [c.request for c in self.calls]

    def calls_for(self, *, role: str | None = None, node_id: str | None = None) -> list[RecordedCall]:
        return [
            c for c in self.calls
            if (role is None or request_role(c.request) == role) and (node_id is None or c.node_id == node_id)
        ]

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self._semaphore is not None:
            async with self._semaphore:
                return await self._complete(request)
        return await self._complete(request)

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        rec = RecordedCall(request=request, started=time.monotonic())
        self.calls.append(rec)
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self._fail_left > 0:
                self._fail_left -= 1
                await self._sleep(request, 0.0)
                raise self._failure or _default_failure()
            items = [await self._next_item(request) for _ in range(request.n)]
            for item in items:
                if isinstance(item, BaseException):
                    await self._sleep(request, 0.0)
                    raise item
            if len(items) == 1 and isinstance(items[0], ChatResponse):
                await self._sleep(request, 0.0)
                return items[0]
            replies = [_as_reply(item) for item in items]
            await self._sleep(request, max(r.delay for r in replies))
            return self._response(request, replies, time.monotonic() - rec.started)
        except BaseException as exc:
            rec.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            rec.ended = time.monotonic()
            self._in_flight -= 1

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        response = await self.complete(request)
        for choice in response.choices:
            text = choice.text or ""
            # several small deltas, so consumers exercise real incremental handling
            for start in range(0, len(text), 8):
                yield TextDelta(index=choice.index, text=text[start:start + 8])
            for i, tc in enumerate(choice.tool_calls):
                yield ToolCallDelta(index=choice.index, call_index=i, id=tc.id, name=tc.name,
                                    arguments=tc.raw_arguments)
        yield StreamDone(response=response)

    async def _next_item(self, request: ChatRequest) -> Any:
        item = self._cursor.next(request)
        if inspect.isawaitable(item):
            item = await item
        return item

    async def _sleep(self, request: ChatRequest, extra: float) -> None:
        base = self._latency(request) if callable(self._latency) else self._latency
        if base + extra > 0:
            await asyncio.sleep(base + extra)
        else:
            await asyncio.sleep(0)  # still yield, like a real network call would

    def _response(self, request: ChatRequest, replies: Iterable[Reply], elapsed: float) -> ChatResponse:
        choices: list[Choice] = []
        completion = 0
        for i, r in enumerate(replies):
            text = r.text
            finish = r.finish_reason or ("tool_calls" if r.tool_calls else "stop")
            logprobs = None
            if request.logprobs and text is not None:
                lp = r.logprob if r.logprob is not None else 0.0
                logprobs = [TokenLogprob(token=tok, logprob=lp, top={tok: lp}) for tok in text.split() or [text]]
            parsed = None
            parse_error = None
            if request.output_schema is not None and text is not None:
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError as exc:
                    parse_error = f"output is not valid JSON: {exc}"
            choices.append(Choice(index=i, text=text, tool_calls=[tc.model_copy(deep=True) for tc in r.tool_calls],
                                  finish_reason=finish, logprobs=logprobs, parsed=parsed, parse_error=parse_error))
            completion += _estimate_tokens(text or "") + sum(_estimate_tokens(tc.raw_arguments) for tc in r.tool_calls)
        prompt = sum(_estimate_tokens(m.content or "") for m in request.messages)
        return ChatResponse(
            choices=choices,
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
            latency=Latency(ttft_s=elapsed, total_s=elapsed),
            model=request.model or self.name,
        )


def _as_reply(item: Any) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, str):
        return Reply(text=item)
    if isinstance(item, dict | list):
        return Reply(text=json.dumps(item))
    if isinstance(item, ToolCall):
        return Reply(tool_calls=[item])
    raise TypeError(f"ScriptedModel cannot turn {type(item).__name__} into a reply")


def _default_failure() -> BaseException:
    from agentflow.errors import ServerError

    return ServerError("injected failure (ScriptedModel.fail_first)", hint="this is a test fault")
