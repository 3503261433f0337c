"""One retry policy and one error vocabulary for talking to model servers.

The ``openai`` client's own retries are switched off (``max_retries=0``) so there is exactly one
policy, this one: exponential backoff with jitter on overload (429, honouring ``Retry-After``),
server errors (5xx), timeouts and dropped connections; no blind retry of other 4xx, which would
fail identically. Every failure leaves as an ``agentflow.errors`` exception whose message says
what to do (start the server, shorten the prompt, fix the key), never as a raw HTTP error.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2
import openai
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_exponential_jitter

from agentflow.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    EndpointUnreachableError,
    ModelError,
    ModelNotFoundError,
    ModelTimeoutError,
    RateLimitedError,
    ServerError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: exceptions from the HTTP stack that are mapped; anything else is a bug and propagates as is
TRANSPORT_EXCEPTIONS: tuple[type[BaseException], ...] = (openai.APIError, httpx2.HTTPError, TimeoutError, OSError)


@dataclass(frozen=True)
class RetryPolicy:
    """How transport failures are retried.

    ``max_retries`` counts retries after the first try. A refused connection (nothing
    listening) is retried at most ``connect_retries`` times: a server that is down rarely comes
    back within a backoff window, and a typo in the URL should fail fast.
    """

    max_retries: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 20.0
    #: extra random seconds added to each backoff, so concurrent callers do not retry in lockstep
    jitter: float = 0.5
    #: the longest a ``Retry-After`` header is honoured; longer hints are capped to this
    retry_after_max: float = 60.0
    connect_retries: int = 2


@dataclass(frozen=True)
class RetryNotice:
    """Reported to ``on_retry`` callbacks before each backoff sleep."""

    endpoint: str
    attempt: int
    wait_s: float
    error: ModelError


@dataclass
class EndpointContext:
    """What the error messages need to know about the endpoint being called."""

    base_url: str
    model: str | None = None
    timeout: float | None = None
    served_models: list[str] = field(default_factory=list)
    max_model_len: int | None = None


# --- error mapping ---------------------------------------------------------------------------------


def server_message(exc: BaseException) -> str:
    """The server's own error text, without the client's "Error code: 400 -" prefix."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        if isinstance(body, dict):
            msg = body.get("message") or body.get("detail") or body.get("error")
            if isinstance(msg, str) and msg:
                return msg
            if msg is not None:
                return str(msg)
        if isinstance(body, str) and body:
            return body
        return exc.message
    return str(exc) or type(exc).__name__


def rejection(exc: BaseException) -> tuple[int | None, str, str | None]:
    """``(status, server message, param)`` of the HTTP error behind a mapped ``ModelError``."""
    cause = exc.__cause__ if isinstance(exc, ModelError) else exc
    if isinstance(cause, openai.APIStatusError):
        param = cause.param if isinstance(cause.param, str) else None
        return cause.status_code, server_message(cause), param
    return None, str(exc), None


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (delta-seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
    except Exception:  # headers of an unexpected type
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_LIMIT_RES = (
    re.compile(r"maximum context length is (\d+)", re.I),
    re.compile(r"maximum model length (?:of|is) (\d+)", re.I),
    re.compile(r"context (?:length|window|size) (?:of|is) (\d+)", re.I),
    re.compile(r"n_ctx\D{0,4}(\d+)", re.I),
    re.compile(r"max_model_len=(\d+)", re.I),
)
_PROMPT_RES = (
    re.compile(r"prompt contains (?:at least )?(\d+) input tokens", re.I),
    re.compile(r"(\d+) in the messages", re.I),
    re.compile(r"messages resulted in (\d+) tokens", re.I),
    re.compile(r"request has (\d+) input tokens", re.I),
    re.compile(r"decoder prompt \(length (\d+)\)", re.I),
    re.compile(r"input length \((\d+)\)", re.I),
)
_OUTPUT_RES = (
    re.compile(r"requested (\d+) output tokens", re.I),
    re.compile(r"(\d+) in the completion", re.I),
    re.compile(r"max_completion_tokens'? is too large: (\d+)", re.I),
    re.compile(r"max_tokens=(\d+) cannot be greater", re.I),
)
_CONTEXT_WORDS = ("context length", "context window", "maximum model length", "context size", "max_model_len",
                  "too many tokens", "context_length_exceeded")


def _first_int(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            return int(match.group(1))
    return None


def parse_context_length_error(message: str, body: Any = None) -> tuple[int | None, int | None, int | None] | None:
    """``(limit, prompt_tokens, requested_output)`` if the error is a context overflow, else None.

    Understands vLLM's messages (old and current wording, the engine's "decoder prompt" check),
    OpenAI's ``context_length_exceeded`` and llama.cpp's ``exceed_context_size_error``.
    """
    data = body if isinstance(body, dict) else {}
    code = str(data.get("code") or "")
    kind = str(data.get("type") or "")
    lower = message.lower()
    is_context = (
        code == "context_length_exceeded"
        or kind == "exceed_context_size_error"
        or any(w in lower for w in _CONTEXT_WORDS)
        or "exceeds the available context" in lower
    )
    if not is_context:
        return None
    limit = _first_int(_LIMIT_RES, message)
    if limit is None and isinstance(data.get("n_ctx"), int):
        limit = data["n_ctx"]
    prompt = _first_int(_PROMPT_RES, message)
    if prompt is None and isinstance(data.get("n_prompt_tokens"), int):
        prompt = data["n_prompt_tokens"]
    output = _first_int(_OUTPUT_RES, message)
    return limit, prompt, output


def _serve_hint(ctx: EndpointContext) -> str:
    model = ctx.model or "<model>"
    return (
        f"start vLLM with `agentflow serve --model {model}` or "
        f"`python -m vllm.entrypoints.openai.api_server --model {model}`, "
        "or point agentflow at a running server with AGENTFLOW_BASE_URL / --base-url"
    )


def _refused(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, httpx2.ConnectError | ConnectionRefusedError | httpx2.ConnectTimeout):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def map_error(exc: BaseException, ctx: EndpointContext) -> ModelError:
    """Translate an HTTP-stack exception into the agentflow error a user can act on."""
    if isinstance(exc, ModelError):
        return exc
    url = ctx.base_url
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | TimeoutError) and not _refused(exc):
        limit = f"{ctx.timeout:g}s" if ctx.timeout else "the timeout"
        return ModelTimeoutError(
            f"The model server at {url} did not answer within {limit}.",
            hint="raise timeout= (the server may be busy or the generation long), lower max_tokens, "
                 "or check the server's load and log",
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError | OSError):
        reason = _reason(exc)
        if _refused(exc):
            return EndpointUnreachableError(f"Cannot connect to the model server at {url}: nothing is listening there ({reason}).",
                                hint=_serve_hint(ctx))
        return EndpointUnreachableError(
            f"The connection to the model server at {url} dropped before a complete response arrived ({reason}).",
            hint="the server may have crashed, restarted or hit a proxy limit; check its log. "
                 "If it keeps happening, lower max_concurrency",
        )
    if isinstance(exc, openai.APIStatusError):
        return _map_status(exc, ctx)
    return ModelError(f"Request to {url} failed: {_reason(exc)}", hint="see the server's log for details")


def _reason(exc: BaseException) -> str:
    parts: list[str] = []
    cur: BaseException | None = exc
    while cur is not None and len(parts) < 3:
        text = str(cur).strip() or type(cur).__name__
        if text not in parts:
            parts.append(text)
        cur = cur.__cause__
    return ": ".join(parts)


def _map_status(exc: openai.APIStatusError, ctx: EndpointContext) -> ModelError:
    status = exc.status_code
    msg = server_message(exc)
    url = ctx.base_url
    if status == 429:
        retry_after = parse_retry_after(exc.response.headers if exc.response is not None else None)
        return RateLimitedError(
            f"The model server at {url} is rate limiting requests (HTTP 429): {msg}",
            hint="lower max_concurrency, spread load over an EndpointPool, or retry later",
            retry_after=retry_after,
        )
    if status >= 500 or status == 408:
        return ServerError(
            f"The model server at {url} failed with HTTP {status}: {msg}",
            hint="this is usually transient (overload, restart); if it persists, check the server's log",
        )
    if status in (401, 403):
        return AuthenticationError(
            f"The model server at {url} refused the API key (HTTP {status}): {msg}",
            hint="set AGENTFLOW_API_KEY or OPENAI_API_KEY (or pass api_key= / --api-key) to the key the server "
                 "expects; a local vLLM started with --api-key needs that same key",
        )
    context = parse_context_length_error(msg, exc.body)
    if context is not None:
        limit, prompt, output = context
        limit = limit or ctx.max_model_len
        facts = []
        if prompt is not None:
            facts.append(f"the prompt has {prompt} tokens")
        if output is not None:
            facts.append(f"{output} output tokens were requested")
        if limit is not None:
            facts.append(f"the model's context window is {limit} tokens")
        detail = "; ".join(facts) if facts else msg
        err = ContextLengthExceededError(
            f"The request does not fit the context window of {ctx.model or 'the model'} at {url}: {detail}.",
            hint="shorten the conversation (drop or summarize old messages and long tool output), lower max_tokens, "
                 "or serve the model with a larger --max-model-len",
            max_context=limit,
            prompt_tokens=prompt,
        )
        return err
    if status == 404 and ("model" in msg.lower() or exc.param == "model"):
        served = ", ".join(ctx.served_models) if ctx.served_models else "(the server listed none)"
        return ModelNotFoundError(
            f"The model server at {url} does not serve a model named {ctx.model!r}: {msg}",
            hint=f"use one of the served models: {served} (or pass no model to use the first one)",
        )
    if status == 404:
        return BadRequestError(
            f"{url} answered HTTP 404 for an OpenAI API path: {msg}",
            hint="check the base URL: an OpenAI-compatible server is usually at http://HOST:PORT/v1",
        )
    return BadRequestError(
        f"The model server at {url} rejected the request (HTTP {status}): {msg}",
        hint="the request is invalid for this server; retrying it unchanged will not help",
    )


# --- retry loop ----------------------------------------------------------------------------------


def _should_retry(policy: RetryPolicy) -> Callable[[RetryCallState], bool]:
    def check(state: RetryCallState) -> bool:
        if state.outcome is None or not state.outcome.failed:
            return False
        exc = state.outcome.exception()
        if not isinstance(exc, ModelError) or not exc.retryable:
            return False
        if isinstance(exc, EndpointUnreachableError) and exc.__cause__ is not None and _refused(exc.__cause__):
            return state.attempt_number <= policy.connect_retries
        return True

    return check


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    exponential = wait_exponential_jitter(multiplier=policy.backoff_initial, max=policy.backoff_max,
                                          jitter=policy.jitter)

    def compute(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return min(exc.retry_after, policy.retry_after_max)
        return float(exponential(state))

    return compute


async def call_with_retries(
    op: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    ctx: EndpointContext,
    on_retry: Callable[[RetryNotice], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> tuple[T, int]:
    """Run ``op`` under ``policy``; return its result and the number of tries it took.

    A failure that exhausts the policy is raised as the mapped ``ModelError`` (chained to the
    original exception) with an ``attempts`` attribute, so a pool can account for the tries.
    """
    attempts = 0

    async def attempt() -> T:
        nonlocal attempts
        attempts += 1
        try:
            return await op()
        except TRANSPORT_EXCEPTIONS as exc:
            raise map_error(exc, ctx) from exc

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        assert isinstance(exc, ModelError)
        logger.warning("model call to %s failed (try %d), retrying in %.2fs: %s",
                       ctx.base_url, state.attempt_number, wait, exc.message)
        if on_retry is not None:
            on_retry(RetryNotice(endpoint=ctx.base_url, attempt=state.attempt_number, wait_s=wait, error=exc))

    kwargs: dict[str, Any] = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_retries + 1),
        wait=_wait(policy),
        retry=_should_retry(policy),
        before_sleep=before_sleep,
        reraise=True,
        **kwargs,
    )
    try:
        result = await retrying(attempt)
    except ModelError as exc:
        exc.attempts = attempts  # type: ignore[attr-defined]
        raise
    return result, attempts
