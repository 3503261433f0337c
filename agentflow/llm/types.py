"""Request and response types shared by every model backend.

These are the contract between the orchestration layers and the backends: a worker builds a
``ChatRequest``; a backend (OpenAI-compatible HTTP, in-process vLLM, ScriptedModel) returns a
``ChatResponse``. They are pydantic models so that run records serialize to JSON and back without
loss.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


class ToolCall(BaseModel):
    """A function call requested by the model.

    ``raw_arguments`` is exactly what the model produced; ``arguments`` is the parsed object when
    parsing (possibly after repair) succeeded. ``parse_error`` explains why it is ``None`` otherwise,
    so the worker can feed the problem back to the model instead of crashing.
    """

    id: str = Field(default_factory=new_call_id)
    name: str
    arguments: dict[str, Any] | None = None
    raw_arguments: str = ""
    parse_error: str | None = None
    #: how the call was recovered, e.g. "leaked <tool_call> block in content", "json_repair"
    repaired: str | None = None

    @model_validator(mode="after")
    def _fill_raw(self) -> ToolCall:
        if not self.raw_arguments and self.arguments is not None:
            self.raw_arguments = json.dumps(self.arguments, ensure_ascii=False)
        return self

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.raw_arguments or "{}"},
        }


class Message(BaseModel):
    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    #: for role="tool": the id of the call this message answers
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str | None = None, tool_calls: list[ToolCall] | None = None) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls or None)

    @classmethod
    def tool(cls, tool_call_id: str, content: str, name: str | None = None) -> Message:
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role}
        if self.role == "assistant" and self.tool_calls:
            out["content"] = self.content
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        else:
            out["content"] = self.content or ""
        if self.role == "tool":
            out["tool_call_id"] = self.tool_call_id
        if self.name and self.role != "tool":
            out["name"] = self.name
        return out


class ToolSpec(BaseModel):
    """A function the model may call, in OpenAI function-calling terms."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    #: ask the server to constrain the arguments to ``parameters`` (vLLM honours this)
    strict: bool = False

    def to_openai(self, *, strict: bool | None = None) -> dict[str, Any]:
        fn: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }
        if strict if strict is not None else self.strict:
            fn["strict"] = True
        return {"type": "function", "function": fn}


class NamedToolChoice(BaseModel):
    """Force a call to one specific tool."""

    name: str


ToolChoice = Literal["auto", "required", "none"] | NamedToolChoice


class OutputSchema(BaseModel):
    """Constrain the text output to a JSON schema (structured output)."""

    name: str = "output"
    json_schema: dict[str, Any]
    strict: bool = True


class CallContext(BaseModel):
    """Who made a model call: lets usage be attributed to a run, a node and a role."""

    run_id: str | None = None
    node_id: str | None = None
    role: str | None = None  # planner, worker, critic, coordinator, answer, ...
    worker: str | None = None


class ChatRequest(BaseModel):
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: ToolChoice | None = None
    output_schema: OutputSchema | None = None
    n: int = Field(default=1, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: list[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    #: override the backend's default model name for this request (a pool routes by it)
    model: str | None = None
    context: CallContext = Field(default_factory=CallContext)
    #: backend-specific extras merged into the request body (e.g. vLLM sampling params)
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @property
    def forced_tool(self) -> str | None:
        """Name of the tool the model must call, when the choice pins exactly one."""
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.name
        if self.tool_choice == "required" and len(self.tools) == 1:
            return self.tools[0].name
        return None


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Choice(BaseModel):
    index: int = 0
    text: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] | None = None
    #: structured output parsed against ``request.output_schema`` (None when absent or invalid)
    parsed: Any = None
    #: why ``parsed`` is None although a schema was requested
    parse_error: str | None = None
    #: notes about repairs applied to this choice (leaked tool calls, near-JSON)
    repairs: list[str] = Field(default_factory=list)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cache_hit_rate(self) -> float | None:
        """Share of prompt tokens served from the server's prefix cache (None without prompt tokens).

        vLLM reports per-request cached tokens when started with ``--enable-prompt-tokens-details``
        (``agentflow serve`` does), so a run's summed usage carries its own hit rate even when other
        clients share the server.
        """
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens > 0 else None

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class Latency(BaseModel):
    #: seconds to the first streamed token (equal to ``total_s`` for non-streaming calls)
    ttft_s: float | None = None
    total_s: float = 0.0


class ChatResponse(BaseModel):
    choices: list[Choice]
    usage: Usage = Field(default_factory=Usage)
    latency: Latency = Field(default_factory=Latency)
    model: str = ""
    #: which endpoint answered (useful behind a pool)
    endpoint: str | None = None
    #: attempts made, including the one that succeeded (transport retries)
    attempts: int = 1

    @property
    def first(self) -> Choice:
        return self.choices[0]

    @property
    def text(self) -> str:
        return self.choices[0].text or "" if self.choices else ""

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self.choices[0].tool_calls if self.choices else []


# --- streaming ----------------------------------------------------------------------------------


class TextDelta(BaseModel):
    kind: Literal["text"] = "text"
    index: int = 0
    text: str


class ToolCallDelta(BaseModel):
    kind: Literal["tool_call"] = "tool_call"
    index: int = 0
    call_index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class StreamDone(BaseModel):
    """Last event of every stream: the aggregated response, with usage and latency."""

    kind: Literal["done"] = "done"
    response: ChatResponse


StreamEvent = TextDelta | ToolCallDelta | StreamDone


class ModelInfo(BaseModel):
    """What a backend knows about the model it serves."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    max_model_len: int | None = None
    owned_by: str | None = None
