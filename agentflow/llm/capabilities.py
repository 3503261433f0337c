"""What an OpenAI-compatible endpoint can do, found out by asking it.

vLLM, OpenAI, llama.cpp and Ollama all speak "the OpenAI API" but accept different subsets of it:
``tool_choice="required"``, ``strict`` tools, ``json_schema`` response formats, ``n > 1`` and
logprobs are each missing somewhere. Rather than guessing from a server name, the client probes
each feature with a tiny request (``max_tokens=1``) and adapts: it never silently drops a
constraint, it replaces it with an enforced fallback (prompt + validation + retry).

Probing is lazy: a client starts optimistic (``available=None`` means "not probed, assume yes"),
learns from 400 responses, and runs targeted probes only when a rejection is ambiguous.
``await model.probe()`` probes everything at once, which is what ``agentflow doctor`` shows.
Results are cached per endpoint on the model, and can be shared between models through a
``CapabilityCache``.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from agentflow.llm.types import ModelInfo

Feature = Literal[
    "tool_choice_auto",
    "tool_choice_required",
    "tool_choice_named",
    "strict_tools",
    "json_schema",
    "n_samples",
    "logprobs",
    "streaming",
]

#: features probed with a chat request, in the order a capability table lists them (the order of
#: ``Feature``, read from it so that a new feature needs adding in one place only)
FEATURES: tuple[Feature, ...] = get_args(Feature)

LABELS: dict[str, str] = {
    "server": "server",
    "models": "models",
    "max_model_len": "max_model_len",
    "tool_choice_auto": 'tool_choice="auto"',
    "tool_choice_required": 'tool_choice="required"',
    "tool_choice_named": "tool_choice (named function)",
    "strict_tools": "strict tool arguments",
    "json_schema": "json_schema output",
    "n_samples": "n > 1 samples",
    "logprobs": "logprobs",
    "streaming": "streaming",
    "metrics": "/metrics endpoint",
}


class Capability(BaseModel):
    """One feature: whether the endpoint supports it, and the evidence."""

    #: True/False once known; None while not probed (requests then assume it works)
    available: bool | None = None
    detail: str = "not probed"

    @property
    def usable(self) -> bool:
        """Whether requests should use the feature natively (optimistic while unknown)."""
        return self.available is not False


class CapabilityRow(BaseModel):
    """One line of a capability table (``agentflow doctor``)."""

    key: str
    label: str
    available: bool | None
    detail: str


class Capabilities(BaseModel):
    """Everything known about one endpoint."""

    base_url: str
    #: served models, from GET /v1/models
    models: list[ModelInfo] = Field(default_factory=list)
    is_vllm: bool = False
    #: server version from GET /version (vLLM), when available
    version: str | None = None
    tool_choice_auto: Capability = Field(default_factory=Capability)
    tool_choice_required: Capability = Field(default_factory=Capability)
    tool_choice_named: Capability = Field(default_factory=Capability)
    strict_tools: Capability = Field(default_factory=Capability)
    json_schema: Capability = Field(default_factory=Capability)
    n_samples: Capability = Field(default_factory=Capability)
    logprobs: Capability = Field(default_factory=Capability)
    streaming: Capability = Field(default_factory=Capability)
    metrics: Capability = Field(default_factory=Capability)
    #: optional request fields the server refused with HTTP 400; no longer sent to it
    rejected_fields: list[str] = Field(default_factory=list)
    #: fields the server wants under another name (e.g. max_tokens -> max_completion_tokens)
    renamed_fields: dict[str, str] = Field(default_factory=dict)
    #: GET /v1/models and /version have been asked
    discovered: bool = False
    #: every feature has been probed (``probe()``)
    probed: bool = False
    probed_at: float | None = None

    @property
    def model_ids(self) -> list[str]:
        return [m.id for m in self.models]

    @property
    def max_model_len(self) -> int | None:
        return self.models[0].max_model_len if self.models else None

    def model_info(self, model: str | None) -> ModelInfo | None:
        for info in self.models:
            if info.id == model:
                return info
        return None

    @property
    def server(self) -> str:
        if self.is_vllm:
            return f"vLLM {self.version}" if self.version else "vLLM"
        return "OpenAI-compatible (not vLLM)"

    def feature(self, name: Feature | Literal["metrics"]) -> Capability:
        return getattr(self, name)

    def mark(self, name: Feature | Literal["metrics"], available: bool | None, detail: str) -> None:
        setattr(self, name, Capability(available=available, detail=detail))

    def unknown(self, names: tuple[Feature, ...] | list[Feature]) -> list[Feature]:
        return [n for n in names if self.feature(n).available is None]

    def table(self) -> list[CapabilityRow]:
        """Rows for a human-readable table: server, models, context length, then each feature."""
        rows = [
            CapabilityRow(key="server", label=LABELS["server"], available=self.discovered or None,
                          detail=self.server if self.discovered else "not contacted"),
            CapabilityRow(key="models", label=LABELS["models"], available=bool(self.models) if self.discovered else None,
                          detail=", ".join(self.model_ids) or ("none listed" if self.discovered else "not contacted")),
            CapabilityRow(key="max_model_len", label=LABELS["max_model_len"],
                          available=self.max_model_len is not None if self.discovered else None,
                          detail=str(self.max_model_len) if self.max_model_len else "not reported by the server"),
        ]
        for name in (*FEATURES, "metrics"):
            cap = self.feature(name)  # type: ignore[arg-type]
            rows.append(CapabilityRow(key=name, label=LABELS[name], available=cap.available, detail=cap.detail))
        return rows


class CapabilityCache:
    """Capabilities shared by every model talking to the same endpoint.

    Pass one cache to several ``OpenAICompatModel`` instances (different model names on one
    server, or pool members re-created per run) so an endpoint is probed once and a rejected
    field is learned once.
    """

    def __init__(self) -> None:
        self._by_url: dict[str, Capabilities] = {}

    def get(self, base_url: str) -> Capabilities | None:
        return self._by_url.get(base_url)

    def get_or_create(self, base_url: str) -> Capabilities:
        caps = self._by_url.get(base_url)
        if caps is None:
            caps = self._by_url[base_url] = Capabilities(base_url=base_url)
        return caps

    def clear(self) -> None:
        self._by_url.clear()

    def __contains__(self, base_url: object) -> bool:
        return base_url in self._by_url

    def __len__(self) -> int:
        return len(self._by_url)


# --- feature probes ------------------------------------------------------------------------------

_PROBE_TOOL = {
    "type": "function",
    "function": {
        "name": "probe",
        "description": "Capability probe; never executed.",
        "parameters": {
            "type": "object",
            "properties": {"x": {"type": "integer"}},
            "required": ["x"],
            "additionalProperties": False,
        },
    },
}

_PROBE_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


def probe_body(feature: Feature, model: str) -> dict[str, Any]:
    """The smallest chat request that exercises ``feature`` (one output token)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say OK."}],
        "max_tokens": 1,
        "temperature": 0,
    }
    if feature == "tool_choice_auto":
        body.update(tools=[_PROBE_TOOL], tool_choice="auto")
    elif feature == "tool_choice_required":
        body.update(tools=[_PROBE_TOOL], tool_choice="required")
    elif feature == "tool_choice_named":
        body.update(tools=[_PROBE_TOOL], tool_choice={"type": "function", "function": {"name": "probe"}})
    elif feature == "strict_tools":
        strict_tool = {"type": "function", "function": {**_PROBE_TOOL["function"], "strict": True}}
        body.update(tools=[strict_tool], tool_choice={"type": "function", "function": {"name": "probe"}})
    elif feature == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "probe", "schema": _PROBE_SCHEMA, "strict": True},
        }
    elif feature == "n_samples":
        body["n"] = 2
        body["temperature"] = 1.0  # vLLM refuses n > 1 with greedy sampling
    elif feature == "logprobs":
        body.update(logprobs=True, top_logprobs=2)
    elif feature == "streaming":
        body.update(stream=True, stream_options={"include_usage": True})
    return body


class ProbeOutcome(BaseModel):
    """What a probe request produced: a parsed body (2xx) or an error."""

    ok: bool
    #: HTTP status of a rejection (None for transport failures)
    status: int | None = None
    data: dict[str, Any] | None = None
    error: str | None = None


def judge(feature: Feature, outcome: ProbeOutcome) -> Capability:
    """Turn a probe's outcome into a capability verdict with a short reason."""
    if not outcome.ok:
        if outcome.status is not None and 400 <= outcome.status < 500 and outcome.status not in (401, 403, 408, 429):
            return Capability(available=False, detail=f"rejected (HTTP {outcome.status}): {_short(outcome.error)}")
        return Capability(available=None, detail=f"probe inconclusive: {_short(outcome.error)}")
    data = outcome.data or {}
    choices = data.get("choices") or []
    if feature == "n_samples":
        if len(choices) < 2:
            return Capability(available=False, detail=f"accepted n=2 but returned {len(choices)} choice(s)")
        return Capability(available=True, detail="n=2 returned 2 choices")
    if feature == "logprobs":
        lp = choices[0].get("logprobs") if choices else None
        if not lp or not lp.get("content"):
            return Capability(available=False, detail="accepted but returned no logprobs")
        return Capability(available=True, detail="token logprobs with top alternatives")
    if feature == "streaming":
        usage = "with usage" if data.get("usage") else "no usage in stream"
        return Capability(available=True, detail=f"server-sent events ({usage})")
    return Capability(available=True, detail="accepted")


def _short(text: str | None, limit: int = 160) -> str:
    text = " ".join((text or "no detail").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
