"""agentflow against a real vLLM server serving the tiny random model.

The model writes random text, so every assertion is about structure: choices, usage, streamed
events, schema-valid tool arguments and JSON, metrics. Test tools have bounded parameters (enums,
integer ranges, maxLength): with random weights a free-text string only ends by chance.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import jsonschema
import pytest
from openai import AsyncOpenAI

from agentflow.llm.metrics import AimdLimiter, MetricsAwareModel, PrefixCacheProbe, fetch_metrics
from agentflow.llm.openai_compat import OpenAICompatModel, probe_endpoint
from agentflow.llm.types import (
    ChatRequest,
    Message,
    NamedToolChoice,
    OutputSchema,
    StreamDone,
    TextDelta,
    ToolSpec,
)

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]

LOOKUP = ToolSpec(
    name="lookup_weather",
    description="Look up the weather forecast for a city.",
    parameters={
        "type": "object",
        "properties": {
            "city": {"type": "string", "enum": ["paris", "rome", "oslo"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    },
)
CONVERT = ToolSpec(
    name="convert_units",
    description="Convert a quantity between units.",
    parameters={
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["km", "mi"]},
            "value": {"type": "integer", "minimum": 0, "maximum": 1000},
            "note": {"type": "string", "maxLength": 8},
        },
        "required": ["unit", "value"],
        "additionalProperties": False,
    },
)
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["yes", "no", "unsure"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "label": {"type": "string", "maxLength": 12},
    },
    "required": ["verdict", "score", "label"],
    "additionalProperties": False,
}
SYSTEM = ("You are the weather desk of a travel agency. Answer briefly. Use the tools when a forecast or a "
          "unit conversion is needed; never invent figures.")


def _messages(user: str = "Will it rain in Paris this week?") -> list[Message]:
    return [Message.system(SYSTEM), Message.user(user)]


@pytest.fixture
async def model(tiny_server):
    async with OpenAICompatModel(tiny_server.base_url, tiny_server.model, timeout=120) as m:
        yield m


async def test_health_and_models(tiny_server) -> None:
    root = tiny_server.base_url.removesuffix("/v1")
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(root + "/health")).status_code == 200
        models = (await client.get(tiny_server.base_url + "/models")).json()["data"]
    assert [m["id"] for m in models] == ["agentflow-tiny"]
    assert models[0]["max_model_len"] == 4096


async def test_every_capability_is_available(tiny_server) -> None:
    """What `agentflow doctor` shows after `agentflow serve --tiny`."""
    caps = await probe_endpoint(tiny_server.base_url)
    rows = {row.key: row for row in caps.table()}
    assert caps.is_vllm
    for key in ("tool_choice_auto", "tool_choice_required", "tool_choice_named", "strict_tools", "json_schema",
                "n_samples", "logprobs", "streaming", "metrics"):
        assert rows[key].available is True, f"{key}: {rows[key].detail}"


async def test_chat(model) -> None:
    resp = await model.complete(ChatRequest(messages=_messages(), max_tokens=16, seed=0))
    assert len(resp.choices) == 1
    choice = resp.first
    assert choice.finish_reason in ("stop", "length") and not choice.tool_calls
    assert resp.usage.prompt_tokens > 10 and 0 < resp.usage.completion_tokens <= 16
    assert resp.model == "agentflow-tiny" and resp.latency.total_s > 0


async def test_streaming(model) -> None:
    events = [e async for e in model.stream(ChatRequest(messages=_messages(), max_tokens=12, seed=1))]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert isinstance(events[-1], StreamDone) and sum(isinstance(e, StreamDone) for e in events) == 1
    final = events[-1].response
    assert len(deltas) >= 2, "vLLM should stream token by token"
    assert "".join(d.text for d in deltas) == final.text
    assert final.usage.completion_tokens > 0 and final.usage.prompt_tokens > 0
    assert final.latency.ttft_s is not None and final.latency.ttft_s <= final.latency.total_s


async def test_n_samples_share_one_request(model) -> None:
    resp = await model.complete(ChatRequest(messages=_messages(), n=4, max_tokens=8, seed=2, temperature=1.0))
    assert [c.index for c in resp.choices] == [0, 1, 2, 3]
    assert resp.usage.completion_tokens >= 4  # every sample generated
    assert len({c.text for c in resp.choices}) > 1, "independent samples should differ"


async def test_logprobs(model) -> None:
    resp = await model.complete(ChatRequest(messages=_messages(), max_tokens=6, logprobs=True, top_logprobs=3,
                                            seed=3))
    lps = resp.first.logprobs
    assert lps is not None and len(lps) == resp.usage.completion_tokens
    for lp in lps:
        assert lp.logprob <= 0 and len(lp.top) >= 3
        assert all(v <= 0 for v in lp.top.values())


@pytest.mark.parametrize("choice", ["required", "named"])
async def test_forced_tool_calls_have_schema_valid_arguments(model, choice) -> None:
    """A call forced to one tool (named, or `required` with one tool offered) is always complete
    and schema-valid: on vLLM agentflow sends it as json_schema output."""
    tool_choice, tools = (("required", [CONVERT]) if choice == "required"
                          else (NamedToolChoice(name="convert_units"), [LOOKUP, CONVERT]))
    for seed in range(4):
        resp = await model.complete(ChatRequest(messages=_messages(), tools=tools, tool_choice=tool_choice,
                                                max_tokens=200, seed=seed))
        calls = resp.first.tool_calls
        assert len(calls) == 1, f"seed {seed}: {resp.first.finish_reason}, {resp.first.text!r}"
        call = calls[0]
        assert call.name == "convert_units"
        assert call.parse_error is None and call.arguments is not None, call
        jsonschema.validate(call.arguments, CONVERT.parameters)


async def test_required_among_several_tools(model) -> None:
    """`required` with several tools goes through vLLM's tool-call grammar, which admits unbounded
    whitespace (DESIGN.md): complete calls validate; a call cut off at max_tokens is flagged,
    never passed on as valid."""
    tools = {t.name: t for t in (LOOKUP, CONVERT)}
    complete = 0
    for seed in range(4):
        resp = await model.complete(ChatRequest(messages=_messages(), tools=list(tools.values()),
                                                tool_choice="required", max_tokens=200, seed=seed))
        choice = resp.first
        if not choice.tool_calls:  # cut off before the call's name was complete
            assert choice.finish_reason == "length", f"seed {seed}: no tool call ({choice.text!r})"
        for call in choice.tool_calls:
            assert call.name in tools
            if call.parse_error is None:
                complete += 1
                jsonschema.validate(call.arguments, tools[call.name].parameters)
            else:
                assert call.arguments is None and choice.finish_reason == "length", call
    assert complete >= 2


async def test_server_side_forced_tools_with_raw_client(tiny_server) -> None:
    """vLLM itself (no agentflow adaptation): strict named calls are schema-valid; `required`
    yields valid calls whenever it finishes (DESIGN.md: its grammar admits whitespace)."""
    client = AsyncOpenAI(base_url=tiny_server.base_url, api_key="EMPTY")
    tool = LOOKUP.to_openai(strict=True)
    msgs = [m.to_openai() for m in _messages()]
    finished = 0
    for seed in range(4):
        named = await client.chat.completions.create(
            model=tiny_server.model, messages=msgs, tools=[tool], max_tokens=200, seed=seed,
            tool_choice={"type": "function", "function": {"name": "lookup_weather"}})
        call = named.choices[0].message.tool_calls[0]
        jsonschema.validate(json.loads(call.function.arguments), LOOKUP.parameters)
        required = await client.chat.completions.create(
            model=tiny_server.model, messages=msgs, tools=[tool], max_tokens=200, seed=seed, tool_choice="required")
        for call in required.choices[0].message.tool_calls or []:
            finished += 1
            jsonschema.validate(json.loads(call.function.arguments), LOOKUP.parameters)
    await client.close()
    assert finished >= 2


async def test_json_schema_output(model) -> None:
    schema = OutputSchema(name="verdict", json_schema=ANSWER_SCHEMA)
    for seed in range(3):
        resp = await model.complete(ChatRequest(messages=_messages(), output_schema=schema, max_tokens=80,
                                                seed=seed))
        choice = resp.first
        assert choice.parse_error is None, choice.text
        jsonschema.validate(choice.parsed, ANSWER_SCHEMA)


async def test_usage_and_prefix_cache_figures_from_metrics(model, tiny_server) -> None:
    """Requests sharing system + tool text hit the prefix cache; /metrics and per-request usage agree."""
    before = await fetch_metrics(tiny_server.base_url)
    async with PrefixCacheProbe(tiny_server.base_url) as probe:
        first = await model.complete(ChatRequest(messages=_messages("Weather in Rome?"), tools=[LOOKUP, CONVERT],
                                                 max_tokens=4, seed=5))
        responses = await asyncio.gather(*[
            model.complete(ChatRequest(messages=_messages(f"Weather in Oslo on day {i}?"),
                                       tools=[LOOKUP, CONVERT], max_tokens=4, seed=i))
            for i in range(4)])
    after = await fetch_metrics(tiny_server.base_url)
    prompt = first.usage.prompt_tokens + sum(r.usage.prompt_tokens for r in responses)
    generated = first.usage.completion_tokens + sum(r.usage.completion_tokens for r in responses)
    assert after.prompt_tokens - before.prompt_tokens >= prompt
    assert after.generation_tokens - before.generation_tokens >= generated
    delta = probe.delta
    assert delta.prefix_cache_queries >= prompt
    assert delta.prefix_cache_hit_rate is not None and delta.prefix_cache_hit_rate > 0.5
    # the shared prefix (system text + tool signatures, > 200 tokens) is served from cache
    assert all(r.usage.cached_tokens >= 128 for r in responses), [r.usage for r in responses]
    assert after.running is not None and after.waiting is not None and after.kv_cache_usage is not None


async def test_metrics_aware_model_keeps_the_server_busy(tiny_server) -> None:
    limiter = AimdLimiter(initial=2, max_limit=16)
    async with OpenAICompatModel(tiny_server.base_url, tiny_server.model, timeout=120) as base:
        async with MetricsAwareModel(base, tiny_server.base_url, limiter=limiter, poll_interval_s=0.05) as m:
            requests = [ChatRequest(messages=_messages(f"Question {i}"), max_tokens=24, seed=i) for i in range(24)]
            responses = await asyncio.gather(*[m.complete(r) for r in requests])
    assert all(r.usage.completion_tokens > 0 for r in responses)
    assert limiter.history, "the poller never observed /metrics"
    assert limiter.peak_in_flight > 2, "the limit never grew although the server had no queue"
    assert limiter.in_flight == 0
