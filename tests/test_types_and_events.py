"""Everything crossing a module boundary round-trips through JSON without loss."""

from __future__ import annotations

from agentflow.llm.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    Message,
    NamedToolChoice,
    ToolCall,
    ToolSpec,
    Usage,
)
from agentflow.llm.usage import UsageLedger
from agentflow.runs.events import ModelCallEvent, ToolCallEvent, parse_event


def test_request_roundtrip_with_tool_messages():
    call = ToolCall(name="add", arguments={"a": 1})
    request = ChatRequest(
        messages=[Message.system("s"), Message.user("u"), Message.assistant(None, [call]),
                  Message.tool(call.id, "1", name="add")],
        tools=[ToolSpec(name="add", parameters={"type": "object", "properties": {"a": {"type": "integer"}}})],
        tool_choice=NamedToolChoice(name="add"),
    )
    again = ChatRequest.model_validate_json(request.model_dump_json())
    assert again == request
    assert again.forced_tool == "add"
    assert call.raw_arguments == '{"a": 1}'
    wire = again.messages[2].to_openai()
    assert wire["tool_calls"][0]["function"] == {"name": "add", "arguments": '{"a": 1}'}
    assert again.messages[3].to_openai()["tool_call_id"] == call.id
    assert again.tools[0].to_openai(strict=True)["function"]["strict"] is True


def test_events_parse_back_to_their_class():
    events = [ModelCallEvent(run_id="r", usage=Usage(prompt_tokens=3)), ToolCallEvent(tool="add", result="3")]
    back = [parse_event(e.model_dump(mode="json")) for e in events]
    assert [type(e) for e in back] == [ModelCallEvent, ToolCallEvent]
    assert back == events


def test_ledger_attribution():
    ledger = UsageLedger()
    seen = []
    ledger.subscribe(seen.append)
    for node, role, tokens in [("a", "worker", 10), ("a", "critic", 2), ("b", "worker", 5)]:
        req = ChatRequest(messages=[Message.user("x")], context={"run_id": "r", "node_id": node, "role": role})
        ledger.record(req, ChatResponse(choices=[Choice(text="y")], usage=Usage(prompt_tokens=tokens), model="m"))
    assert ledger.total().prompt_tokens == 17
    assert ledger.by("node_id")["a"].prompt_tokens == 12
    assert ledger.by("role")["critic"].prompt_tokens == 2
    assert len(seen) == 3
