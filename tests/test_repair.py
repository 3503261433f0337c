"""Output repair: near-JSON and tool calls leaked into content are recovered, and said so."""

from __future__ import annotations

import json

import pytest

from agentflow.llm.repair import (
    extract_leaked_tool_calls,
    parse_json_lenient,
    parse_tool_arguments,
    render_tool_calls_as_text,
)
from agentflow.llm.schema_check import validation_error
from agentflow.llm.types import ToolCall

TOOLS = {"add", "search"}


# --- near-JSON -----------------------------------------------------------------------------------


def test_valid_json_is_not_marked_repaired() -> None:
    parsed = parse_json_lenient('{"a": 1}')
    assert parsed.ok and parsed.value == {"a": 1} and parsed.repair is None


@pytest.mark.parametrize(
    ("text", "value", "note"),
    [
        ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}, "repaired malformed JSON"),
        ("{'a': 'single quotes'}", {"a": "single quotes"}, "repaired malformed JSON"),
        ('```json\n{"a": 1}\n```', {"a": 1}, "removed markdown code fence"),
        ('Here you go:\n```\n{"a": 1}\n```\nanything else?', {"a": 1}, "removed markdown code fence"),
        ('{"a": 1, "b": "cut off he', {"a": 1, "b": "cut off he"}, "completed truncated JSON"),
        ('```json\n{"a": [1, 2', {"a": [1, 2]}, "completed truncated JSON inside a markdown code fence"),
    ],
)
def test_near_json_is_repaired_with_a_note(text: str, value: object, note: str) -> None:
    parsed = parse_json_lenient(text)
    assert parsed.ok, parsed.error
    assert parsed.value == value
    assert parsed.repair is not None and parsed.repair.startswith(note)


@pytest.mark.parametrize("text", ["", "   ", None, "The answer is 42 and nothing else."])
def test_non_json_fails_with_a_reason(text: str | None) -> None:
    parsed = parse_json_lenient(text)
    assert not parsed.ok
    assert parsed.error


# --- tool arguments ------------------------------------------------------------------------------


def test_arguments_parse_clean_and_empty() -> None:
    assert parse_tool_arguments('{"a": 1}').arguments == {"a": 1}
    assert parse_tool_arguments("").arguments == {}
    assert parse_tool_arguments(None).arguments == {}
    assert parse_tool_arguments({"a": 2}).arguments == {"a": 2}


def test_arguments_with_trailing_comma_are_repaired() -> None:
    parsed = parse_tool_arguments('{"a": 1, "b": 2,}')
    assert parsed.arguments == {"a": 1, "b": 2}
    assert parsed.error is None and parsed.repair


def test_double_encoded_arguments_are_decoded() -> None:
    parsed = parse_tool_arguments(json.dumps(json.dumps({"a": 1})))
    assert parsed.arguments == {"a": 1}
    assert parsed.repair and "twice" in parsed.repair


@pytest.mark.parametrize("raw", ["add one and two", "[1, 2]", "42"])
def test_unusable_arguments_give_parse_error_not_exception(raw: str) -> None:
    parsed = parse_tool_arguments(raw)
    assert parsed.arguments is None
    assert parsed.error and "tool arguments" in parsed.error


# --- leaked tool calls -----------------------------------------------------------------------------


def test_hermes_block_is_recovered_with_surrounding_text() -> None:
    content = 'Let me add.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    leaked = extract_leaked_tool_calls(content, TOOLS)
    assert leaked is not None
    assert [(c.name, c.arguments) for c in leaked.calls] == [("add", {"a": 1, "b": 2})]
    assert leaked.remaining_text == "Let me add."
    assert leaked.calls[0].repaired and "<tool_call>" in leaked.calls[0].repaired
    assert "recovered 1 tool call(s) [add]" in leaked.notes[0]


def test_several_hermes_blocks_and_an_unterminated_last_one() -> None:
    content = ('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>\n'
               '<tool_call>{"name": "search", "arguments": {"q": "x"}}')
    leaked = extract_leaked_tool_calls(content, TOOLS)
    assert leaked is not None
    assert [(c.name, c.arguments) for c in leaked.calls] == [("add", {"a": 1}), ("search", {"q": "x"})]
    assert leaked.remaining_text is None


def test_a_call_cut_off_mid_arguments_is_recognised_but_not_executable() -> None:
    content = '<tool_call>{"name": "search", "arguments": {"q": "rm -rf /tmp/proj'
    leaked = extract_leaked_tool_calls(content, TOOLS)
    assert leaked is not None
    call = leaked.calls[0]
    assert call.name == "search" and call.arguments is None
    assert call.parse_error and "cut off" in call.parse_error
    assert call.raw_arguments.startswith('{"name": "search"')


def test_fenced_json_with_parameters_key() -> None:
    content = 'Calling it:\n```json\n{"name": "search", "parameters": {"q": "vllm"}}\n```'
    leaked = extract_leaked_tool_calls(content, TOOLS)
    assert leaked is not None
    assert leaked.calls[0].name == "search" and leaked.calls[0].arguments == {"q": "vllm"}
    assert 'arguments given as "parameters"' in leaked.notes[0]


def test_bare_object_with_string_arguments() -> None:
    content = json.dumps({"name": "add", "arguments": json.dumps({"a": 3, "b": 4})})
    leaked = extract_leaked_tool_calls(content, TOOLS)
    assert leaked is not None
    call = leaked.calls[0]
    assert call.arguments == {"a": 3, "b": 4}
    assert call.raw_arguments == json.dumps({"a": 3, "b": 4})
    assert "arguments given as a JSON string" in (call.repaired or "")


def test_bare_list_of_calls_and_openai_nested_shape() -> None:
    content = json.dumps([{"type": "function", "function": {"name": "add", "arguments": {"a": 1}}},
                          {"name": "search", "arguments": {"q": "y"}}])
    leaked = extract_leaked_tool_calls(content, TOOLS)
    assert leaked is not None
    assert [c.name for c in leaked.calls] == ["add", "search"]


def test_mistral_prefix() -> None:
    leaked = extract_leaked_tool_calls('[TOOL_CALLS] [{"name": "add", "arguments": {"a": 5}}]', TOOLS)
    assert leaked is not None and leaked.calls[0].arguments == {"a": 5}


def test_truncated_bare_call_is_reported_as_cut_off() -> None:
    leaked = extract_leaked_tool_calls('{"name": "search", "arguments": {"q": "partial', TOOLS)
    assert leaked is not None
    assert leaked.calls[0].arguments is None and "cut off" in (leaked.calls[0].parse_error or "")
    assert "truncated" in leaked.notes[0]


def test_truncated_native_arguments_are_not_guessed() -> None:
    parsed = parse_tool_arguments('{"path": "/home/user/proj')
    assert parsed.arguments is None and parsed.error and "cut off" in parsed.error


@pytest.mark.parametrize(
    "content",
    [
        '<tool_call>{"name": "delete_everything", "arguments": {}}</tool_call>',
        '{"name": "Alice", "age": 31}',
        'The function {"name": "unknown", "arguments": {}} is not available.',
        "I would call add, but I know the answer: 3.",
        "",
    ],
)
def test_content_that_is_not_a_call_to_an_offered_tool_stays_text(content: str) -> None:
    assert extract_leaked_tool_calls(content, TOOLS) is None


def test_a_record_with_a_tool_name_but_other_keys_is_not_a_call() -> None:
    assert extract_leaked_tool_calls('{"name": "search", "rank": 3}', TOOLS) is None


def test_malformed_leaked_arguments_keep_raw_text_and_error() -> None:
    leaked = extract_leaked_tool_calls('<tool_call>{"name": "add", "arguments": "a=1, b=2"}</tool_call>', TOOLS)
    assert leaked is not None
    call = leaked.calls[0]
    assert call.arguments is None and call.parse_error and call.raw_arguments == "a=1, b=2"


def test_render_round_trips_through_extraction() -> None:
    text = render_tool_calls_as_text([ToolCall(name="add", arguments={"a": 1})])
    leaked = extract_leaked_tool_calls(text, TOOLS)
    assert leaked is not None and leaked.calls[0].arguments == {"a": 1}


# --- schema validation ---------------------------------------------------------------------------


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["answer"],
    "additionalProperties": False,
}


def test_validation_error_names_the_path_and_problem() -> None:
    assert validation_error({"answer": 1, "tags": ["a"]}, SCHEMA) is None
    error = validation_error({"answer": "one", "tags": [1]}, SCHEMA)
    assert error is not None
    assert "$.answer" in error and "$.tags[0]" in error


def test_missing_schema_or_invalid_schema_validates_nothing() -> None:
    assert validation_error({"x": 1}, None) is None
    assert validation_error({"x": 1}, {"type": "no-such-type"}) is None
