"""``OpenAICompatModel``: a ``ChatModel`` over any OpenAI-compatible server, vLLM first.

One instance talks to one endpoint (``base_url``). It

* discovers the endpoint lazily on first use (``GET /v1/models`` for the model name and context
  length, ``GET /version`` to recognise vLLM) and probes features when needed or when asked
  (``await model.probe()``), see ``agentflow.llm.capabilities``;
* expresses each request in the strongest form the server supports (``openai_wire``) and, when a
  constraint (json_schema output, a forced tool call, strict arguments) is not available, falls
  back to prompt instructions + client-side validation + bounded retries with the validation
  error fed back to the model. What was done is recorded in ``Choice.repairs``; a constraint is
  never silently dropped;
* adapts to 400 rejections: an optional field (``seed``, ``top_logprobs``...) the server refuses
  is dropped and remembered for the endpoint; an ambiguous rejection triggers a targeted probe;
* retries transport failures under one policy (``transport.RetryPolicy``) with the ``openai``
  client's own retries disabled, limits concurrency per endpoint, and maps failures to
  ``agentflow.errors`` with actionable messages;
* records every successful call in a ``UsageLedger`` when given one.

Options that change behaviour on vLLM:

``forced_tool_mode``
    ``"auto"`` (default): on vLLM, a call forced to a single tool (named ``tool_choice``, or
    ``"required"`` with one tool) is sent as a json_schema response ``{"name": <const>,
    "arguments": <parameters>}`` and converted back into a ``ToolCall``; elsewhere it uses
    ``tool_choice`` with ``strict`` tools. ``"tool_choice"`` always uses ``tool_choice``;
    ``"response_format"`` always routes through json_schema (when the server supports it).
    Routing exists because vLLM's tool-call grammar admits unbounded whitespace, so small
    models may run to ``max_tokens`` inside a forced call, while its structured-output grammar
    does not (DESIGN.md has the measurements).
``schema_transport``
    ``"response_format"`` (default, portable) or ``"structured_outputs"`` (vLLM's extra body
    ``{"structured_outputs": {"json": schema}}``, only used when the server is vLLM). The legacy
    ``guided_json`` field is never sent: vLLM 0.32 accepts and ignores it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from agentflow.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ContextLengthExceededError,
    ModelError,
    ModelNotFoundError,
    ServerError,
)
from agentflow.llm.base import response_events
from agentflow.llm.capabilities import (
    FEATURES,
    Capabilities,
    CapabilityCache,
    Feature,
    ProbeOutcome,
    judge,
    probe_body,
)
from agentflow.llm.openai_wire import (
    DROPPABLE_FIELDS,
    ForcedToolMode,
    RequestPlan,
    SchemaTransport,
    build_plan,
    constraint_violation,
    decode_completion,
    feedback_reminder,
    previous_output_text,
)
from agentflow.llm.transport import (
    TRANSPORT_EXCEPTIONS,
    EndpointContext,
    RetryNotice,
    RetryPolicy,
    call_with_retries,
    map_error,
    rejection,
)
from agentflow.llm.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    Latency,
    Message,
    ModelInfo,
    StreamDone,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from agentflow.llm.usage import UsageLedger

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
#: header marking capability probes (servers may log or exclude them)
PROBE_HEADER = "X-Agentflow-Probe"
#: request fields that carry constraints and are never dropped to appease a server
CONSTRAINT_FIELDS = frozenset({"messages", "model", "tools", "tool_choice", "response_format", "structured_outputs",
                               "n", "max_tokens", "max_completion_tokens", "stop", "temperature", "top_p", "stream"})
_MAX_ADAPTATIONS = 6
_PROBE_POLICY = RetryPolicy(max_retries=1, backoff_initial=0.2, backoff_max=1.0, jitter=0.1, connect_retries=0)
_FORCED_MODES = ("auto", "tool_choice", "response_format")
_SCHEMA_TRANSPORTS = ("response_format", "structured_outputs")


def normalize_base_url(base_url: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/v1``; other paths are kept (minus a trailing /)."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ConfigurationError(
            f"Invalid model server URL {base_url!r}.",
            hint="use a full URL such as http://127.0.0.1:8000/v1 (--base-url or AGENTFLOW_BASE_URL)",
        )
    if parts.path in ("", "/"):
        url += "/v1"
    return url


def server_root(base_url: str) -> str:
    """Where vLLM serves ``/version`` and ``/metrics``: the base URL without its ``/v1``."""
    return base_url[:-3] if base_url.endswith("/v1") else base_url


@dataclass
class _LoopState:
    """Per-event-loop resources: an HTTP client's connections belong to the loop that made them."""

    loop: asyncio.AbstractEventLoop
    client: openai.AsyncOpenAI
    semaphore: asyncio.Semaphore
    discover_lock: asyncio.Lock


class OpenAICompatModel:
    """A ``ChatModel`` backed by an OpenAI-compatible HTTP endpoint (vLLM, OpenAI, llama.cpp...).

    Args:
        base_url: the endpoint, e.g. ``http://127.0.0.1:8000/v1`` (a bare host gets ``/v1``).
            Default: env ``AGENTFLOW_BASE_URL``, else vLLM's default address.
        model: model name; ``None`` uses the first model the server lists.
        api_key: default env ``AGENTFLOW_API_KEY``, then ``OPENAI_API_KEY``, else ``"EMPTY"``
            (what vLLM accepts when started without ``--api-key``). Never logged.
        timeout: seconds a request may go without progress before it is retried.
        max_concurrency: requests in flight to this endpoint at once.
        max_retries: transport retries per request (ignored when ``retry_policy`` is given).
        retry_policy: full control over backoff, Retry-After cap and connect retries.
        ledger: every successful call is recorded there, attributed by ``request.context``.
        capability_cache: share probed capabilities with other models on the same endpoint.
        forced_tool_mode, schema_transport: see the module docstring.
        strict_forced_tools: send ``"strict": true`` on tools of forced calls (vLLM then
            constrains the arguments).
        repair_attempts: feedback rounds for an output that breaks an unenforced constraint.
        on_retry: called before each transport retry (for event logs and progress displays).
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_concurrency: int = 16,
        max_retries: int = 4,
        retry_policy: RetryPolicy | None = None,
        ledger: UsageLedger | None = None,
        capability_cache: CapabilityCache | None = None,
        forced_tool_mode: ForcedToolMode = "auto",
        schema_transport: SchemaTransport = "response_format",
        strict_forced_tools: bool = True,
        repair_attempts: int = 2,
        default_headers: dict[str, str] | None = None,
        on_retry: Callable[[RetryNotice], None] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ConfigurationError(f"timeout must be positive, got {timeout}", hint="pass timeout=60.0 or similar")
        if max_concurrency < 1:
            raise ConfigurationError(f"max_concurrency must be at least 1, got {max_concurrency}",
                                     hint="pass max_concurrency=16 or similar")
        if repair_attempts < 0:
            raise ConfigurationError(f"repair_attempts must be >= 0, got {repair_attempts}",
                                     hint="use 0 to disable feedback retries")
        if forced_tool_mode not in _FORCED_MODES:
            raise ConfigurationError(f"forced_tool_mode must be one of {_FORCED_MODES}, got {forced_tool_mode!r}",
                                     hint='use "auto" unless you have measured otherwise')
        if schema_transport not in _SCHEMA_TRANSPORTS:
            raise ConfigurationError(f"schema_transport must be one of {_SCHEMA_TRANSPORTS}, got {schema_transport!r}",
                                     hint='use "response_format"')
        self.base_url = normalize_base_url(base_url or os.environ.get("AGENTFLOW_BASE_URL") or DEFAULT_BASE_URL)
        self.root_url = server_root(self.base_url)
        self._model = model
        self._api_key = api_key or os.environ.get("AGENTFLOW_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.retry_policy = retry_policy or RetryPolicy(max_retries=max_retries)
        self.ledger = ledger
        self.capability_cache = capability_cache
        self.caps = (capability_cache.get_or_create(self.base_url) if capability_cache is not None
                     else Capabilities(base_url=self.base_url))
        self.forced_tool_mode: ForcedToolMode = forced_tool_mode
        self.schema_transport: SchemaTransport = schema_transport
        self.strict_forced_tools = strict_forced_tools
        self.repair_attempts = repair_attempts
        self.on_retry = on_retry
        self._default_headers = dict(default_headers or {})
        self._state: _LoopState | None = None

    # --- identity -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The model name (the server's first model once discovered, when none was given)."""
        return self._model or "default"

    @property
    def model(self) -> str | None:
        return self._model

    @property
    def capabilities(self) -> Capabilities:
        return self.caps

    def __repr__(self) -> str:
        return f"OpenAICompatModel(base_url={self.base_url!r}, model={self._model!r})"

    # --- resources ----------------------------------------------------------------------------

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop:
            client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                timeout=self.timeout,
                max_retries=0,  # one retry policy: ours
                default_headers=self._default_headers or None,
                http_client=openai.DefaultAsyncHttpxClient(verify=_ssl_context()),
            )
            state = self._state = _LoopState(loop=loop, client=client,
                                             semaphore=asyncio.Semaphore(self.max_concurrency),
                                             discover_lock=asyncio.Lock())
        return state

    async def aclose(self) -> None:
        """Close the HTTP connections of the current event loop's client."""
        state, self._state = self._state, None
        if state is not None and not state.loop.is_closed():
            await state.client.close()

    async def __aenter__(self) -> OpenAICompatModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _ctx(self) -> EndpointContext:
        return EndpointContext(base_url=self.base_url, model=self._model, timeout=self.timeout,
                               served_models=self.caps.model_ids, max_model_len=self._max_model_len())

    def _max_model_len(self) -> int | None:
        info = self.caps.model_info(self._model)
        return info.max_model_len if info is not None else self.caps.max_model_len

    # --- discovery and probing -------------------------------------------------------------------

    async def _ensure_ready(self) -> None:
        if self.caps.discovered and self._model is not None:
            return
        state = self._loop_state()
        async with state.discover_lock:
            if not self.caps.discovered:
                await self._discover()
            if self._model is None:
                if not self.caps.models:
                    raise ConfigurationError(
                        f"The model server at {self.base_url} lists no models, so none can be chosen by default.",
                        hint="pass model= (or --model / AGENTFLOW_MODEL) with the name the server serves",
                    )
                self._model = self.caps.models[0].id
                logger.info("using model %r, the first served at %s", self._model, self.base_url)

    async def _get(self, url: str) -> httpx2.Response:
        state = self._loop_state()
        return await state.client.get(url, cast_to=httpx2.Response)

    async def _discover(self) -> None:
        caps = self.caps

        async def version() -> dict[str, Any] | None:
            try:
                response = await self._get(f"{self.root_url}/version")
                data = response.json()
                return data if isinstance(data, dict) else None
            except Exception as exc:  # any failure just means "not vLLM"
                logger.debug("GET %s/version failed (%s); assuming the server is not vLLM", self.root_url, exc)
                return None

        models_result, version_data = await asyncio.gather(
            call_with_retries(lambda: self._get("models"), policy=self.retry_policy, ctx=self._ctx(),
                              on_retry=self.on_retry),
            version(),
            return_exceptions=True,
        )
        models: list[ModelInfo] = []
        if isinstance(models_result, BadRequestError) and type(models_result) is BadRequestError:
            logger.info("%s does not list models (%s)", self.base_url, models_result.message)
        elif isinstance(models_result, BaseException):
            raise models_result
        else:
            response, _ = models_result
            try:
                payload = response.json()
            except ValueError:
                payload = {}
            for entry in payload.get("data") or [] if isinstance(payload, dict) else []:
                if isinstance(entry, dict) and entry.get("id"):
                    max_len = entry.get("max_model_len")
                    models.append(ModelInfo(id=str(entry["id"]), max_model_len=max_len if isinstance(max_len, int) else None,
                                            owned_by=entry.get("owned_by")))
        caps.models = models
        if isinstance(version_data, dict) and version_data.get("version"):
            caps.is_vllm, caps.version = True, str(version_data["version"])
        else:
            caps.is_vllm = any(m.owned_by == "vllm" for m in models)
        caps.discovered = True

    async def probe(self, *, refresh: bool = False) -> Capabilities:
        """Probe every capability now (tiny requests) and return them; cached on the instance."""
        if refresh:
            fresh = Capabilities(base_url=self.base_url)
            for name in Capabilities.model_fields:
                setattr(self.caps, name, getattr(fresh, name))
        await self._ensure_ready()
        await asyncio.gather(self._probe_features(list(FEATURES)), self._probe_metrics())
        self.caps.probed = True
        self.caps.probed_at = time.time()
        return self.caps

    async def _probe_features(self, features: list[Feature]) -> None:
        await asyncio.gather(*(self._probe_one(f) for f in features))

    async def _probe_one(self, feature: Feature) -> None:
        body = probe_body(feature, self._model or "")
        try:
            if feature == "streaming":
                data = await self._probe_stream(body)
            else:
                data, _ = await call_with_retries(lambda: self._post_json(body, probe=feature), policy=_PROBE_POLICY,
                                                  ctx=self._ctx())
            outcome = ProbeOutcome(ok=True, data=data)
        except ModelError as err:
            status, message, _ = rejection(err)
            outcome = ProbeOutcome(ok=False, status=status, error=message)
        verdict = judge(feature, outcome)
        current = self.caps.feature(feature)
        if verdict.available is not None or current.available is None:
            self.caps.mark(feature, verdict.available, verdict.detail)
        logger.debug("probe %s at %s: %s (%s)", feature, self.base_url, verdict.available, verdict.detail)

    async def _probe_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            state = self._loop_state()
            async with state.semaphore:
                stream = await self._post_stream(body, probe="streaming")
                usage = None
                async for chunk in stream:
                    if getattr(chunk, "usage", None) is not None:
                        usage = chunk.usage
            return {"usage": usage is not None}

        data, _ = await call_with_retries(run, policy=_PROBE_POLICY, ctx=self._ctx())
        return data if data.get("usage") else {}

    async def _probe_metrics(self) -> None:
        url = f"{self.root_url}/metrics"
        try:
            response = await self._get(url)
            ok = response.status_code == 200
            self.caps.mark("metrics", ok, f"Prometheus metrics at {url}" if ok else f"HTTP {response.status_code}")
        except openai.APIStatusError as exc:
            self.caps.mark("metrics", False, f"HTTP {exc.status_code} at {url}")
        except Exception as exc:
            self.caps.mark("metrics", None, f"probe inconclusive: {map_error(exc, self._ctx()).message}")

    # --- one HTTP exchange --------------------------------------------------------------------

    async def _post_json(self, body: dict[str, Any], *, probe: str | None = None) -> dict[str, Any]:
        """One chat-completions POST of a prepared body; the JSON answer as a dict.

        The body goes through ``AsyncOpenAI.post`` as is: it is already plain JSON, so the
        client's per-call transformation of typed parameters (a large share of its CPU cost) is
        skipped, and the answer is decoded from JSON directly instead of into SDK models.
        """
        state = self._loop_state()
        options: Any = {"headers": {PROBE_HEADER: probe}} if probe else {}
        async with state.semaphore:
            response = await state.client.post("/chat/completions", body=body, cast_to=httpx2.Response,
                                               options=options)
            content = response.content
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise ServerError(f"The model server at {self.base_url} answered with a body that is not JSON: "
                              f"{content[:200]!r}", hint="check that the base URL points at an OpenAI-compatible "
                              "API and not at a web page or proxy") from exc
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            error = data.get("error") if isinstance(data, dict) else None
            raise ServerError(f"The model server at {self.base_url} answered without choices: {str(error or data)[:300]}",
                              hint="check the server's log")
        return data

    async def _send(self, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        return await call_with_retries(lambda: self._post_json(body), policy=self.retry_policy, ctx=self._ctx(),
                                       on_retry=self.on_retry)

    # --- complete ------------------------------------------------------------------------------

    def _plan(self, request: ChatRequest, downgrades: frozenset[str]) -> RequestPlan:
        return build_plan(
            request, self.caps, request.model or self._model or "",
            forced_tool_mode=self.forced_tool_mode, schema_transport=self.schema_transport,
            strict_forced_tools=self.strict_forced_tools, downgrades=downgrades,
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        started = time.perf_counter()
        await self._ensure_ready()
        response = await self._run(request, started)
        if self.ledger is not None:
            self.ledger.record(request, response)
        return response

    async def _run(self, request: ChatRequest, started: float, downgrades: frozenset[str] = frozenset(),
                   attempts: int = 0) -> ChatResponse:
        first_error: BadRequestError | None = None
        for _ in range(_MAX_ADAPTATIONS + 1):
            plan = self._plan(request, downgrades)
            try:
                choices, usage, model_name, tries = await self._execute(plan, request)
                attempts += tries
                break
            except BadRequestError as err:
                attempts += getattr(err, "attempts", 1)
                if not _adaptable(err):
                    raise
                first_error = first_error or err
                adapted = await self._adapt(err, plan, request, downgrades)
                if adapted is None:
                    raise first_error from None
                downgrades = adapted
        else:
            assert first_error is not None
            raise first_error
        choices, more_usage, more_attempts = await self._enforce(choices, plan, request, downgrades)
        total = time.perf_counter() - started
        return ChatResponse(
            choices=choices,
            usage=usage + more_usage,
            latency=Latency(ttft_s=total, total_s=total),
            model=model_name or request.model or self.name,
            endpoint=self.base_url,
            attempts=attempts + more_attempts,
        )

    async def _execute(self, plan: RequestPlan, request: ChatRequest) -> tuple[list[Choice], Usage, str | None, int]:
        if plan.split_n > 1:
            return await self._execute_split(plan, request, plan.split_n, 0)
        data, tries = await self._send(plan.body)
        choices, usage, model_name = decode_completion(data, plan, request)
        if not choices:
            raise ServerError(f"The model server at {self.base_url} returned no choices.", hint="check the server's log")
        if request.n > 1 and len(choices) < request.n and "n" in plan.body:
            self.caps.mark("n_samples", False, f"accepted n={request.n} but returned {len(choices)} choice(s)")
            logger.warning("%s ignored n=%d; requesting the missing samples one by one", self.base_url, request.n)
            more, more_usage, _, more_tries = await self._execute_split(plan, request, request.n - len(choices),
                                                                        len(choices))
            choices, usage, tries = choices + more, usage + more_usage, tries + more_tries
        return choices, usage, model_name, tries

    async def _execute_split(self, plan: RequestPlan, request: ChatRequest, count: int,
                             start: int) -> tuple[list[Choice], Usage, str | None, int]:
        """``count`` single-sample requests instead of one ``n`` request (distinct seeds)."""
        bodies = []
        for i in range(count):
            body = {k: v for k, v in plan.body.items() if k != "n"}
            if isinstance(body.get("seed"), int):
                body["seed"] += start + i
            bodies.append(body)
        results = await asyncio.gather(*(self._send(b) for b in bodies))
        choices: list[Choice] = []
        usage = Usage()
        tries = 0
        model_name: str | None = None
        for i, (data, t) in enumerate(results):
            decoded, u, model_name = decode_completion(data, plan, request)
            if decoded:
                decoded[0].index = start + i
                choices.append(decoded[0])
            usage, tries = usage + u, tries + t
        return choices, usage, model_name, tries

    # --- adapting to rejections ----------------------------------------------------------------

    async def _adapt(self, err: BadRequestError, plan: RequestPlan, request: ChatRequest,
                     downgrades: frozenset[str]) -> frozenset[str] | None:
        """Learn from a 400 and return the downgrades for the next try, or None to give up."""
        _, message, param = rejection(err)
        body = plan.body
        caps = self.caps
        blamed = _blamed_fields(message, param, body)
        if "max_tokens" in blamed and "max_completion_tokens" in message and "max_tokens" not in caps.renamed_fields:
            caps.renamed_fields["max_tokens"] = "max_completion_tokens"
            logger.warning("%s wants max_completion_tokens instead of max_tokens; renaming from now on", self.base_url)
            return downgrades
        droppable = [f for f in blamed
                     if (f in DROPPABLE_FIELDS or (f in request.extra_body and f not in CONSTRAINT_FIELDS))
                     and f not in caps.rejected_fields and f"drop:{f}" not in downgrades]
        if droppable:
            if _field_unsupported(message):
                # the server does not know the field at all: stop sending it to this endpoint
                for f in droppable:
                    caps.rejected_fields.append(f)
                    if f == "logprobs":
                        caps.mark("logprobs", False, f"rejected: {message[:160]}")
                        if "top_logprobs" not in caps.rejected_fields:
                            caps.rejected_fields.append("top_logprobs")
                logger.warning("%s does not accept the optional field(s) %s; not sending them to it from now on "
                               "(%s)", self.base_url, ", ".join(droppable), message[:200])
                return downgrades
            # a value this server refuses (e.g. too many top logprobs): drop it for this request only
            logger.warning("%s refused the value of optional field(s) %s; sending this request without them (%s)",
                           self.base_url, ", ".join(droppable), message[:200])
            extra = {f"drop:{f}" for f in droppable}
            if "logprobs" in droppable:
                extra.add("drop:top_logprobs")
            return downgrades | extra
        unknown = caps.unknown(_features_used(body))
        if unknown:
            await self._probe_features(unknown)
            if any(caps.feature(f).available is False for f in unknown):
                lost = [f for f in unknown if caps.feature(f).available is False]
                logger.warning("%s does not support %s; using enforced fallbacks", self.base_url, ", ".join(lost))
                return downgrades
        for option in _downgrade_options(plan):
            if option not in downgrades:
                logger.warning("%s rejected the request (%s); retrying it with %s", self.base_url, message[:200],
                               option)
                return downgrades | {option}
        return None

    # --- enforcing constraints the server did not ------------------------------------------------

    def _needs_feedback(self, choice: Choice, plan: RequestPlan, request: ChatRequest) -> bool:
        violation = constraint_violation(choice, plan, request)
        if violation is None:
            return False
        schema_problem = request.output_schema is not None and choice.parse_error is not None
        client_side = plan.client_side_schema if schema_problem else plan.client_side_tools
        # A server-enforced constraint only fails when the output was cut off; repeating the same
        # request cannot fix that, so only unenforced (or evidently ignored) constraints get feedback.
        return client_side or choice.finish_reason != "length"

    async def _enforce(self, choices: list[Choice], plan: RequestPlan, request: ChatRequest,
                       downgrades: frozenset[str]) -> tuple[list[Choice], Usage, int]:
        if self.repair_attempts == 0 or (request.output_schema is None and not plan.must_call):
            return choices, Usage(), 0
        failing = [i for i, c in enumerate(choices) if self._needs_feedback(c, plan, request)]
        if not failing:
            return choices, Usage(), 0
        results = await asyncio.gather(*(self._feedback_rounds(choices[i], plan, request, downgrades)
                                         for i in failing))
        usage, attempts = Usage(), 0
        out = list(choices)
        for i, (fixed, u, t) in zip(failing, results, strict=True):
            out[i] = fixed
            usage, attempts = usage + u, attempts + t
        return out, usage, attempts

    async def _feedback_rounds(self, choice: Choice, plan: RequestPlan, request: ChatRequest,
                               downgrades: frozenset[str]) -> tuple[Choice, Usage, int]:
        history = list(request.messages)
        current = choice
        usage, attempts = Usage(), 0
        first_violation = constraint_violation(choice, plan, request) or ""
        violation = first_violation
        for round_no in range(1, self.repair_attempts + 1):
            history += [
                Message.assistant(previous_output_text(current)),
                Message.user(f"Your previous reply was not valid: {violation}\n{feedback_reminder(plan, request)}"),
            ]
            sub = request.model_copy(update={"messages": list(history), "n": 1})
            sub_plan = self._plan(sub, downgrades)
            try:
                data, tries = await self._send(sub_plan.body)
            except ModelError as exc:
                current.repairs.append(f"feedback retry {round_no} failed: {exc.message}")
                return current, usage, attempts + getattr(exc, "attempts", 1)
            attempts += tries
            decoded, u, _ = decode_completion(data, sub_plan, sub)
            usage = usage + u
            if not decoded:
                break
            new = decoded[0]
            new.index = choice.index
            violation = constraint_violation(new, sub_plan, sub)
            if violation is None:
                new.repairs.append(f"invalid output fixed after {round_no} feedback round(s); first problem: "
                                   f"{first_violation}")
                return new, usage, attempts
            current = new
            if not self._needs_feedback(current, sub_plan, sub):
                break
        current.repairs.append(f"output still invalid after {self.repair_attempts} feedback round(s): {violation}")
        if current.parse_error is None and violation:
            current.parse_error = violation
        return current, usage, attempts

    # --- streaming -----------------------------------------------------------------------------

    def _streams_natively(self, plan: RequestPlan) -> bool:
        return (self.caps.streaming.usable and plan.split_n == 1 and plan.tool_mode != "json_schema"
                and not plan.client_side_schema and not plan.client_side_tools)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Yield text and tool-call deltas, then ``StreamDone`` with the aggregated response.

        Failures before the first chunk are retried like any request; after it they are raised
        (the consumer already has part of the output). Requests whose constraints need
        client-side enforcement (fallbacks, json_schema-routed forced calls, split ``n``) are
        completed first and replayed as deltas: a stream cannot take back text that later fails
        validation.
        """
        started = time.perf_counter()
        await self._ensure_ready()
        downgrades: frozenset[str] = frozenset()
        attempts = 0
        first_error: BadRequestError | None = None
        for _ in range(_MAX_ADAPTATIONS + 1):
            plan = self._plan(request, downgrades)
            if not self._streams_natively(plan):
                async for event in self._replay(request, started, downgrades, attempts):
                    yield event
                return
            body = self._stream_body(plan)
            try:
                stream, first, tries, state = await self._open_held(body)
            except BadRequestError as err:
                attempts += getattr(err, "attempts", 1)
                if not _adaptable(err):
                    raise
                first_error = first_error or err
                adapted = await self._adapt(err, dataclasses.replace(plan, body=body), request, downgrades)
                if adapted is None:
                    raise first_error from None
                downgrades = adapted
                continue
            attempts += tries
            break
        else:
            assert first_error is not None
            raise first_error

        try:
            acc = _StreamAccumulator()
            ttft: float | None = None
            chunk = first
            try:
                while chunk is not None:
                    events = acc.add(chunk)
                    if events and ttft is None:
                        ttft = time.perf_counter() - started
                    for event in events:
                        yield event
                    try:
                        chunk = await stream.__anext__()
                    except StopAsyncIteration:
                        chunk = None
            except TRANSPORT_EXCEPTIONS as exc:
                raise map_error(exc, self._ctx()) from exc
            choices, usage, model_name = decode_completion(acc.result(), plan, request)
            total = time.perf_counter() - started
            response = ChatResponse(
                choices=choices, usage=usage, latency=Latency(ttft_s=ttft if ttft is not None else total, total_s=total),
                model=model_name or request.model or self.name, endpoint=self.base_url, attempts=attempts,
            )
            if self.ledger is not None:
                self.ledger.record(request, response)
            yield StreamDone(response=response)
        finally:
            try:
                await stream.close()
            except Exception:  # closing a broken connection must not mask the real error
                logger.debug("closing a stream from %s failed", self.base_url, exc_info=True)
            state.semaphore.release()

    def _stream_body(self, plan: RequestPlan) -> dict[str, Any]:
        body = dict(plan.body)
        body["stream"] = True
        if "stream_options" not in self.caps.rejected_fields:
            body["stream_options"] = {"include_usage": True}
        return body

    async def _open_held(self, body: dict[str, Any]) -> tuple[Any, Any, int, _LoopState]:
        """Open a stream (with retries) holding a concurrency slot, which the caller must release."""
        state = self._loop_state()
        await state.semaphore.acquire()
        try:
            (stream, first), tries = await call_with_retries(
                lambda: self._open_stream(body), policy=self.retry_policy, ctx=self._ctx(), on_retry=self.on_retry)
        except BaseException:
            state.semaphore.release()
            raise
        return stream, first, tries, state

    async def _open_stream(self, body: dict[str, Any]) -> tuple[Any, Any]:
        """Open a stream and read its first chunk, so failures before any output can be retried."""
        stream = await self._post_stream(body)
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException:
            await stream.close()
            raise
        return stream, first

    async def _post_stream(self, body: dict[str, Any], *, probe: str | None = None) -> openai.AsyncStream[Any]:
        """POST a prepared streaming body; SSE parsing and error events are the SDK's."""
        state = self._loop_state()
        options: Any = {"headers": {PROBE_HEADER: probe}} if probe else {}
        return await state.client.post("/chat/completions", body=body, cast_to=ChatCompletion, options=options,
                                       stream=True, stream_cls=openai.AsyncStream[ChatCompletionChunk])

    async def _replay(self, request: ChatRequest, started: float, downgrades: frozenset[str] = frozenset(),
                      attempts: int = 0) -> AsyncIterator[StreamEvent]:
        response = await self._run(request, started, downgrades, attempts)
        if self.ledger is not None:
            self.ledger.record(request, response)
        for event in response_events(response):
            yield event


# --- helpers -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """The system trust store, loaded once: loading it costs ~0.1 s per HTTP client otherwise."""
    return ssl.create_default_context()


def _adaptable(err: BadRequestError) -> bool:
    """A plain 400/422 may be about a field or feature; context, auth and model errors are not."""
    if isinstance(err, ContextLengthExceededError | AuthenticationError | ModelNotFoundError):
        return False
    status, _, _ = rejection(err)
    return status in (400, 422)


_UNSUPPORTED_WORDS = ("unrecognized", "unsupported", "not supported", "unknown", "extra", "not allowed",
                      "not permitted", "forbidden", "invalid parameter")


def _field_unsupported(message: str) -> bool:
    """Whether a rejection says the field itself is unknown (vs. a value out of range)."""
    lower = message.lower()
    return any(word in lower for word in _UNSUPPORTED_WORDS)


def _blamed_fields(message: str, param: str | None, body: dict[str, Any]) -> list[str]:
    """Request fields the server's message or ``param`` names (vLLM reports ``body.<field>``)."""
    if param and param.startswith("body."):
        param = param[len("body."):]
    out = []
    for key in body:
        if key in ("model", "messages"):
            continue
        if param == key or (param and param.split(".")[0] == key):
            out.append(key)
        elif len(key) > 3 and re.search(rf"(?<![A-Za-z0-9_]){re.escape(key)}(?![A-Za-z0-9_])", message):
            out.append(key)
    return out


def _features_used(body: dict[str, Any]) -> list[Feature]:
    used: list[Feature] = []
    tc = body.get("tool_choice")
    if body.get("tools"):
        if tc == "auto":
            used.append("tool_choice_auto")
        elif tc == "required":
            used.append("tool_choice_required")
        elif isinstance(tc, dict):
            used.append("tool_choice_named")
        if any((t.get("function") or {}).get("strict") for t in body["tools"]):
            used.append("strict_tools")
    rf = body.get("response_format")
    if (isinstance(rf, dict) and rf.get("type") == "json_schema") or "structured_outputs" in body:
        used.append("json_schema")
    if (body.get("n") or 1) > 1:
        used.append("n_samples")
    if body.get("logprobs"):
        used.append("logprobs")
    if body.get("stream"):
        used.append("streaming")
    return used


def _downgrade_options(plan: RequestPlan) -> list[str]:
    body = plan.body
    options = []
    if plan.tool_mode == "json_schema":
        options.append("forced_via_tool_choice")
    if any((t.get("function") or {}).get("strict") for t in body.get("tools") or []):
        options.append("no_strict_tools")
    rf = body.get("response_format")
    if plan.schema_mode == "native":
        if isinstance(rf, dict) and (rf.get("json_schema") or {}).get("strict"):
            options.append("non_strict_schema")
        options.append("schema_in_prompt")
    return options


class _StreamAccumulator:
    """Builds a chat-completion-shaped dict from stream chunks, emitting deltas on the way."""

    def __init__(self) -> None:
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None

    def _choice(self, index: int) -> dict[str, Any]:
        c = self.choices.get(index)
        if c is None:
            c = self.choices[index] = {"text": [], "calls": {}, "finish": None, "logprobs": [], "has_logprobs": False}
        return c

    def add(self, chunk: Any) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if chunk is None:
            return events
        self.model = getattr(chunk, "model", None) or self.model
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            details = getattr(usage, "prompt_tokens_details", None)
            self.usage = {
                "prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
                "completion_tokens": getattr(usage, "completion_tokens", 0) or 0,
                "prompt_tokens_details": {"cached_tokens": getattr(details, "cached_tokens", 0) or 0},
            }
        for ch in getattr(chunk, "choices", None) or []:
            index = int(getattr(ch, "index", 0) or 0)
            acc = self._choice(index)
            delta = getattr(ch, "delta", None)
            content = getattr(delta, "content", None) if delta is not None else None
            if content:
                acc["text"].append(content)
                events.append(TextDelta(index=index, text=content))
            for tc in (getattr(delta, "tool_calls", None) or []) if delta is not None else []:
                call_index = int(getattr(tc, "index", 0) or 0)
                call = acc["calls"].setdefault(call_index, {"id": None, "name": "", "arguments": []})
                fn = getattr(tc, "function", None)
                name = getattr(fn, "name", None) if fn is not None else None
                args = (getattr(fn, "arguments", None) if fn is not None else None) or ""
                if getattr(tc, "id", None):
                    call["id"] = tc.id
                if name:
                    call["name"] += name
                call["arguments"].append(args)
                events.append(ToolCallDelta(index=index, call_index=call_index, id=getattr(tc, "id", None),
                                            name=name, arguments=args))
            if getattr(ch, "finish_reason", None):
                acc["finish"] = ch.finish_reason
            lp = getattr(ch, "logprobs", None)
            if lp is not None and getattr(lp, "content", None):
                acc["has_logprobs"] = True
                for item in lp.content:
                    acc["logprobs"].append({
                        "token": getattr(item, "token", ""),
                        "logprob": getattr(item, "logprob", 0.0),
                        "top_logprobs": [{"token": getattr(t, "token", ""), "logprob": getattr(t, "logprob", 0.0)}
                                         for t in getattr(item, "top_logprobs", None) or []],
                    })
        return events

    def result(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self.choices):
            acc = self.choices[index]
            message: dict[str, Any] = {"role": "assistant", "content": "".join(acc["text"]) or None}
            if acc["calls"]:
                message["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": "".join(c["arguments"])}}
                    for _, c in sorted(acc["calls"].items())
                ]
            choices.append({"index": index, "message": message, "finish_reason": acc["finish"],
                            "logprobs": {"content": acc["logprobs"]} if acc["has_logprobs"] else None})
        return {"choices": choices, "usage": self.usage, "model": self.model}


async def probe_endpoint(base_url: str | None = None, api_key: str | None = None, model: str | None = None, *,
                         timeout: float = 15.0) -> Capabilities:
    """Probe an endpoint's capabilities (for ``agentflow doctor``); raises if nothing answers.

    ``Capabilities.table()`` gives one row per capability: available (True/False/None for
    inconclusive) and a detail string.
    """
    probe_model = OpenAICompatModel(base_url, model, api_key, timeout=timeout,
                                    retry_policy=RetryPolicy(max_retries=1, backoff_initial=0.2, backoff_max=1.0,
                                                             jitter=0.1, connect_retries=0))
    try:
        return await probe_model.probe()
    finally:
        await probe_model.aclose()


__all__ = ["DEFAULT_BASE_URL", "OpenAICompatModel", "normalize_base_url", "probe_endpoint", "server_root"]
