"""Translation between agentflow's request/response types and the OpenAI chat-completions wire format.

Pure functions, no I/O: ``build_plan`` decides *how* a ``ChatRequest`` is expressed for one
endpoint given what it supports (``Capabilities``), and ``decode_completion`` turns the JSON the
server sent back into ``Choice`` objects, repairing what can be repaired. The client in
``openai_compat`` does the talking, the retries and the fallback loops.

How constraints are expressed, best first:

* structured output: ``response_format`` json_schema (or vLLM's ``structured_outputs`` extra
  body); never ``guided_json``, which vLLM 0.32 accepts and silently ignores. Fallback: the schema
  in the system prompt, with client-side validation and retries (``schema_mode="prompt"``).
* forced tool calls (``tool_choice`` required or named): tools sent with ``"strict": true`` so
  vLLM constrains the arguments. On vLLM a call forced to a single tool is by default sent as a
  json_schema response ``{"name": <const>, "arguments": <parameters>}`` and converted back into
  a ``ToolCall`` (``tool_mode="json_schema"``): vLLM's tool-call grammar still admits runaway
  whitespace, while its structured-output grammar does not, so this path produced valid calls
  where ``tool_choice="required"`` did not (see DESIGN.md). Fallback: the obligation in the
  prompt, validated client-side (``tool_mode="prompt_forced"``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from agentflow.llm.capabilities import Capabilities
from agentflow.llm.repair import (
    CUT_OFF,
    extract_leaked_tool_calls,
    parse_json_lenient,
    parse_tool_arguments,
    render_tool_calls_as_text,
    tool_call_from_object,
)
from agentflow.llm.schema_check import validation_error
from agentflow.llm.types import (
    ChatRequest,
    Choice,
    FinishReason,
    Message,
    NamedToolChoice,
    TokenLogprob,
    ToolCall,
    ToolSpec,
    Usage,
    new_call_id,
)

#: how a forced single-tool call is sent: "auto" = through json_schema on vLLM, tool_choice elsewhere
ForcedToolMode = Literal["auto", "tool_choice", "response_format"]
#: which request field carries an output schema on vLLM
SchemaTransport = Literal["response_format", "structured_outputs"]

ToolMode = Literal["none", "native", "native_unconstrained", "json_schema", "prompt_auto", "prompt_forced"]
SchemaMode = Literal["none", "native", "prompt"]

#: per-request downgrades, applied when a server rejects a constraint it claims to support
#: (e.g. OpenAI refusing a schema outside its strict subset); "drop:<field>" omits an optional field
Downgrade = Literal["no_strict_tools", "non_strict_schema", "schema_in_prompt", "forced_via_tool_choice"]

#: optional request fields that may be dropped when a server rejects them (none is a constraint)
DROPPABLE_FIELDS = frozenset({"seed", "logprobs", "top_logprobs", "stream_options", "parallel_tool_calls", "user"})

_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class RequestPlan:
    """A request body for one endpoint, and how its constraints are enforced."""

    body: dict[str, Any]
    tool_mode: ToolMode = "none"
    schema_mode: SchemaMode = "none"
    #: the tool a call is forced to, when exactly one is
    forced: ToolSpec | None = None
    #: the tools a json_schema-routed forced call may name (``tool_mode="json_schema"``)
    routed: list[ToolSpec] = field(default_factory=list)
    #: a tool call is mandatory (tool_choice required or named)
    must_call: bool = False
    #: tools whose arguments the server constrains (strict); others are validated client-side
    strict_tools: bool = False
    #: when > 1: the server cannot sample n choices, send this many single requests instead
    split_n: int = 1
    #: what was adapted to this endpoint, copied into every choice's ``repairs``
    notes: list[str] = field(default_factory=list)
    #: the system-prompt instruction added for a fallback (repeated in feedback messages)
    instruction: str | None = None

    @property
    def client_side_schema(self) -> bool:
        return self.schema_mode == "prompt"

    @property
    def client_side_tools(self) -> bool:
        return self.must_call and (self.tool_mode in ("prompt_forced", "native_unconstrained") or not self.strict_tools)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def safe_name(name: str) -> str:
    """A schema/function name OpenAI accepts (``^[A-Za-z0-9_-]{1,64}$``)."""
    return (_SAFE_NAME_RE.sub("_", name) or "output")[:64]


def forced_call_schema(tools: list[ToolSpec]) -> dict[str, Any]:
    """The json_schema that makes a structured-output response *be* a call to one of ``tools``.

    One tool gives ``{"name": <const>, "arguments": <its parameters>}``; several give an
    ``anyOf`` of those objects, so ``tool_choice="required"`` over many tools is constrained too.
    """
    variants = [
        {
            "type": "object",
            "properties": {"name": {"type": "string", "const": t.name},
                           "arguments": t.parameters or {"type": "object", "properties": {}}},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def _inject_instruction(messages: list[dict[str, Any]], text: str) -> None:
    """Append to the leading system message (one system turn works with every chat template)."""
    if messages and messages[0].get("role") == "system":
        existing = messages[0].get("content") or ""
        messages[0]["content"] = f"{existing}\n\n{text}" if existing else text
    else:
        messages.insert(0, {"role": "system", "content": text})


def _tool_listing(tools: list[ToolSpec]) -> str:
    lines = []
    for t in tools:
        lines.append(f"- {t.name}: {t.description or '(no description)'}\n  arguments schema: {_json(t.parameters)}")
    return "\n".join(lines)


def schema_instruction(schema: dict[str, Any]) -> str:
    return ("Reply with a single JSON value that conforms to this JSON schema, and nothing else "
            f"(no prose, no markdown code fences):\n{_json(schema)}")


def forced_tool_instruction(tools: list[ToolSpec], forced: ToolSpec | None, *, native_tools: bool) -> str:
    if forced is not None:
        head = f"You must call the function `{forced.name}` now."
        listing = [forced]
    else:
        head = "You must call one of the available functions now."
        listing = tools
    if native_tools:
        return head + " Do not answer in prose."
    return (f"{head} Available functions:\n{_tool_listing(listing)}\n"
            'Reply with only <tool_call>{"name": <function name>, "arguments": <arguments object>}</tool_call>.')


def auto_tools_instruction(tools: list[ToolSpec]) -> str:
    return (f"You can call these functions:\n{_tool_listing(tools)}\n"
            'To call one, reply with <tool_call>{"name": <function name>, "arguments": <arguments object>}'
            "</tool_call> (one block per call). Otherwise answer normally.")


def routed_call_instruction(tools: list[ToolSpec]) -> str:
    if len(tools) == 1:
        tool = tools[0]
        return (f"Call the function `{tool.name}` now: {tool.description or '(no description)'}\n"
                f"Reply with a JSON object {{\"name\": \"{tool.name}\", \"arguments\": {{...}}}} whose arguments "
                f"conform to: {_json(tool.parameters)}")
    listing = "\n".join(f"- `{t.name}`: {t.description or '(no description)'}; arguments: {_json(t.parameters)}"
                         for t in tools)
    return ("Call exactly one of these functions now:\n" + listing +
            '\nReply with a JSON object {"name": <function name>, "arguments": {...}} whose arguments conform '
            "to that function's schema.")


def _messages_as_text_tools(messages: list[Message]) -> list[dict[str, Any]]:
    """History for a server without native tools: calls and results become plain turns."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            text = render_tool_calls_as_text(m.tool_calls)
            out.append({"role": "assistant", "content": f"{m.content}\n{text}" if m.content else text})
        elif m.role == "tool":
            label = f' name="{m.name}"' if m.name else ""
            out.append({"role": "user", "content": f"<tool_response{label}>\n{m.content or ''}\n</tool_response>"})
        else:
            out.append(m.to_openai())
    return out


def build_plan(
    request: ChatRequest,
    caps: Capabilities,
    model: str,
    *,
    forced_tool_mode: ForcedToolMode = "auto",
    schema_transport: SchemaTransport = "response_format",
    strict_forced_tools: bool = True,
    downgrades: frozenset[str] = frozenset(),
) -> RequestPlan:
    """Express ``request`` for an endpoint with capabilities ``caps``; never drops a constraint."""
    tools = request.tools
    choice = request.tool_choice
    schema = request.output_schema
    must_call = bool(tools) and (choice == "required" or isinstance(choice, NamedToolChoice))
    forced: ToolSpec | None = None
    if must_call:
        name = request.forced_tool
        forced = next((t for t in tools if t.name == name), None) if name else None
    tools_natively = bool(tools) and choice != "none"

    plan = RequestPlan(body={}, must_call=must_call, forced=forced)
    notes = plan.notes
    instructions: list[str] = []
    body = plan.body

    # --- tools -----------------------------------------------------------------------------
    if tools and choice == "none":
        body["tools"] = [t.to_openai() for t in tools]
        body["tool_choice"] = "none"
    elif tools and not must_call:
        if caps.tool_choice_auto.usable:
            plan.tool_mode = "native"
            body["tools"] = [t.to_openai() for t in tools]
            body["tool_choice"] = "auto"
        else:
            plan.tool_mode = "prompt_auto"
            tools_natively = False
            instructions.append(auto_tools_instruction(tools))
            notes.append("tool calling is not supported by the server: tools described in the prompt, "
                         "calls parsed from the text")
    elif must_call:
        # a named choice routes to its tool; "required" routes to an anyOf over every tool
        routed = [forced] if forced is not None else ([] if isinstance(choice, NamedToolChoice) else list(tools))
        use_routing = (
            bool(routed)
            and schema is None
            and "forced_via_tool_choice" not in downgrades
            and caps.json_schema.usable
            and (forced_tool_mode == "response_format" or (forced_tool_mode == "auto" and caps.is_vllm))
        )
        choice_cap = caps.tool_choice_named if isinstance(choice, NamedToolChoice) else caps.tool_choice_required
        if use_routing:
            plan.tool_mode = "json_schema"
            plan.strict_tools = True
            plan.routed = routed
            tools_natively = False
            label = routed[0].name if len(routed) == 1 else "tool"
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": safe_name(f"call_{label}"),
                                "description": routed[0].description if len(routed) == 1 else "a function call",
                                "schema": forced_call_schema(routed), "strict": True},
            }
            instructions.append(routed_call_instruction(routed))
        elif choice_cap.usable:
            strict = strict_forced_tools and caps.strict_tools.usable and "no_strict_tools" not in downgrades
            plan.tool_mode = "native" if strict else "native_unconstrained"
            plan.strict_tools = strict
            body["tools"] = [t.to_openai(strict=True if strict else None) for t in tools]
            if isinstance(choice, NamedToolChoice):
                body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            else:
                body["tool_choice"] = "required"
            if not strict and strict_forced_tools:
                why = ("the server rejected strict tool arguments for this request" if "no_strict_tools" in downgrades
                       else "strict tool arguments are not supported by the server")
                notes.append(f"{why}: arguments validated client-side")
        else:
            plan.tool_mode = "prompt_forced"
            what = "a named tool_choice" if isinstance(choice, NamedToolChoice) else 'tool_choice="required"'
            if caps.tool_choice_auto.usable:
                body["tools"] = [t.to_openai() for t in tools]
                body["tool_choice"] = "auto"
                instructions.append(forced_tool_instruction(tools, forced, native_tools=True))
            else:
                tools_natively = False
                instructions.append(forced_tool_instruction(tools, forced, native_tools=False))
            notes.append(f"{what} is not supported by the server: the call was requested in the prompt "
                         "and validated client-side")

    # --- structured output -------------------------------------------------------------------
    if schema is not None:
        if caps.json_schema.usable and "schema_in_prompt" not in downgrades:
            plan.schema_mode = "native"
            strict = schema.strict and "non_strict_schema" not in downgrades
            if schema_transport == "structured_outputs" and caps.is_vllm:
                body["structured_outputs"] = {"json": schema.json_schema}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": safe_name(schema.name), "schema": schema.json_schema, "strict": strict},
                }
            if not strict and schema.strict:
                notes.append("the server rejected the strict json_schema for this request: sent non-strict, "
                             "output validated client-side")
        else:
            plan.schema_mode = "prompt"
            instructions.append(schema_instruction(schema.json_schema))
            why = ("the server rejected this json_schema" if "schema_in_prompt" in downgrades
                   else "json_schema output is not supported by the server")
            notes.append(f"{why}: schema given in the prompt, output validated client-side")

    # --- messages ----------------------------------------------------------------------------
    if tools and not tools_natively and choice != "none":
        messages = _messages_as_text_tools(request.messages)
    else:
        messages = [m.to_openai() for m in request.messages]
    if instructions:
        plan.instruction = "\n\n".join(instructions)
        _inject_instruction(messages, plan.instruction)

    # --- sampling ----------------------------------------------------------------------------
    full: dict[str, Any] = {"model": model, "messages": messages}
    if request.temperature is not None:
        full["temperature"] = request.temperature
    if request.top_p is not None:
        full["top_p"] = request.top_p
    if request.max_tokens is not None:
        full["max_tokens"] = request.max_tokens
    if request.seed is not None:
        full["seed"] = request.seed
    if request.stop:
        full["stop"] = request.stop
    if request.n > 1:
        if caps.n_samples.usable:
            full["n"] = request.n
        else:
            plan.split_n = request.n
    if request.logprobs and caps.logprobs.usable:
        full["logprobs"] = True
        if request.top_logprobs:
            full["top_logprobs"] = request.top_logprobs
    full.update(body)
    for key, value in request.extra_body.items():
        full.setdefault(key, value)
    for key in caps.rejected_fields:
        full.pop(key, None)
    for option in downgrades:
        if option.startswith("drop:"):
            full.pop(option[len("drop:"):], None)
    for old, new in caps.renamed_fields.items():
        if old in full:
            full[new] = full.pop(old)
    plan.body = full
    return plan


# --- decoding ------------------------------------------------------------------------------------

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
}


def _finish_reason(raw: Any) -> FinishReason | None:
    if raw is None:
        return None
    return _FINISH.get(str(raw), "error")


def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def decode_logprobs(raw: Any) -> list[TokenLogprob] | None:
    if not isinstance(raw, dict):
        return None
    content = raw.get("content")
    if not isinstance(content, list):
        return None
    out = []
    for item in content:
        if not isinstance(item, dict):
            continue
        top = {t.get("token", ""): float(t.get("logprob", 0.0)) for t in item.get("top_logprobs") or []
               if isinstance(t, dict)}
        out.append(TokenLogprob(token=str(item.get("token", "")), logprob=float(item.get("logprob", 0.0)), top=top))
    return out


def decode_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0),
        completion_tokens=int(raw.get("completion_tokens") or 0),
        cached_tokens=int(cached or 0),
    )


def _native_tool_calls(raw_calls: Any, choice: Choice) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for tc in raw_calls or []:
        if not isinstance(tc, dict):
            continue
        fn = tc.get("function") or {}
        name = str(fn.get("name") or "")
        raw_args = fn.get("arguments")
        parsed = parse_tool_arguments(raw_args)
        raw_text = raw_args if isinstance(raw_args, str) else _json(raw_args if raw_args is not None else {})
        call = ToolCall(
            id=str(tc.get("id") or new_call_id()),
            name=name,
            arguments=parsed.arguments,
            raw_arguments=raw_text,
            parse_error=parsed.error,
            repaired=parsed.repair,
        )
        if parsed.repair:
            choice.repairs.append(f"tool call {name}: {parsed.repair}")
        calls.append(call)
    return calls


def _routed_call(text: str | None, routed: list[ToolSpec], choice: Choice) -> ToolCall:
    """The ToolCall inside a json_schema-routed forced call (``{"name":..., "arguments":...}``)."""
    names = [t.name for t in routed]
    parsed = parse_json_lenient(text)
    named = parsed.value.get("name") if parsed.ok and isinstance(parsed.value, dict) else None
    # the name to report when the call cannot be read: the only candidate, or what the model wrote
    fallback = named if isinstance(named, str) and named in names else names[0]
    if parsed.ok and parsed.truncated:
        return ToolCall(name=fallback, arguments=None, raw_arguments=text or "", parse_error=CUT_OFF)
    if parsed.ok:
        found = tool_call_from_object(parsed.value, set(names))
        if found is not None:
            call, notes = found
            if parsed.repair:
                notes.insert(0, parsed.repair)
            if notes:
                call.repaired = "; ".join(notes)
                choice.repairs.append(f"forced call {call.name}: {call.repaired}")
            return call
        shape = " or ".join(f'{{"name": "{n}", "arguments": {{...}}}}' for n in names)
        error = f"expected {shape}, got {(text or '')[:200]!r}"
    else:
        error = parsed.error or "not valid JSON"
    return ToolCall(name=fallback, arguments=None, raw_arguments=text or "",
                    parse_error=f"the forced call to {fallback} could not be read: {error}")


def decode_choice(raw: dict[str, Any], plan: RequestPlan, request: ChatRequest, index: int | None = None) -> Choice:
    message = raw.get("message") or {}
    text = _content_text(message.get("content"))
    choice = Choice(
        index=int(raw.get("index", 0) if index is None else index),
        text=text,
        finish_reason=_finish_reason(raw.get("finish_reason")),
        logprobs=decode_logprobs(raw.get("logprobs")),
    )
    choice.repairs.extend(plan.notes)
    choice.tool_calls = _native_tool_calls(message.get("tool_calls"), choice)

    if plan.tool_mode == "json_schema" and plan.routed:
        choice.tool_calls = [_routed_call(text, plan.routed, choice)]
        choice.text = None
    elif not choice.tool_calls and text and plan.tool_mode != "none":
        leaked = extract_leaked_tool_calls(text, {t.name for t in request.tools})
        if leaked is not None:
            choice.tool_calls = leaked.calls
            choice.text = leaked.remaining_text
            if plan.tool_mode != "prompt_auto" and plan.tool_mode != "prompt_forced":
                choice.repairs.extend(leaked.notes)
    if choice.tool_calls and choice.finish_reason in (None, "stop"):
        choice.finish_reason = "tool_calls"

    if request.output_schema is not None and plan.tool_mode != "json_schema":
        apply_output_schema(choice, request)
    return choice


def apply_output_schema(choice: Choice, request: ChatRequest) -> None:
    """Fill ``parsed`` (validated) or ``parse_error`` for a choice of a structured-output request."""
    assert request.output_schema is not None
    if choice.text is None or not choice.text.strip():
        if choice.tool_calls:
            choice.parse_error = "the model called a tool instead of writing the JSON output"
        else:
            choice.parse_error = "the output is empty; a JSON value conforming to the schema was expected"
        return
    parsed = parse_json_lenient(choice.text)
    if not parsed.ok:
        choice.parse_error = parsed.error
        return
    error = validation_error(parsed.value, request.output_schema.json_schema)
    if error is not None:
        choice.parse_error = f"the output does not conform to the schema: {error}"
        return
    choice.parsed = parsed.value
    choice.parse_error = None
    if parsed.repair:
        choice.repairs.append(f"structured output: {parsed.repair}")


def decode_completion(data: dict[str, Any], plan: RequestPlan,
                      request: ChatRequest) -> tuple[list[Choice], Usage, str | None]:
    raw_choices = [c for c in data.get("choices") or [] if isinstance(c, dict)]
    raw_choices.sort(key=lambda c: int(c.get("index", 0)))
    choices = [decode_choice(c, plan, request) for c in raw_choices]
    return choices, decode_usage(data.get("usage")), data.get("model")


def constraint_violation(choice: Choice, plan: RequestPlan, request: ChatRequest) -> str | None:
    """Why ``choice`` breaks a constraint of ``request`` (schema, forced call), or None."""
    if request.output_schema is not None and plan.tool_mode != "json_schema" and choice.parse_error:
        return choice.parse_error
    if not plan.must_call:
        return None
    wanted = plan.forced.name if plan.forced is not None else None
    if not choice.tool_calls:
        target = f"the function `{wanted}`" if wanted else "one of the available functions"
        return f"you did not call a function; you must call {target}"
    by_name = {t.name: t for t in request.tools}
    for call in choice.tool_calls:
        if wanted is not None and call.name != wanted:
            return f"you called `{call.name}`, but you must call `{wanted}`"
        spec = by_name.get(call.name)
        if spec is None:
            return f"`{call.name}` is not an available function; choose one of: {', '.join(by_name)}"
        if call.parse_error:
            return call.parse_error
        error = validation_error(call.arguments, spec.parameters)
        if error is not None:
            return f"the arguments of `{call.name}` do not conform to its schema: {error}"
    return None


def feedback_reminder(plan: RequestPlan, request: ChatRequest) -> str:
    if request.output_schema is not None and plan.tool_mode != "json_schema":
        return schema_instruction(request.output_schema.json_schema)
    if plan.forced is not None:
        return f"Call the function `{plan.forced.name}` now, with arguments that conform to its schema."
    return "Call one of the available functions now, with arguments that conform to its schema."


def previous_output_text(choice: Choice) -> str:
    """What the model said, as plain assistant text (tool calls rendered hermes-style)."""
    parts = [choice.text] if choice.text else []
    if choice.tool_calls:
        parts.append(render_tool_calls_as_text(choice.tool_calls))
    return "\n".join(parts) or "(empty reply)"
