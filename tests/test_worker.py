"""Worker loop behaviour with ScriptedModel: tool use, feedback on bad output, limits, events."""

from __future__ import annotations

import asyncio

import pytest
from sample_tools import add

from agentflow.agent import TaskResult, Worker
from agentflow.errors import ServerError
from agentflow.llm.types import CallContext, Message, OutputSchema
from agentflow.runs.events import (
    EventLog,
    ModelCallEvent,
    ToolCallEvent,
    WorkerFinishedEvent,
    WorkerStepEvent,
)
from agentflow.testing import ScriptedModel, call, calls, reply
from agentflow.tools import tool


@tool
async def slow_echo(text: str, delay: float = 0.05) -> str:
    """Echo text after a delay."""
    await asyncio.sleep(delay)
    return text


async def test_multi_step_tool_use_feeds_results_back():
    model = ScriptedModel([call("add", a=2, b=3), call("add", a=5, b=10), reply("15")])
    worker = Worker("math", "adds numbers", model=model, tools=[add])
    result = await worker.run("What is 2+3+10?")
    assert isinstance(result, TaskResult)
    assert not result.failed and result.content == "15"
    assert result.model_calls == 3 and result.tool_calls == 2
    # the second request carries the first tool result, linked by call id
    second = model.requests[1].messages
    assistant = [m for m in second if m.role == "assistant"][0]
    tool_msg = [m for m in second if m.role == "tool"][0]
    assert tool_msg.tool_call_id == assistant.tool_calls[0].id
    assert tool_msg.content == "5"
    assert [s.tool_results[0].content for s in result.steps[:2]] == ["5", "15"]


async def test_parallel_tool_calls_run_concurrently():
    model = ScriptedModel([calls(call("slow_echo", text="a", delay=0.2), call("slow_echo", text="b", delay=0.2)),
                           reply("ab")])
    worker = Worker("w", model=model, tools=[slow_echo])
    log = EventLog()
    result = await worker.run("echo", sink=log)
    assert result.content == "ab"
    tool_events = log.of_type(ToolCallEvent)
    assert {e.result for e in tool_events} == {"a", "b"}
    # both tool calls finished within one step: their durations overlap rather than add up
    durations = [e.duration_s for e in tool_events]
    span = max(e.mono for e in tool_events) - min(e.mono - e.duration_s for e in tool_events)
    assert span < sum(durations)


async def test_invalid_tool_arguments_go_back_to_the_model():
    model = ScriptedModel([call("add", a="two", b=3), call("add", _raw='{"a": 1, "b": '), call("add", a=2, b=3),
                           reply("5")])
    worker = Worker("math", model=model, tools=[add])
    result = await worker.run("2+3")
    assert not result.failed and result.content == "5"
    first_feedback = model.requests[1].messages[-1]
    assert first_feedback.role == "tool" and "a" in first_feedback.content
    assert result.steps[0].tool_results[0].error_kind == "validation"
    # unparseable JSON arguments are repaired or reported, never raised
    assert result.steps[1].tool_results[0].is_error or result.steps[1].tool_results[0].content


async def test_unknown_tool_is_reported_to_the_model():
    model = ScriptedModel([call("multiply", a=2, b=3), reply("6")])
    result = await Worker("w", model=model, tools=[add]).run("2*3")
    assert result.content == "6"
    fed_back = model.requests[1].messages[-1].content
    assert "multiply" in fed_back and "add" in fed_back


async def test_empty_reply_gets_feedback_then_answer():
    model = ScriptedModel([reply(""), reply("42")])
    result = await Worker("w", model=model).run("question")
    assert result.content == "42" and not result.failed
    assert "empty" in model.requests[1].messages[-1].content


async def test_repeated_empty_replies_fail_with_reason():
    model = ScriptedModel([reply("")] * 3)
    result = await Worker("w", model=model).run("question")
    assert result.failed and "unusable" in result.reason


async def test_transport_failure_becomes_failed_result():
    model = ScriptedModel([ServerError("boom", hint="restart")])
    result = await Worker("w", model=model, tools=[add]).run("x")
    assert result.failed and "boom" in result.reason


async def test_unexpected_exception_is_contained():
    def explode(request):
        raise ValueError("bug in a user callback")

    result = await Worker("w", model=ScriptedModel(explode)).run("x")
    assert result.failed and "ValueError" in result.reason


async def test_cancellation_propagates_and_the_in_flight_call_stays_on_record():
    model = ScriptedModel([reply("late")], latency=5)
    log = EventLog()
    task = asyncio.create_task(Worker("w", model=model).run("x", sink=log))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [event] = log.of_type(ModelCallEvent)
    assert "cancelled" in event.error


async def test_step_limit_forces_a_final_answer_without_tools():
    model = ScriptedModel([call("add", a=1, b=1), call("add", a=1, b=1), reply("2")])
    result = await Worker("w", model=model, tools=[add], max_steps=2).run("x")
    assert result.content == "2" and not result.failed
    assert "step limit" in result.reason
    last = model.requests[-1]
    assert last.tools == [] and "final answer" in last.messages[-1].content


async def test_step_limit_without_answer_fails():
    model = ScriptedModel([call("add", a=1, b=1)] * 4)
    result = await Worker("w", model=model, tools=[add], max_steps=2).run("x")
    assert result.failed and "max_steps" in result.reason


async def test_output_schema_violation_is_fed_back():
    schema = OutputSchema(name="answer", json_schema={"type": "object", "properties": {"v": {"type": "integer"}}})
    model = ScriptedModel([reply("not json"), reply({"v": 3})])
    result = await Worker("w", model=model).run("x", output_schema=schema)
    assert result.parsed == {"v": 3}
    assert "JSON" in model.requests[1].messages[-1].content


async def test_events_and_attribution():
    model = ScriptedModel([call("add", a=1, b=2), reply("3")])
    log = EventLog()
    ctx = CallContext(run_id="r1", node_id="n7")
    result = await Worker("adder", model=model, tools=[add]).run("1+2", sink=log, call_context=ctx)
    assert [type(e) for e in log.events] == [ModelCallEvent, ToolCallEvent, WorkerStepEvent, ModelCallEvent,
                                            WorkerStepEvent, WorkerFinishedEvent]
    assert all(e.run_id == "r1" and e.node_id == "n7" for e in log.events)
    assert all(r.context.role == "worker" and r.context.worker == "adder" for r in model.requests)
    total = sum((e.usage.total_tokens for e in log.of_type(ModelCallEvent)), 0)
    assert total == result.usage.total_tokens > 0


async def test_samples_share_one_request_without_tools():
    model = ScriptedModel([reply("a"), reply("b"), reply("a")])
    result = await Worker("w", model=model).run("x", n=3)
    assert len(model.requests) == 1 and model.requests[0].n == 3
    assert result.samples == ["a", "b", "a"]


async def test_samples_with_tools_run_independent_trajectories():
    model = ScriptedModel(lambda req: reply("7") if any(m.role == "tool" for m in req.messages)
                          else call("add", a=3, b=4))
    result = await Worker("w", model=model, tools=[add]).run("3+4", n=3)
    assert result.samples == ["7", "7", "7"] and result.model_calls == 6


async def test_context_trimming_elides_old_tool_outputs():
    @tool
    def big() -> str:
        """Return a large blob."""
        return "x" * 4000

    model = ScriptedModel([call("big")] * 5 + [reply("done")])
    worker = Worker("w", model=model, tools=[big], context_window=3000, keep_recent_tool_outputs=1, max_steps=8)
    result = await worker.run("collect")
    assert result.content == "done"
    last_messages: list[Message] = model.requests[-1].messages
    tool_contents = [m.content for m in last_messages if m.role == "tool"]
    assert tool_contents, "recent tool output must survive"
    assert any("elided" in c for c in tool_contents) or len(tool_contents) < 5
    assert worker._estimate(last_messages) <= 3000
    assert last_messages[0].role == "system" and last_messages[1].content == "collect"


async def test_no_model_is_a_clear_failure():
    result = await Worker("w").run("x")
    assert result.failed and "model" in result.reason


async def test_first_step_tool_choice_then_auto():
    from agentflow.llm.types import NamedToolChoice

    model = ScriptedModel([call("add", a=1, b=1), reply("2")])
    await Worker("w", model=model, tools=[add]).run("x", tool_choice=NamedToolChoice(name="add"))
    assert model.requests[0].tool_choice == NamedToolChoice(name="add")
    assert model.requests[1].tool_choice == "auto"


async def test_siblings_share_the_system_prompt_and_volatile_text_comes_last():
    a = Worker("alpha", "does A", tools=[add])
    b = Worker("beta", "does B", tools=[add])
    ma, mb = a.build_messages("task one", "ctx"), b.build_messages("task two")
    assert ma[0] == mb[0]  # identical system prompt: a shared cacheable prefix with the tool list
    assert ma[1].content.index("does A") < ma[1].content.index("ctx") < ma[1].content.index("task one")
