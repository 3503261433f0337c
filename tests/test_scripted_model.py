"""ScriptedModel: the deterministic backend users write their own tests with."""

from __future__ import annotations

import asyncio

import pytest

from agentflow.errors import ScriptExhaustedError, ServerError
from agentflow.llm import ChatRequest, Message, OutputSchema, StreamDone, TextDelta, collect_stream
from agentflow.llm.types import CallContext
from agentflow.testing import ScriptedModel, by_role, call, reply


def req(text: str = "hi", **kw) -> ChatRequest:
    return ChatRequest(messages=[Message.user(text)], **kw)


async def test_list_script_in_order_and_exhaustion_is_explicit():
    model = ScriptedModel(["one", reply("two")])
    assert (await model.complete(req())).text == "one"
    assert (await model.complete(req())).text == "two"
    with pytest.raises(ScriptExhaustedError, match="exhausted after 2"):
        await model.complete(req())


async def test_function_script_and_recorded_requests():
    model = ScriptedModel(lambda r: reply(r.messages[-1].content.upper()))
    assert (await model.complete(req("abc"))).text == "ABC"
    assert model.requests[0].messages[-1].content == "abc"
    assert model.calls[0].ended >= model.calls[0].started


async def test_latency_overlaps_for_concurrent_calls():
    model = ScriptedModel(lambda r: "ok", latency=0.1)
    await asyncio.gather(*[model.complete(req()) for _ in range(5)])
    assert model.max_in_flight == 5
    starts = sorted(c.started for c in model.calls)
    ends = sorted(c.ended for c in model.calls)
    assert starts[-1] < ends[0]  # every call started before the first one finished


async def test_injected_failures_then_success():
    model = ScriptedModel(["fine"], fail_first=2)
    for _ in range(2):
        with pytest.raises(ServerError):
            await model.complete(req())
    assert (await model.complete(req())).text == "fine"
    assert [c.error is not None for c in model.calls] == [True, True, False]


async def test_exception_items_are_raised():
    model = ScriptedModel([ServerError("down")])
    with pytest.raises(ServerError, match="down"):
        await model.complete(req())


async def test_by_role_routes_on_context_schema_and_system_prompt():
    model = ScriptedModel(by_role(planner=["plan"], critic=lambda r: "verdict", summarizer=["sum"], default=["other"],
                                   match_system_prompt=True))
    assert (await model.complete(req(context=CallContext(role="planner")))).text == "plan"
    assert (await model.complete(req(output_schema=OutputSchema(name="critic", json_schema={})))).text == "verdict"
    sys_req = ChatRequest(messages=[Message.system("You are the SUMMARIZER."), Message.user("x")])
    assert (await model.complete(sys_req)).text == "sum"
    assert (await model.complete(req())).text == "other"


async def test_n_choices_consume_n_items_and_tool_calls():
    model = ScriptedModel(["a", "b", call("add", a=1, b=2)])
    resp = await model.complete(req(n=3))
    assert [c.text for c in resp.choices[:2]] == ["a", "b"]
    assert resp.choices[2].tool_calls[0].arguments == {"a": 1, "b": 2}
    assert resp.choices[2].finish_reason == "tool_calls"
    assert resp.usage.completion_tokens > 0


async def test_structured_output_and_logprobs():
    model = ScriptedModel([reply({"ok": True}, logprob=-0.1)])
    resp = await model.complete(req(output_schema=OutputSchema(json_schema={"type": "object"}), logprobs=True))
    assert resp.first.parsed == {"ok": True}
    assert resp.first.logprobs and resp.first.logprobs[0].logprob == -0.1


async def test_stream_yields_deltas_then_done():
    model = ScriptedModel(["a fairly long answer text"])
    events = [e async for e in model.stream(req())]
    assert isinstance(events[-1], StreamDone)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "a fairly long answer text"
    model2 = ScriptedModel(["x"])
    assert (await collect_stream(model2.stream(req()))).text == "x"
