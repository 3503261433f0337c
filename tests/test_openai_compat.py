"""OpenAICompatModel against a live fake server: request shape, response mapping, capability adaptation."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import pytest
from fake_openai_server import (
    FakeOpenAIServer,
    completion,
    drop_mid_stream,
    leaked_tool_call,
    server_error,
    text,
    tool_call,
)

from agentflow.errors import BadRequestError, ConfigurationError, EndpointUnreachableError
from agentflow.llm import UsageLedger
from agentflow.llm.base import ChatModel, collect_stream
from agentflow.llm.capabilities import CapabilityCache
from agentflow.llm.openai_compat import OpenAICompatModel, normalize_base_url, probe_endpoint
from agentflow.llm.transport import RetryPolicy
from agentflow.llm.types import (
    CallContext,
    ChatRequest,
    Message,
    NamedToolChoice,
    OutputSchema,
    StreamDone,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)

FAST = RetryPolicy(max_retries=2, backoff_initial=0.01, backoff_max=0.05, jitter=0.01, connect_retries=0)

ADD = ToolSpec(
    name="add",
    description="Add two integers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
)
SEARCH = ToolSpec(name="search", description="Search the web.",
                  parameters={"type": "object", "properties": {"q": {"type": "string", "maxLength": 50}},
                              "required": ["q"]})
ANSWER = OutputSchema(name="answer", json_schema={
    "type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
    "additionalProperties": False,
})


def make(server: FakeOpenAIServer, **kw: Any) -> OpenAICompatModel:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("retry_policy", FAST)
    return OpenAICompatModel(server.base_url, **kw)


def user(text_: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message.system("You are terse."), Message.user(text_)], **kw)


def all_keys(value: Any) -> set[str]:
    """Every dict key at any depth (to assert a field is sent nowhere)."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


# --- basics -------------------------------------------------------------------------------------


def test_base_url_normalization() -> None:
    assert normalize_base_url("http://localhost:8000") == "http://localhost:8000/v1"
    assert normalize_base_url("http://localhost:8000/v1/") == "http://localhost:8000/v1"
    assert normalize_base_url("https://api.example.com/openai/v1") == "https://api.example.com/openai/v1"
    with pytest.raises(ConfigurationError):
        normalize_base_url("localhost:8000")


def test_is_a_chat_model() -> None:
    assert isinstance(OpenAICompatModel("http://127.0.0.1:9/v1", model="m"), ChatModel)


async def test_default_model_is_the_servers_first(fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(models=["first-model", "second-model"])
    async with make(server) as model:
        response = await model.complete(user())
    assert server.requests[0]["model"] == "first-model"
    assert model.name == "first-model" and response.model == "first-model"
    assert response.endpoint == server.base_url


async def test_request_fields_are_sent(fake_openai: FakeOpenAIServer) -> None:
    async with make(fake_openai) as model:
        await model.complete(user("hello", temperature=0.2, top_p=0.9, max_tokens=33, seed=7, stop=["END"],
                                  extra_body={"top_k": 5}))
    body = fake_openai.requests[0]
    assert body["messages"] == [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello"}]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"], body["stop"], body["top_k"]) == (
        0.2, 0.9, 33, 7, ["END"], 5)
    assert "tools" not in body and "response_format" not in body and "n" not in body


async def test_response_mapping_usage_logprobs_and_n(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(completion(
        text("alpha beta"), text("gamma", finish_reason="length"), text("delta"),
        usage={"prompt_tokens": 12, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 8}},
    ))
    async with make(fake_openai) as model:
        response = await model.complete(user(n=3, logprobs=True, top_logprobs=2))
    assert fake_openai.requests[0]["n"] == 3
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert [c.text for c in response.choices] == ["alpha beta", "gamma", "delta"]
    assert [c.finish_reason for c in response.choices] == ["stop", "length", "stop"]
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.cached_tokens) == (12, 5, 8)
    logprobs = response.choices[0].logprobs
    assert logprobs is not None and [t.token for t in logprobs] == ["alpha", "beta"]
    assert logprobs[0].logprob == -0.25 and len(logprobs[0].top) == 2
    assert response.latency.total_s > 0 and response.latency.ttft_s == response.latency.total_s
    assert len(fake_openai.requests) == 1  # n samples in one request


async def test_empty_content_is_an_empty_answer_not_an_error(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(text(""), text(None))
    async with make(fake_openai) as model:
        first = await model.complete(user())
        second = await model.complete(user())
    assert first.text == "" and second.text == ""
    assert second.choices[0].text is None and second.choices[0].tool_calls == []


async def test_ledger_records_each_call_with_its_context(fake_openai: FakeOpenAIServer) -> None:
    ledger = UsageLedger()
    ctx = CallContext(run_id="run-1", node_id="n3", role="critic", worker="w")
    async with make(fake_openai, ledger=ledger) as model:
        r1 = await model.complete(user(context=ctx))
        r2 = await model.complete(user(context=CallContext(run_id="run-1", role="planner")))
    assert ledger.calls() == 2
    rec = ledger.records[0]
    assert rec.context == ctx and rec.endpoint == fake_openai.base_url and rec.model == "fake-model"
    assert rec.usage == r1.usage
    assert ledger.by("role")["planner"] == r2.usage
    assert ledger.total() == r1.usage + r2.usage


async def test_failed_calls_are_not_recorded(fake_openai: FakeOpenAIServer) -> None:
    ledger = UsageLedger()
    fake_openai.default = server_error(500)
    async with make(fake_openai, ledger=ledger) as model:
        with pytest.raises(Exception):  # noqa: B017 - which error is covered by test_transport
            await model.complete(user())
    assert ledger.calls() == 0


# --- tools -------------------------------------------------------------------------------------


async def test_auto_tools_are_sent_without_strict(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(tool_call("add", {"a": 1, "b": 2}, id="call_1"))
    async with make(fake_openai) as model:
        response = await model.complete(user(tools=[ADD, SEARCH], tool_choice="auto"))
    body = fake_openai.requests[0]
    assert body["tool_choice"] == "auto"
    assert [t["function"]["name"] for t in body["tools"]] == ["add", "search"]
    assert not any("strict" in t["function"] for t in body["tools"])
    call = response.tool_calls[0]
    assert (call.id, call.name, call.arguments, call.raw_arguments) == ("call_1", "add", {"a": 1, "b": 2},
                                                                       '{"a": 1, "b": 2}')
    assert response.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("choice", [NamedToolChoice(name="add"), "required"])
async def test_forced_calls_send_strict_tools(fake_openai: FakeOpenAIServer, choice: Any) -> None:
    fake_openai.enqueue(tool_call("add", {"a": 1, "b": 2}))
    async with make(fake_openai, forced_tool_mode="tool_choice") as model:
        response = await model.complete(user(tools=[ADD, SEARCH], tool_choice=choice))
    body = fake_openai.requests[0]
    assert all(t["function"]["strict"] is True for t in body["tools"])
    expected = {"type": "function", "function": {"name": "add"}} if choice != "required" else "required"
    assert body["tool_choice"] == expected
    assert response.tool_calls[0].arguments == {"a": 1, "b": 2}
    assert response.choices[0].repairs == []


async def test_vllm_routes_a_forced_single_tool_call_through_json_schema(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(text('{"name": "add", "arguments": {"a": 4, "b": 5}}'))
    async with make(fake_openai) as model:
        response = await model.complete(user(tools=[ADD, SEARCH], tool_choice=NamedToolChoice(name="add")))
    body = fake_openai.requests[0]
    assert "tools" not in body and "tool_choice" not in body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["name"] == {"type": "string", "const": "add"}
    assert schema["properties"]["arguments"] == ADD.parameters
    assert "`add`" in body["messages"][0]["content"]  # the tool is described to the model
    choice = response.choices[0]
    assert choice.text is None and choice.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in choice.tool_calls] == [("add", {"a": 4, "b": 5})]


async def test_routed_forced_call_cut_off_is_a_parse_error(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(text('{"name": "add", "argu', finish_reason="length"))
    async with make(fake_openai) as model:
        response = await model.complete(user(tools=[ADD], tool_choice="required"))
    call = response.tool_calls[0]
    assert call.name == "add" and call.arguments is None and call.parse_error
    assert response.choices[0].finish_reason == "length"
    assert len(fake_openai.requests) == 1  # truncation of an enforced call is not retried blindly


async def test_routing_can_be_switched_off_and_is_not_used_off_vllm(fake_openai_factory) -> None:  # noqa: ANN001
    plain = fake_openai_factory(vllm=False)
    plain.enqueue(tool_call("add", {"a": 1, "b": 1}))
    async with make(plain) as model:
        await model.complete(user(tools=[ADD], tool_choice=NamedToolChoice(name="add")))
    assert "response_format" not in plain.requests[0] and plain.requests[0]["tools"][0]["function"]["strict"]

    switched_off = fake_openai_factory()
    switched_off.enqueue(tool_call("add", {"a": 1, "b": 1}))
    async with make(switched_off, forced_tool_mode="tool_choice") as model:
        await model.complete(user(tools=[ADD], tool_choice=NamedToolChoice(name="add")))
    assert "response_format" not in switched_off.requests[0] and switched_off.requests[0]["tool_choice"]


async def test_required_among_several_tools_routes_through_an_anyof_schema(fake_openai) -> None:  # noqa: ANN001
    fake_openai.enqueue(text('{"name": "search", "arguments": {"q": "x"}}'))
    async with make(fake_openai) as model:
        response = await model.complete(user(tools=[ADD, SEARCH], tool_choice="required"))
    body = fake_openai.requests[0]
    variants = body["response_format"]["json_schema"]["schema"]["anyOf"]
    assert [v["properties"]["name"]["const"] for v in variants] == ["add", "search"]
    assert "tools" not in body
    call = response.tool_calls[0]
    assert call.name == "search" and call.arguments == {"q": "x"} and call.parse_error is None


async def test_malformed_tool_arguments_are_repaired_or_reported(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(tool_call("add", '{"a": 1, "b": 2,}'), tool_call("add", "add one and two"))
    async with make(fake_openai) as model:
        repaired = await model.complete(user(tools=[ADD]))
        broken = await model.complete(user(tools=[ADD]))
    call = repaired.tool_calls[0]
    assert call.arguments == {"a": 1, "b": 2} and call.raw_arguments == '{"a": 1, "b": 2,}' and call.repaired
    assert any("tool call add" in r for r in repaired.choices[0].repairs)
    bad = broken.tool_calls[0]
    assert bad.arguments is None and bad.raw_arguments == "add one and two"
    assert bad.parse_error and "not valid JSON" in bad.parse_error


@pytest.mark.parametrize(
    ("reply", "remaining"),
    [
        (leaked_tool_call("add", {"a": 2, "b": 3}, prefix="Sure.\n"), "Sure."),
        (leaked_tool_call("add", {"a": 2, "b": 3}, style="fenced"), None),
        (leaked_tool_call("add", {"a": 2, "b": 3}, style="bare", key="parameters"), None),
        (leaked_tool_call("add", json.dumps({"a": 2, "b": 3}), style="bare"), None),
    ],
)
async def test_tool_call_leaked_into_content_is_recovered(fake_openai: FakeOpenAIServer, reply: Any,
                                                          remaining: str | None) -> None:
    fake_openai.enqueue(reply)
    async with make(fake_openai) as model:
        response = await model.complete(user(tools=[ADD, SEARCH]))
    choice = response.choices[0]
    assert [(c.name, c.arguments) for c in choice.tool_calls] == [("add", {"a": 2, "b": 3})]
    assert choice.text == remaining
    assert choice.finish_reason == "tool_calls"
    assert choice.tool_calls[0].repaired
    assert any("recovered 1 tool call(s) [add]" in r for r in choice.repairs)


async def test_leaked_call_to_unknown_tool_or_without_tools_stays_text(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(leaked_tool_call("rm_rf", {"path": "/"}), leaked_tool_call("add", {"a": 1, "b": 1}))
    async with make(fake_openai) as model:
        unknown = await model.complete(user(tools=[ADD]))
        no_tools = await model.complete(user())
    assert unknown.tool_calls == [] and "rm_rf" in unknown.text
    assert no_tools.tool_calls == [] and "<tool_call>" in no_tools.text


# --- structured output ----------------------------------------------------------------------------


async def test_json_schema_request_shape_and_parsed_output(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(text('{"answer": 42}'))
    async with make(fake_openai) as model:
        response = await model.complete(user(output_schema=ANSWER))
    body = fake_openai.requests[0]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": ANSWER.json_schema, "strict": True}}
    assert not any(k.startswith("guided") for k in all_keys(body))
    assert response.choices[0].parsed == {"answer": 42} and response.choices[0].parse_error is None


async def test_vllm_structured_outputs_transport(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(text('{"answer": 1}'))
    async with make(fake_openai, schema_transport="structured_outputs") as model:
        response = await model.complete(user(output_schema=ANSWER))
    body = fake_openai.requests[0]
    assert body["structured_outputs"] == {"json": ANSWER.json_schema}
    assert "response_format" not in body and not any(k.startswith("guided") for k in all_keys(body))
    assert response.choices[0].parsed == {"answer": 1}


async def test_near_json_output_is_repaired_and_noted(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(text('```json\n{"answer": 7,}\n```'))
    async with make(fake_openai) as model:
        response = await model.complete(user(output_schema=ANSWER))
    choice = response.choices[0]
    assert choice.parsed == {"answer": 7}
    assert any(r.startswith("structured output:") for r in choice.repairs)


async def test_schema_violation_from_a_server_that_ignored_the_schema_gets_feedback(
        fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(text('{"answer": "forty-two"}'), text('{"answer": 42}'))
    async with make(fake_openai) as model:
        response = await model.complete(user(output_schema=ANSWER))
    choice = response.choices[0]
    assert choice.parsed == {"answer": 42}
    assert any("fixed after 1 feedback round" in r for r in choice.repairs)
    feedback = fake_openai.requests[1]["messages"]
    assert feedback[-2] == {"role": "assistant", "content": '{"answer": "forty-two"}'}
    assert "$.answer" in feedback[-1]["content"] and "not of type 'integer'" in feedback[-1]["content"]
    assert response.attempts == 2


async def test_truncated_structured_output_is_a_parse_error_not_an_exception(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(text('{"answer": ', finish_reason="length"))
    async with make(fake_openai) as model:
        response = await model.complete(user(output_schema=ANSWER))
    choice = response.choices[0]
    assert choice.parsed is None and choice.parse_error
    assert len(fake_openai.requests) == 1


async def test_empty_structured_output_is_a_parse_error(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(text("", finish_reason="length"))
    async with make(fake_openai) as model:
        response = await model.complete(user(output_schema=ANSWER))
    assert response.choices[0].parse_error and "empty" in response.choices[0].parse_error


# --- adapting to what a server supports ----------------------------------------------------------


async def test_rejected_json_schema_falls_back_to_prompt_validation_and_feedback(
        fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(vllm=False)
    server.reject_json_schema()
    server.enqueue(text("The answer is 42."), text('{"answer": 42}'), text('{"answer": 5}'))
    async with make(server) as model:
        response = await model.complete(user(output_schema=ANSWER))
        again = await model.complete(user(output_schema=ANSWER))
    choice = response.choices[0]
    assert choice.parsed == {"answer": 42}
    assert any("json_schema output is not supported by the server" in r for r in choice.repairs)
    assert any("fixed after 1 feedback round" in r for r in choice.repairs)
    assert model.capabilities.json_schema.available is False
    # the first request was refused, a targeted probe confirmed why, the next ones carry the schema in the prompt
    assert len(server.probe_requests) == 1 and server.probe_requests[0].probe == "json_schema"
    sent = server.requests
    assert "response_format" in sent[0]
    assert all("response_format" not in body for body in sent[1:])
    assert json.dumps(ANSWER.json_schema, separators=(",", ":")) in sent[1]["messages"][0]["content"]
    assert "not valid JSON" in sent[2]["messages"][-1]["content"]
    assert again.choices[0].parsed == {"answer": 5}
    assert len(sent) == 4  # no second rejection for the second call


async def test_output_still_invalid_after_feedback_rounds_keeps_the_error(fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(vllm=False)
    server.reject_json_schema()
    server.default = text("no JSON here")
    async with make(server, repair_attempts=2) as model:
        response = await model.complete(user(output_schema=ANSWER))
    choice = response.choices[0]
    assert choice.parsed is None and choice.parse_error
    assert any("still invalid after 2 feedback round(s)" in r for r in choice.repairs)
    assert len(server.requests) == 1 + 1 + 2  # rejected, fallback, two feedback rounds


async def test_unsupported_named_tool_choice_is_requested_in_prompt_and_validated(
        fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(vllm=False)
    server.reject_tool_choice("named")
    server.enqueue(text("I think the sum is 3."), leaked_tool_call("add", {"a": 1, "b": 2}))
    async with make(server) as model:
        response = await model.complete(user(tools=[ADD, SEARCH], tool_choice=NamedToolChoice(name="add")))
    choice = response.choices[0]
    assert [(c.name, c.arguments) for c in choice.tool_calls] == [("add", {"a": 1, "b": 2})]
    assert any("named tool_choice is not supported" in r for r in choice.repairs)
    assert any("fixed after 1 feedback round" in r for r in choice.repairs)
    fallback = server.requests[1]
    assert fallback["tool_choice"] == "auto"
    assert "You must call the function `add`" in fallback["messages"][0]["content"]
    assert "you did not call a function" in server.requests[2]["messages"][-1]["content"]


async def test_unsupported_strict_tools_validate_arguments_client_side(fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(vllm=False)
    server.reject_strict_tools()
    server.enqueue(tool_call("add", {"a": "one", "b": 2}), tool_call("add", {"a": 1, "b": 2}))
    async with make(server) as model:
        response = await model.complete(user(tools=[ADD], tool_choice="required"))
    assert response.tool_calls[0].arguments == {"a": 1, "b": 2}
    assert model.capabilities.strict_tools.available is False
    assert not any(t["function"].get("strict") for t in server.requests[1]["tools"])
    assert "do not conform to its schema" in server.requests[2]["messages"][-1]["content"]
    assert any("strict tool arguments are not supported" in r for r in response.choices[0].repairs)


async def test_server_without_any_tool_support_gets_tools_in_the_prompt(fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(vllm=False)
    server.reject_field("tools", "tools are not supported by this server")
    server.enqueue(leaked_tool_call("search", {"q": "vllm"}))
    async with make(server) as model:
        history = [Message.user("find it"),
                   Message.assistant(tool_calls=[ToolCall(id="c1", name="search", arguments={"q": "old"})]),
                   Message.tool("c1", "nothing found", name="search")]
        response = await model.complete(ChatRequest(messages=history, tools=[SEARCH]))
    assert response.tool_calls[0].arguments == {"q": "vllm"}
    body = server.requests[-1]
    assert "tools" not in body
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]  # tool turns rendered as text for this server
    assert "<tool_call>" in body["messages"][2]["content"] and "<tool_response" in body["messages"][3]["content"]


async def test_rejected_optional_field_is_dropped_and_remembered(fake_openai: FakeOpenAIServer,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    fake_openai.reject_field("seed")
    caplog.set_level(logging.WARNING)
    async with make(fake_openai) as model:
        first = await model.complete(user(seed=3))
        second = await model.complete(user(seed=4))
    assert first.text == "OK" and second.text == "OK"
    assert [("seed" in body) for body in fake_openai.requests] == [True, False, False]
    assert "seed" in model.capabilities.rejected_fields
    assert "seed" in caplog.text
    assert first.attempts == 2 and second.attempts == 1


async def test_a_refused_value_is_dropped_for_that_request_only(fake_openai: FakeOpenAIServer) -> None:
    # vLLM's wording when top_logprobs exceeds its maximum: the field is fine, the value is not
    fake_openai.reject_when(lambda b: (b.get("top_logprobs") or 0) > 20,
                            "Requested sample logprobs of 50, which is greater than max allowed: 20 "
                            "(parameter=logprobs, value=50)", param="logprobs")
    async with make(fake_openai) as model:
        too_many = await model.complete(user(logprobs=True, top_logprobs=50))
        fine = await model.complete(user(logprobs=True, top_logprobs=3))
    assert too_many.choices[0].logprobs is None and too_many.attempts == 2
    assert fine.choices[0].logprobs is not None and len(fine.choices[0].logprobs[0].top) == 3
    assert model.capabilities.rejected_fields == []
    assert [b.get("top_logprobs") for b in fake_openai.requests] == [50, None, 3]


def test_blamed_fields_understand_vllm_params() -> None:
    from agentflow.llm.openai_compat import _blamed_fields

    body = {"model": "m", "messages": [], "seed": "x", "top_logprobs": 3, "n": 2}
    assert _blamed_fields("1 validation error: int_parsing", "body.seed", body) == ["seed"]
    assert _blamed_fields("Unrecognized request argument supplied: top_logprobs", None, body) == ["top_logprobs"]
    assert _blamed_fields("n must be 1 when using greedy sampling", None, body) == []


async def test_max_tokens_is_renamed_when_the_server_asks(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.reject_when(lambda b: "max_tokens" in b, "Unsupported parameter: 'max_tokens' is not supported with "
                            "this model. Use 'max_completion_tokens' instead.", param="max_tokens")
    async with make(fake_openai) as model:
        await model.complete(user(max_tokens=10))
    assert fake_openai.requests[-1]["max_completion_tokens"] == 10 and "max_tokens" not in fake_openai.requests[-1]


async def test_rejected_n_is_split_into_single_requests_with_distinct_seeds(fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(vllm=False)
    server.reject_n()
    async with make(server) as model:
        response = await model.complete(user(n=3, seed=10))
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert model.capabilities.n_samples.available is False
    singles = server.requests[1:]
    assert len(singles) == 3 and all("n" not in b for b in singles)
    assert sorted(b["seed"] for b in singles) == [10, 11, 12]


async def test_server_that_ignores_n_gets_the_missing_samples(fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(ignore_n=True)
    async with make(server) as model:
        response = await model.complete(user(n=3))
    assert len(response.choices) == 3 and [c.index for c in response.choices] == [0, 1, 2]
    assert model.capabilities.n_samples.available is False


async def test_a_genuinely_bad_request_is_raised_after_probing(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.reject_when(lambda b: b["messages"][-1]["content"] == "poison", "prompt rejected by policy")
    async with make(fake_openai) as model:
        with pytest.raises(BadRequestError) as info:
            await model.complete(user("poison", output_schema=ANSWER))
    assert "prompt rejected by policy" in str(info.value)
    # json_schema was probed (and works), then the per-request downgrades were tried, then it gave up
    assert model.capabilities.json_schema.available is True


# --- streaming ----------------------------------------------------------------------------------


async def test_stream_yields_text_deltas_and_usage(fake_openai: FakeOpenAIServer) -> None:
    ledger = UsageLedger()
    fake_openai.enqueue(completion(text("streaming works fine"), chunk_delay=0.01))
    async with make(fake_openai, ledger=ledger) as model:
        events = [e async for e in model.stream(user(context=CallContext(node_id="s1")))]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 2 and "".join(d.text for d in deltas) == "streaming works fine"
    done = events[-1]
    assert isinstance(done, StreamDone)
    response = done.response
    assert response.text == "streaming works fine" and response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert response.latency.ttft_s is not None and 0 < response.latency.ttft_s < response.latency.total_s
    body = fake_openai.requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert ledger.records[0].context.node_id == "s1"


async def test_stream_tool_call_deltas_are_aggregated(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(tool_call("search", {"q": "streaming tool calls"}, id="call_s"))
    async with make(fake_openai) as model:
        events = [e async for e in model.stream(user(tools=[SEARCH]))]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].id == "call_s" and deltas[0].name == "search"
    assert "".join(d.arguments for d in deltas) == json.dumps({"q": "streaming tool calls"})
    response = events[-1].response  # type: ignore[union-attr]
    assert response.tool_calls[0].arguments == {"q": "streaming tool calls"}
    assert response.choices[0].finish_reason == "tool_calls"


async def test_stream_retries_failures_before_the_first_chunk(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(server_error(503), text("second"))
    async with make(fake_openai) as model:
        response = await collect_stream(model.stream(user()))
    assert response.text == "second" and response.attempts == 2


async def test_stream_dropped_midway_raises_after_partial_output(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(drop_mid_stream())
    seen: list[Any] = []
    async with make(fake_openai) as model:
        with pytest.raises(EndpointUnreachableError):
            async for event in model.stream(user()):
                seen.append(event)
    assert seen and not any(isinstance(e, StreamDone) for e in seen)


async def test_stream_of_a_fallback_request_is_validated_then_replayed(fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(vllm=False)
    server.reject_json_schema()
    server.enqueue(text("nope"), text('{"answer": 3}'))
    async with make(server) as model:
        events = [e async for e in model.stream(user(output_schema=ANSWER))]
    assert isinstance(events[-1], StreamDone) and events[-1].response.choices[0].parsed == {"answer": 3}
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == '{"answer": 3}'


async def test_stream_n_samples(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(completion(text("one"), text("two")))
    async with make(fake_openai) as model:
        response = await collect_stream(model.stream(user(n=2)))
    assert [c.text for c in response.choices] == ["one", "two"]


# --- probing --------------------------------------------------------------------------------------


async def test_probe_reports_every_capability_of_a_vllm_server(fake_openai: FakeOpenAIServer) -> None:
    async with make(fake_openai) as model:
        caps = await model.probe()
    assert caps.is_vllm and caps.version == "0.32.0" and caps.max_model_len == 32768
    assert caps.model_ids == ["fake-model"]
    rows = {row.key: row for row in caps.table()}
    assert set(rows) == {"server", "models", "max_model_len", "tool_choice_auto", "tool_choice_required",
                         "tool_choice_named", "strict_tools", "json_schema", "n_samples", "logprobs", "streaming",
                         "metrics"}
    assert all(row.available is True for row in rows.values()), rows
    assert rows["server"].detail == "vLLM 0.32.0"
    # probes are tiny and marked
    assert all(r.body is None or r.body.get("max_tokens") == 1 for r in fake_openai.probe_requests)
    assert fake_openai.requests == []


async def test_probe_reports_what_a_limited_server_lacks(fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(vllm=False, metrics=False)
    server.reject_strict_tools("strict is not supported")
    server.reject_tool_choice("required")
    server.reject_n()
    caps = await probe_endpoint(server.base_url)
    assert not caps.is_vllm and caps.max_model_len is None
    assert caps.strict_tools.available is False and "strict is not supported" in caps.strict_tools.detail
    assert caps.tool_choice_required.available is False
    assert caps.n_samples.available is False and "HTTP 400" in caps.n_samples.detail
    assert caps.metrics.available is False
    assert caps.tool_choice_auto.available and caps.tool_choice_named.available and caps.json_schema.available
    assert caps.table()[0].detail == "OpenAI-compatible (not vLLM)"


async def test_probe_endpoint_raises_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EndpointUnreachableError):
        await probe_endpoint(f"http://127.0.0.1:{port}")


async def test_capability_cache_is_shared_between_models(fake_openai: FakeOpenAIServer) -> None:
    cache = CapabilityCache()
    fake_openai.reject_field("seed")
    async with make(fake_openai, capability_cache=cache) as first:
        await first.complete(user(seed=1))
    async with make(fake_openai, capability_cache=cache) as second:
        await second.complete(user(seed=1))
    gets = [r.path for r in fake_openai.log if r.method == "GET"]
    assert gets.count("/v1/models") == 1
    assert [("seed" in b) for b in fake_openai.requests] == [True, False, False]


def test_one_model_works_across_event_loops(fake_openai: FakeOpenAIServer) -> None:
    model = make(fake_openai)
    first = asyncio.run(model.complete(user()))
    second = asyncio.run(model.complete(user()))
    assert first.text == second.text == "OK"


async def test_stream_without_stream_options_support_still_streams(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.reject_field("stream_options")
    fake_openai.enqueue(text("no usage chunk here"), text("again"))
    async with make(fake_openai) as model:
        events = [e async for e in model.stream(user())]
        second = await collect_stream(model.stream(user()))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "no usage chunk here"
    assert "stream_options" in model.capabilities.rejected_fields
    assert second.text == "again"
    assert [("stream_options" in b) for b in fake_openai.requests] == [True, False, False]


# --- more adaptation ----------------------------------------------------------------------------


async def test_vllm_rejecting_the_routed_call_schema_falls_back_to_strict_tool_choice(
        fake_openai: FakeOpenAIServer) -> None:
    # e.g. a structured-output backend that cannot compile "const": the probe schema passes, this one does not
    fake_openai.reject_when(lambda b: '"const"' in json.dumps(b.get("response_format") or {}),
                            "The provided JSON schema contains features not supported by xgrammar.")
    fake_openai.enqueue(tool_call("add", {"a": 2, "b": 2}))
    async with make(fake_openai) as model:
        response = await model.complete(user(tools=[ADD], tool_choice=NamedToolChoice(name="add")))
    assert response.tool_calls[0].arguments == {"a": 2, "b": 2}
    final = fake_openai.requests[-1]
    assert final["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert final["tools"][0]["function"]["strict"] is True and "response_format" not in final
    assert model.capabilities.json_schema.available is True


async def test_rejected_logprobs_are_dropped_not_fatal(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.reject_field("logprobs", "logprobs is not supported")
    async with make(fake_openai) as model:
        response = await model.complete(user(logprobs=True, top_logprobs=3))
        await model.complete(user(logprobs=True, top_logprobs=3))
    assert response.text == "OK" and response.choices[0].logprobs is None
    assert model.capabilities.logprobs.available is False
    assert all("logprobs" not in b and "top_logprobs" not in b for b in fake_openai.requests[1:])


async def test_server_without_model_list(fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_openai.models_listed = False
    async with make(fake_openai, model="fake-model") as named:
        assert (await named.complete(user())).text == "OK"
    async with make(fake_openai) as unnamed:
        with pytest.raises(ConfigurationError) as info:
            await unnamed.complete(user())
    assert "model=" in str(info.value)


async def test_random_faults_are_absorbed_by_retries(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.fail_randomly(0.25, seed=7)
    policy = RetryPolicy(max_retries=6, backoff_initial=0.005, backoff_max=0.02, jitter=0.005)
    async with make(fake_openai, retry_policy=policy) as model:
        responses = await asyncio.gather(*(model.complete(user(f"q{i}")) for i in range(24)))
    assert all(r.text == "OK" for r in responses)
    assert fake_openai.fault_count > 0
    assert sum(r.attempts for r in responses) == len(fake_openai.requests) == 24 + fake_openai.fault_count


def test_random_faults_are_reproducible_by_seed() -> None:
    counts = []
    for _ in range(2):
        server = FakeOpenAIServer().fail_randomly(0.25, seed=3)
        with server:
            model = OpenAICompatModel(server.base_url, retry_policy=RetryPolicy(max_retries=0))

            async def run(m: OpenAICompatModel = model) -> list[bool]:
                outcomes = []
                for _ in range(20):
                    try:
                        await m.complete(user())
                        outcomes.append(True)
                    except Exception:  # the injected faults
                        outcomes.append(False)
                await m.aclose()
                return outcomes

            counts.append(asyncio.run(run()))
    assert counts[0] == counts[1] and 0 < counts[0].count(False) < 20
