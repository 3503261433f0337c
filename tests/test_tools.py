"""@tool schemas, argument validation, execution policy and Toolkit dispatch."""

# No `from __future__ import annotations`: several tools below are defined inside test functions,
# and their hints must be real objects, as they are in most user code.

import asyncio
import dataclasses
import datetime
import json
import threading
from typing import Annotated, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from agentflow.errors import SandboxViolationError, ToolError
from agentflow.llm.types import ToolCall
from agentflow.tools import Tool, ToolFailure, Toolkit, ToolResult, tool
from agentflow.tools.docstrings import parse_docstring
from agentflow.tools.schema import StrictSchemaError


class Address(BaseModel):
    """A postal address."""

    street: str
    city: str = Field(description="City name")
    zip_code: str | None = None


class Node(BaseModel):
    value: int
    children: list["Node"] = []


@tool
def search(
    query: str,
    limit: Annotated[int, Field(description="How many results (from Field)", ge=1, le=50)] = 10,
    mode: Literal["fast", "thorough"] = "fast",
    since: datetime.date | None = None,
    tags: list[str] = [],  # noqa: B006 - default is never mutated; exercises list defaults
    address: Address | None = None,
) -> list[str]:
    """Search the archive.

    Searches titles and bodies.

    Args:
        query: Words to look for,
            in any order.
        limit: Ignored because Annotated wins.
        mode (str): Search strategy.
        tags: Only documents with all of these tags.

    Returns:
        Matching document titles.
    """
    return [f"{query}:{limit}:{mode}:{since}:{tags}:{address.city if address else None}"]


def walk_schemas(schema):
    """Yield every subschema (dicts under properties/items/anyOf/$defs...)."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield from walk_schemas(schema[key])
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key, []):
            yield from walk_schemas(sub)
    for key in ("properties", "$defs"):
        for sub in schema.get(key, {}).values():
            yield from walk_schemas(sub)


def assert_openai_strict(schema):
    """The rules OpenAI strict mode enforces on a function's parameters."""
    assert schema["type"] == "object"
    for node in walk_schemas(schema):
        assert "default" not in node, node
        if node.get("type") == "object" or "properties" in node:
            assert node.get("additionalProperties") is False, node
            assert sorted(node.get("required", [])) == sorted(node.get("properties", {})), node


# --- schema generation ----------------------------------------------------------------------------


def test_name_and_description_come_from_function_and_docstring():
    assert search.name == "search"
    assert search.description.startswith("Search the archive.\n\nSearches titles and bodies.")
    assert search.description.endswith("Returns: Matching document titles.")
    assert "Args" not in search.description


def test_parameter_descriptions_required_and_defaults():
    params = search.parameters
    props = params["properties"]
    assert params["required"] == ["query"]
    assert props["query"] == {"type": "string", "description": "Words to look for, in any order."}
    # Annotated Field description beats the docstring; constraints are kept
    assert props["limit"]["description"] == "How many results (from Field)"
    assert (props["limit"]["minimum"], props["limit"]["maximum"], props["limit"]["default"]) == (1, 50, 10)
    assert props["mode"]["enum"] == ["fast", "thorough"] and props["mode"]["default"] == "fast"
    assert props["mode"]["description"] == "Search strategy."
    assert props["tags"]["type"] == "array" and props["tags"]["items"] == {"type": "string"}
    assert {"type": "null"} in props["since"]["anyOf"]
    assert {"type": "string", "format": "date"} in props["since"]["anyOf"]
    # generated titles are noise for a model and are stripped everywhere
    assert not any("title" in node for node in walk_schemas(params))


def test_nested_models_are_inlined_with_their_descriptions():
    address = search.parameters["properties"]["address"]
    obj = next(s for s in address["anyOf"] if s.get("type") == "object")
    assert obj["description"] == "A postal address."
    assert obj["required"] == ["street", "city"]
    assert obj["properties"]["city"]["description"] == "City name"
    assert "$defs" not in search.parameters and "$ref" not in json.dumps(search.parameters)


def test_recursive_models_keep_definitions():
    @tool
    def tree_sum(root: Node) -> int:
        """Sum a tree."""
        return root.value + sum(tree_sum(c) for c in root.children)

    schema = tree_sum.parameters
    assert schema["properties"]["root"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert set(schema["$defs"]) == {"Node"}
    jsonschema.validate({"root": {"value": 1, "children": [{"value": 2, "children": []}]}}, schema)


def test_annotated_plain_string_and_field_default_descriptions():
    @tool
    def f(a: Annotated[int, "the a value"], b: int = Field(3, description="the b value", ge=0)) -> int:
        """Doc.

        Args:
            a: docstring a (Annotated string wins)
        """
        return a + b

    props = f.parameters["properties"]
    assert props["a"]["description"] == "the a value"
    assert props["b"] == {"type": "integer", "description": "the b value", "minimum": 0, "default": 3}


def test_rest_and_numpy_docstrings():
    rest = parse_docstring("""Do it.

    :param x: the x
        continued
    :type x: int
    :returns: a value
    """)
    assert rest.description == "Do it." and rest.params == {"x": "the x continued"} and rest.returns == "a value"
    numpy = parse_docstring("""Do it.

    Parameters
    ----------
    x : int
        The x.
    y : str
        The y.

    Returns
    -------
    int
        The result.
    """)
    assert numpy.params == {"x": "The x.", "y": "The y."} and numpy.returns == "The result."


def test_decorator_forms_and_options():
    @tool(name="renamed", description="Custom.", timeout=5, max_output_chars=100, side_effects=True)
    def f(x: int) -> int:
        return x

    @tool("positional_name")
    async def g(x: int) -> int:
        return x

    assert (f.name, f.description, f.timeout, f.max_output_chars, f.side_effects) == (
        "renamed", "Custom.", 5, 100, True)
    assert g.name == "positional_name"
    assert f(4) == 4  # the Tool still calls like the function
    spec = f.spec()
    assert spec.name == "renamed" and spec.to_openai()["function"]["parameters"] == f.parameters


@pytest.mark.parametrize("bad", ["has space", "dots.not.allowed", "", "x" * 65, "ünïcode"])
def test_invalid_names_are_rejected(bad):
    with pytest.raises(ToolError, match="Invalid tool name"):
        tool(name=bad)(lambda x: x)


def test_misdefined_functions_raise_tool_error_with_advice():
    with pytest.raises(ToolError, match="no type hint"):
        tool(lambda x: x, name="untyped")
    with pytest.raises(ToolError, match="lambda|Cannot derive"):
        tool(lambda: 1)

    def star(*args: int) -> int:
        return 0

    with pytest.raises(ToolError, match=r"\*args"):
        tool(star)

    def gen(n: int):
        yield n

    with pytest.raises(ToolError, match="generator"):
        tool(gen)

    class Opaque:
        pass

    def opaque(x: Opaque) -> None:
        pass

    with pytest.raises(ToolError, match="JSON schema"):
        tool(opaque)


def test_parameter_names_that_clash_with_pydantic_still_work():
    @tool
    def f(json: str, model_name: str, schema: int = 1) -> str:
        """Clashing names."""
        return f"{json}/{model_name}/{schema}"

    assert list(f.parameters["properties"]) == ["json", "model_name", "schema"]
    result = asyncio.run(f.invoke({"json": "j", "model_name": "m", "schema": 2}))
    assert result.content == "j/m/2"


def test_positional_only_parameters():
    @tool
    def f(a: int, /, b: int) -> int:
        return a - b

    assert asyncio.run(f.invoke({"a": 5, "b": 2})).content == "3"


# --- strict mode ------------------------------------------------------------------------------------


def test_strict_spec_satisfies_openai_rules():
    spec = search.spec(strict=True)
    assert spec.strict is True and spec.to_openai()["function"]["strict"] is True
    assert_openai_strict(spec.parameters)
    props = spec.parameters["properties"]
    # a defaulted parameter becomes nullable and says what null means
    assert props["limit"]["type"] == ["integer", "null"]
    assert "Default: 10; send null to use it." in props["limit"]["description"]
    assert {"type": "null"} in props["mode"]["anyOf"]
    # a parameter that already accepts None keeps null meaning None
    assert props["since"]["description"] == "Default: null."
    # the plain schema is untouched
    assert search.parameters["required"] == ["query"] and "default" in search.parameters["properties"]["limit"]


async def test_strict_call_with_nulls_uses_defaults():
    strict = search.spec(strict=True).parameters
    args = {"query": "q", "limit": None, "mode": None, "since": None, "tags": None,
            "address": {"street": "s", "city": "Oslo", "zip_code": None}}
    jsonschema.validate(args, strict)
    result = await search.invoke(args)
    assert not result.is_error, result.content
    assert json.loads(result.content) == ["q:10:fast:None:[]:Oslo"]


def test_free_form_dicts_cannot_be_strict():
    @tool
    def f(mapping: dict[str, int]) -> int:
        return len(mapping)

    with pytest.raises(StrictSchemaError, match="free-form"):
        f.spec(strict=True)
    # a toolkit degrades that one tool to non-strict instead of failing the whole request
    specs = Toolkit([f, search]).specs(strict=True)
    assert [s.strict for s in specs] == [False, True]


# --- validation feedback ----------------------------------------------------------------------------


async def test_validation_error_lists_every_bad_field_and_expectation():
    result = await search.invoke({"limit": "many", "mode": "slow", "address": {"street": 1}, "colour": "red"},
                                 call_id="c1")
    assert result.is_error and result.error_kind == "validation" and result.call_id == "c1"
    text = result.content
    assert "query: missing required argument; expected string (Words to look for, in any order.)" in text
    assert 'limit: Input should be a valid integer' in text and '(got "many")' in text
    assert "expected integer >= 1 <= 50" in text
    assert 'mode:' in text and 'expected one of "fast", "thorough"' in text
    assert "address.city: missing required argument" in text
    assert "address.street:" in text and "(got 1)" in text
    assert 'colour: unexpected argument (got "red"); valid arguments: query, limit, mode' in text
    assert text.rstrip().endswith("Call 'search' again with corrected arguments.")


async def test_json_string_arguments_are_parsed_and_repaired():
    ok = await search.invoke('{"query": "cats", "limit": 3}')
    assert json.loads(ok.content) == ["cats:3:fast:None:[]:None"]
    repaired = await search.invoke("{'query': 'dogs', 'limit': 2,}")  # single quotes, trailing comma
    assert json.loads(repaired.content) == ["dogs:2:fast:None:[]:None"]
    double = await search.invoke(json.dumps(json.dumps({"query": "owls"})))
    assert json.loads(double.content)[0].startswith("owls:")
    coerced = await search.invoke({"query": "x", "limit": "7"})  # lax coercion of numeric strings
    assert json.loads(coerced.content)[0].startswith("x:7:")


@pytest.mark.parametrize("raw", ["[1, 2]", "just words", "42"])
async def test_non_object_arguments_are_a_validation_error(raw):
    result = await search.invoke(raw)
    assert result.error_kind == "validation"
    assert "must be a JSON object" in result.content and "query: string (required)" in result.content


async def test_empty_arguments_mean_no_arguments():
    @tool
    def now() -> str:
        return "tick"

    for raw in (None, "", "{}", {}):
        assert (await now.invoke(raw)).content == "tick"


# --- execution ----------------------------------------------------------------------------------------


async def test_sync_tools_run_in_a_thread_and_async_tools_on_the_loop():
    loop_thread = threading.get_ident()

    @tool
    def sync_probe() -> bool:
        return threading.get_ident() != loop_thread

    @tool
    async def async_probe() -> bool:
        return threading.get_ident() == loop_thread

    assert (await sync_probe.invoke({})).content == "true"
    assert (await async_probe.invoke({})).content == "true"


async def test_async_timeout_becomes_timeout_result():
    finished = []

    @tool(timeout=0.05)
    async def slow() -> str:
        await asyncio.sleep(10)
        finished.append(True)
        return "late"

    result = await slow.invoke({})
    assert result.is_error and result.error_kind == "timeout"
    assert "time limit of 0.05 s" in result.content and not finished


async def test_sync_timeout_becomes_timeout_result():
    release = threading.Event()

    @tool(timeout=0.05)
    def blocking() -> str:
        release.wait(5)
        return "late"

    try:
        result = await blocking.invoke({})
    finally:
        release.set()
    assert result.error_kind == "timeout"


async def test_a_timeout_error_raised_by_the_tool_is_an_exception_not_our_timeout():
    @tool(timeout=5)
    async def flaky() -> str:
        raise TimeoutError("upstream API timed out")

    result = await flaky.invoke({})
    assert result.error_kind == "exception"
    assert result.content == "Tool 'flaky' raised TimeoutError: upstream API timed out"


async def test_exceptions_become_results_without_tracebacks():
    @tool
    def broken(x: int) -> int:
        raise ValueError(f"bad x={x}")

    result = await broken.invoke({"x": 3}, call_id="id-9")
    assert (result.is_error, result.error_kind, result.call_id) == (True, "exception", "id-9")
    assert result.content == "Tool 'broken' raised ValueError: bad x=3"
    assert "Traceback" not in result.content


async def test_tool_failure_and_sandbox_errors_map_to_their_kinds():
    @tool
    def picky(x: int) -> str:
        if x < 0:
            raise ToolFailure("x must be positive; try abs(x).", kind="validation")
        raise SandboxViolationError("path escapes the workspace")

    neg = await picky.invoke({"x": -1})
    assert (neg.error_kind, neg.content) == ("validation", "x must be positive; try abs(x).")
    esc = await picky.invoke({"x": 1})
    assert esc.error_kind == "sandbox" and "escapes" in esc.content


async def test_returned_tool_result_is_used_with_call_metadata():
    @tool
    def custom() -> ToolResult:
        return ToolResult(name="ignored", content="partial failure", is_error=True, error_kind="exception")

    result = await custom.invoke({}, call_id="abc")
    assert (result.name, result.call_id, result.content, result.is_error) == ("custom", "abc", "partial failure", True)


async def test_long_output_is_truncated_with_a_note():
    @tool(max_output_chars=500)
    def chatty() -> str:
        return "y" * 10_000

    result = await chatty.invoke({})
    assert result.truncated and len(result.content) <= 500
    assert result.content.startswith("y" * 300)
    kept = len(result.content.split("\n[output truncated")[0])
    assert f"showing the first {kept:,} of 10,000 characters; {10_000 - kept:,} characters cut" in result.content


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def test_return_values_are_serialized():
    @tool
    def as_model() -> Address:
        return Address(street="Main", city="Oslo")

    @tool
    def as_dict() -> dict:
        return {"when": datetime.date(2024, 1, 2), "point": Point(1, 2), "n": [1.5, None]}

    @tool
    def nothing() -> None:
        return None

    @tool
    def raw_bytes() -> bytes:
        return b"\x00\xff\xfe"

    assert json.loads((await as_model.invoke({})).content) == {"street": "Main", "city": "Oslo", "zip_code": None}
    assert json.loads((await as_dict.invoke({})).content) == {
        "when": "2024-01-02", "point": {"x": 1, "y": 2}, "n": [1.5, None]}
    assert (await nothing.invoke({})).content == "(the tool returned no output)"
    assert (await raw_bytes.invoke({})).content == "(binary data, 3 bytes)"


async def test_cancellation_propagates_and_stops_the_tool():
    started, cleaned_up = asyncio.Event(), []

    @tool
    async def long_running() -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            cleaned_up.append(True)
        return "done"

    task = asyncio.create_task(long_running.invoke({}))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned_up == [True]


async def test_cancellation_propagates_from_sync_tools_too():
    release = threading.Event()

    @tool(timeout=None)
    def blocking() -> str:
        release.wait(5)
        return "x"

    task = asyncio.create_task(blocking.invoke({}))
    await asyncio.sleep(0.02)
    task.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        release.set()


async def test_duration_is_recorded():
    @tool
    async def nap() -> str:
        await asyncio.sleep(0.01)
        return "ok"

    result = await nap.invoke({})
    assert result.duration_s > 0 and result.ok


# --- Toolkit ------------------------------------------------------------------------------------------


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_toolkit_is_ordered_and_rejects_duplicates():
    def mul(a: int, b: int) -> int:
        """Multiply."""
        return a * b

    kit = Toolkit([search, add, mul])  # plain functions are wrapped
    assert kit.names() == ["search", "add", "mul"] and len(kit) == 3
    assert [t.name for t in kit] == kit.names() and [s.name for s in kit.specs()] == kit.names()
    assert "add" in kit and add in kit and "nope" not in kit
    assert isinstance(kit.get("mul"), Tool) and kit.get("nope") is None
    with pytest.raises(ToolError, match="Duplicate tool name 'add'"):
        Toolkit([add, Tool(add.fn, name="add")])
    with pytest.raises(ToolError, match="Duplicate"):
        kit.add(add)


async def test_toolkit_execute_dispatches_and_keeps_call_id():
    call = ToolCall(id="call_1", name="add", arguments={"a": 2, "b": 3})
    result = await Toolkit([add]).execute(call)
    assert (result.call_id, result.name, result.content, result.is_error) == ("call_1", "add", "5", False)
    message = result.to_message()
    assert message.role == "tool" and message.tool_call_id == "call_1" and message.content == "5"


async def test_toolkit_execute_uses_raw_arguments_when_unparsed():
    call = ToolCall(name="add", raw_arguments='{"a": 1, "b": 1,}')
    assert (await Toolkit([add]).execute(call)).content == "2"


async def test_unknown_tool_lists_available_tools():
    result = await Toolkit([add, search]).execute(ToolCall(id="x", name="ad", arguments={}))
    assert result.is_error and result.error_kind == "unknown_tool" and result.call_id == "x"
    assert "Unknown tool 'ad'. Available tools: add, search." in result.content
    assert "Did you mean 'add'?" in result.content


async def test_parse_error_is_reported_as_validation_with_the_problem():
    call = ToolCall(name="add", raw_arguments='{"a": 1, "b":', parse_error="Expecting value: line 1 column 14")
    result = await Toolkit([add]).execute(call)
    assert result.error_kind == "validation"
    assert "Expecting value: line 1 column 14" in result.content
    assert "'{\"a\": 1, \"b\":'" in result.content and "a: integer (required)" in result.content


async def test_toolkit_execute_never_raises_for_tool_trouble():
    @tool(timeout=0.01)
    async def hang() -> str:
        await asyncio.sleep(5)
        return ""

    kit = Toolkit([add, hang])
    calls = [
        ToolCall(name="add", arguments={"a": "x"}),
        ToolCall(name="hang", arguments={}),
        ToolCall(name="missing", arguments={}),
        ToolCall(name="add", raw_arguments="garbage", parse_error="not JSON"),
    ]
    results = await asyncio.gather(*(kit.execute(c) for c in calls))
    assert [r.error_kind for r in results] == ["validation", "timeout", "unknown_tool", "validation"]
