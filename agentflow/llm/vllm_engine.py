"""A ``ChatModel`` that runs vLLM inside this process (extra ``vllm``), for offline batch runs.

No server, no HTTP: prompts go straight to vLLM's ``AsyncLLM`` engine, which batches concurrent
``complete`` calls exactly as the server would, with prefix caching. The pieces the OpenAI server
adds on top of the engine are done here:

* the chat template (the model's own, through its tokenizer) renders messages and tools;
* structured output uses vLLM's ``StructuredOutputsParams(json=...)``;
* a forced tool call (``tool_choice`` named, or ``required``) is generated as structured output
  ``{"name": <one of the tools>, "arguments": <its parameters>}`` — on vLLM this is both cheaper
  and more reliable than the tool-call grammar (DESIGN.md: 10/10 valid calls versus 8/10);
* with ``tool_choice="auto"`` the text is parsed with vLLM's tool-call parser for the model family
  (the same ``choose_tool_parser`` the launcher uses), falling back to agentflow's repair parser.

vLLM is imported lazily, so importing this module costs nothing where vLLM is not installed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agentflow.errors import ConfigurationError, ContextLengthExceededError, ModelError
from agentflow.llm.openai_wire import forced_call_schema
from agentflow.llm.repair import extract_leaked_tool_calls, parse_json_lenient, parse_tool_arguments
from agentflow.llm.schema_check import validation_error
from agentflow.llm.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    Latency,
    ModelInfo,
    NamedToolChoice,
    StreamDone,
    StreamEvent,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from agentflow.llm.vllm_server import choose_tool_parser

logger = logging.getLogger(__name__)

#: vLLM finish reasons -> agentflow's
_FINISH = {"stop": "stop", "length": "length", "abort": "error", "error": "error"}


_INSTALL_HINT = ("pip install 'agentflow[vllm]' (GPU), or on CPU run with the venv from tools/vllm_env.py; "
                 "or start a server (agentflow serve) and use OpenAICompatModel")


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ConfigurationError("the in-process engine needs vLLM, which is not installed in this environment",
                                 hint=_INSTALL_HINT) from exc
    if getattr(vllm, "__version__", None) is None:
        # e.g. a folder named ``vllm`` on sys.path (a test directory) imported as a namespace package
        raise ConfigurationError(f"`import vllm` found {list(getattr(vllm, '__path__', []))}, not the vLLM package",
                                 hint=_INSTALL_HINT)
    return vllm


def conversation(request: ChatRequest) -> list[dict[str, Any]]:
    """Messages as chat-template input; tool-call arguments become objects, as vLLM passes them.

    Templates such as Qwen's render ``arguments | tojson``, which would double-encode a string.
    """
    out = []
    for message in request.messages:
        item = message.to_openai()
        for call in item.get("tool_calls") or []:
            fn = call["function"]
            parsed = parse_tool_arguments(fn.get("arguments"))
            if parsed.arguments is not None:
                fn["arguments"] = parsed.arguments
        out.append(item)
    return out


@dataclass
class _Sample:
    """One of the ``n`` outputs, accumulated over streamed deltas."""

    index: int
    text: list[str] = field(default_factory=list)
    tokens: int = 0
    finish: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)


class VllmEngineModel:
    """In-process vLLM behind the ``ChatModel`` protocol.

    ``engine_kwargs`` go to ``AsyncEngineArgs`` unchanged (``tensor_parallel_size``,
    ``gpu_memory_utilization``, ...). The engine starts on first use or with ``await start()``;
    ``await aclose()`` (or ``async with``) shuts its worker processes down.
    """

    def __init__(self, model: str, *, name: str | None = None, tool_parser: str | None = None,
                 max_model_len: int | None = None, enable_prefix_caching: bool = True,
                 default_max_tokens: int = 1024, engine_kwargs: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.model_path = model
        self.name = name or model
        self.tool_parser_name, _ = choose_tool_parser(model, tool_parser)
        self.max_model_len = max_model_len
        self.enable_prefix_caching = enable_prefix_caching
        self.default_max_tokens = default_max_tokens
        self.engine_kwargs = dict(engine_kwargs or {})
        self.env = dict(env or {})
        self._engine: Any = None
        self._tokenizer: Any = None
        self._start_lock = asyncio.Lock()

    @classmethod
    def tiny_cpu(cls, model_dir: str, **kwargs: Any) -> VllmEngineModel:
        """Settings for the tiny random test model on CPU (see ``vllm_server.tiny_cpu_config``)."""
        engine_kwargs = {"dtype": "float32", "enforce_eager": True, "block_size": 32, "seed": 0,
                         "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True}}
        engine_kwargs.update(kwargs.pop("engine_kwargs", {}))
        kwargs.setdefault("max_model_len", 4096)
        kwargs.setdefault("name", "agentflow-tiny")
        env = {"VLLM_CPU_KVCACHE_SPACE": "1", **kwargs.pop("env", {})}
        return cls(model_dir, engine_kwargs=engine_kwargs, env=env, **kwargs)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._engine is not None:
                return
            _import_vllm()
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM

            for key, value in self.env.items():
                os.environ.setdefault(key, value)
            kwargs = dict(self.engine_kwargs)
            soc = kwargs.get("structured_outputs_config")
            if isinstance(soc, dict):
                from vllm.config import StructuredOutputsConfig

                kwargs["structured_outputs_config"] = StructuredOutputsConfig(**soc)
            args = AsyncEngineArgs(model=self.model_path, served_model_name=[self.name],
                                   max_model_len=self.max_model_len,
                                   enable_prefix_caching=self.enable_prefix_caching, **kwargs)
            self._engine = AsyncLLM.from_engine_args(args)
            self._tokenizer = self._engine.get_tokenizer()
            self.max_model_len = self._engine.model_config.max_model_len
            logger.info("vLLM engine ready for %s (max_model_len=%s)", self.model_path, self.max_model_len)

    async def aclose(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(engine.shutdown)

    async def __aenter__(self) -> VllmEngineModel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def info(self) -> ModelInfo:
        await self.start()
        return ModelInfo(id=self.name, max_model_len=self.max_model_len, owned_by="vllm (in-process)")

    # --- request building ---------------------------------------------------------------------

    def render_prompt(self, request: ChatRequest) -> list[int]:
        """Token ids of the chat-templated prompt (tools first, as the template places them)."""
        tools = [t.to_openai() for t in request.tools] or None
        text = self._tokenizer.apply_chat_template(conversation(request), tools=tools,
                                                   add_generation_prompt=True, tokenize=False)
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def _forced_tools(self, request: ChatRequest) -> list[ToolSpec] | None:
        if not request.tools:
            return None
        if isinstance(request.tool_choice, NamedToolChoice):
            chosen = [t for t in request.tools if t.name == request.tool_choice.name]
            if not chosen:
                raise ConfigurationError(
                    f"tool_choice names {request.tool_choice.name!r}, which is not among the request's tools",
                    hint="pass the tool in `tools` or choose one of: " + ", ".join(t.name for t in request.tools),
                )
            return chosen
        if request.tool_choice == "required":
            return list(request.tools)
        return None

    def sampling_params(self, request: ChatRequest, prompt_len: int, *, forced: list[ToolSpec] | None) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        max_tokens = request.max_tokens or self.default_max_tokens
        if self.max_model_len is not None:
            room = self.max_model_len - prompt_len
            if room <= 0:
                raise ContextLengthExceededError(
                    f"the prompt has {prompt_len} tokens; the model's context holds {self.max_model_len}",
                    hint="shorten the conversation or raise max_model_len",
                    max_context=self.max_model_len, prompt_tokens=prompt_len,
                )
            if request.max_tokens is None:
                max_tokens = min(max_tokens, room)
            elif max_tokens > room:
                raise ContextLengthExceededError(
                    f"prompt ({prompt_len}) plus max_tokens ({max_tokens}) exceeds the context "
                    f"({self.max_model_len} tokens)",
                    hint="lower max_tokens or shorten the prompt",
                    max_context=self.max_model_len, prompt_tokens=prompt_len,
                )
        kwargs: dict[str, Any] = {"n": request.n, "max_tokens": max_tokens,
                                  "output_kind": RequestOutputKind.DELTA}
        for key in ("temperature", "top_p", "seed", "stop"):
            value = getattr(request, key)
            if value is not None:
                kwargs[key] = value
        if request.logprobs:
            kwargs["logprobs"] = request.top_logprobs or 0
        if forced:
            kwargs["structured_outputs"] = StructuredOutputsParams(json=forced_call_schema(forced))
        elif request.output_schema is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(json=request.output_schema.json_schema)
        kwargs.update(request.extra_body)
        return SamplingParams(**kwargs)

    # --- output parsing -----------------------------------------------------------------------

    def _parse_auto_tool_calls(self, text: str, request: ChatRequest) -> tuple[list[ToolCall], str | None, list[str]]:
        """Tool calls in free text, by vLLM's parser for the family, else agentflow's repair."""
        names = [t.name for t in request.tools]
        try:
            from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
            from vllm.tool_parsers import ToolParserManager

            tools = [t.to_openai() for t in request.tools]
            parser = ToolParserManager.get_tool_parser(self.tool_parser_name)(self._tokenizer)
            vreq = ChatCompletionRequest(model=self.name, messages=[{"role": "user", "content": ""}],
                                         tools=tools)
            info = parser.extract_tool_calls(text, vreq)
            if info.tools_called:
                calls = []
                for tc in info.tool_calls:
                    parsed = parse_tool_arguments(tc.function.arguments)
                    extra = {"id": tc.id} if getattr(tc, "id", None) else {}
                    calls.append(ToolCall(name=tc.function.name, arguments=parsed.arguments,
                                          raw_arguments=tc.function.arguments or "", parse_error=parsed.error,
                                          repaired=parsed.repair, **extra))
                return calls, info.content or None, []
        except Exception as exc:  # parser API differs across vLLM versions: fall back, never crash
            logger.debug("vLLM tool parser %s failed (%r); using agentflow's parser", self.tool_parser_name, exc)
        leaked = extract_leaked_tool_calls(text, names)
        if leaked:
            return leaked.calls, leaked.remaining_text, leaked.notes
        return [], text, []

    def _choice(self, sample: _Sample, request: ChatRequest, forced: list[ToolSpec] | None) -> Choice:
        text = "".join(sample.text)
        finish = _FINISH.get(sample.finish or "stop", "stop")
        choice = Choice(index=sample.index, finish_reason=finish, logprobs=sample.logprobs or None)
        specs = {t.name: t for t in request.tools}
        if forced:
            parsed = parse_json_lenient(text)
            obj = parsed.value if parsed.ok else None
            if isinstance(obj, dict) and obj.get("name") in specs:
                args = parse_tool_arguments(obj.get("arguments"))
                error = args.error or validation_error(args.arguments, specs[obj["name"]].parameters)
                call = ToolCall(name=obj["name"], arguments=args.arguments,
                                raw_arguments=json.dumps(obj.get("arguments"), ensure_ascii=False),
                                parse_error=error, repaired=parsed.repair or args.repair)
                choice.tool_calls = [call]
                choice.finish_reason = "tool_calls" if finish == "stop" else finish
            else:
                why = parsed.error or "the output names no offered tool"
                choice.text = text
                choice.parse_error = f"forced tool call could not be read: {why}"
            return choice
        if request.tools and request.tool_choice != "none":
            calls, remaining, notes = self._parse_auto_tool_calls(text, request)
            if calls:
                for call in calls:
                    if call.arguments is not None and call.name in specs and call.parse_error is None:
                        call.parse_error = validation_error(call.arguments, specs[call.name].parameters)
                choice.tool_calls = calls
                choice.text = remaining
                choice.repairs = notes
                choice.finish_reason = "tool_calls" if finish == "stop" else finish
                return choice
        choice.text = text
        if request.output_schema is not None:
            parsed = parse_json_lenient(text)
            if not parsed.ok:
                choice.parse_error = parsed.error
            else:
                error = validation_error(parsed.value, request.output_schema.json_schema)
                if error:
                    choice.parse_error = error
                else:
                    choice.parsed = parsed.value
                if parsed.repair:
                    choice.repairs.append(parsed.repair)
        return choice

    def _logprobs(self, out: Any) -> list[TokenLogprob]:
        """vLLM's per-position ``{token_id: Logprob}`` maps -> agentflow's TokenLogprob list."""
        result: list[TokenLogprob] = []
        if not out.logprobs:
            return result
        for token_id, entry in zip(out.token_ids, out.logprobs, strict=False):
            chosen = entry.get(token_id) if hasattr(entry, "get") else None
            token = (chosen.decoded_token if chosen and chosen.decoded_token is not None
                     else self._tokenizer.decode([token_id]))
            # vLLM returns the top-k alternatives plus the sampled token; keep them all
            top = {(lp.decoded_token if lp.decoded_token is not None else str(tid)): lp.logprob
                   for tid, lp in entry.items()} if len(entry) > 1 else {}
            result.append(TokenLogprob(token=token, logprob=chosen.logprob if chosen else float("nan"), top=top))
        return result

    # --- ChatModel ----------------------------------------------------------------------------

    async def _generate(self, request: ChatRequest) -> AsyncIterator[tuple[str, Any]]:
        """Yield ("delta", (index, text)) while generating, then ("done", ChatResponse)."""
        await self.start()
        from vllm.inputs import TokensPrompt

        started = time.monotonic()
        prompt_ids = self.render_prompt(request)
        forced = self._forced_tools(request)
        params = self.sampling_params(request, len(prompt_ids), forced=forced)
        request_id = "agentflow-" + uuid.uuid4().hex
        samples: dict[int, _Sample] = {}
        cached = 0
        ttft: float | None = None
        try:
            async for out in self._engine.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id):
                if out.num_cached_tokens:
                    cached = out.num_cached_tokens
                for o in out.outputs:
                    sample = samples.setdefault(o.index, _Sample(index=o.index))
                    if o.text:
                        if ttft is None:
                            ttft = time.monotonic() - started
                        sample.text.append(o.text)
                        yield "delta", (o.index, o.text)
                    sample.tokens += len(o.token_ids)
                    sample.logprobs.extend(self._logprobs(o))
                    if o.finish_reason:
                        sample.finish = o.finish_reason
        except asyncio.CancelledError:
            await self._engine.abort(request_id)
            raise
        except (ConfigurationError, ContextLengthExceededError):
            raise
        except Exception as exc:
            raise ModelError(f"vLLM engine failed on request {request_id}: {exc!r}",
                             hint="see the vLLM log lines above; the engine may need restarting") from exc
        total = time.monotonic() - started
        ordered = [samples.get(i, _Sample(index=i, finish="error")) for i in range(request.n)]
        response = ChatResponse(
            choices=[self._choice(s, request, forced) for s in ordered],
            usage=Usage(prompt_tokens=len(prompt_ids), completion_tokens=sum(s.tokens for s in ordered),
                        cached_tokens=cached),
            latency=Latency(ttft_s=ttft if ttft is not None else total, total_s=total),
            model=self.name,
            endpoint=f"vllm-inprocess:{self.model_path}",
        )
        yield "done", response

    async def complete(self, request: ChatRequest) -> ChatResponse:
        async for kind, value in self._generate(request):
            if kind == "done":
                return value
        raise ModelError("vLLM engine produced no output", hint="retry; if it persists restart the engine")

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Text streams as generated; tool calls are emitted once parsed (they need the whole text)."""
        streams_text = not request.tools or request.tool_choice == "none"
        async for kind, value in self._generate(request):
            if kind == "delta":
                if streams_text:
                    index, text = value
                    yield TextDelta(index=index, text=text)
                continue
            response: ChatResponse = value
            for choice in response.choices:
                if not streams_text and choice.text:
                    yield TextDelta(index=choice.index, text=choice.text)
                for i, call in enumerate(choice.tool_calls):
                    yield ToolCallDelta(index=choice.index, call_index=i, id=call.id, name=call.name,
                                        arguments=call.raw_arguments)
            yield StreamDone(response=response)


__all__ = ["VllmEngineModel", "conversation", "forced_call_schema"]
