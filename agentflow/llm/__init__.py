"""Model backends: the ChatModel protocol, request/response types, usage accounting."""

from agentflow.llm.base import ChatModel, collect_stream, stream_from_complete
from agentflow.llm.types import (
    CallContext,
    ChatRequest,
    ChatResponse,
    Choice,
    Latency,
    Message,
    ModelInfo,
    NamedToolChoice,
    OutputSchema,
    StreamDone,
    StreamEvent,
    TextDelta,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)
from agentflow.llm.usage import UsageLedger, UsageRecord

# The HTTP backend imports the ``openai`` client (~1.5 s); load it only when it is used, so code
# that only needs the types (tests with ScriptedModel, the CLI's --help) starts fast.
_LAZY = {
    "OpenAICompatModel": "agentflow.llm.openai_compat",
    "probe_endpoint": "agentflow.llm.openai_compat",
    "EndpointPool": "agentflow.llm.pool",
    "Capabilities": "agentflow.llm.capabilities",
    "Capability": "agentflow.llm.capabilities",
    "CapabilityCache": "agentflow.llm.capabilities",
    "RetryPolicy": "agentflow.llm.transport",
    "RetryNotice": "agentflow.llm.transport",
    "VllmServer": "agentflow.llm.vllm_server",
    "VllmServerConfig": "agentflow.llm.vllm_server",
    "VllmEngineModel": "agentflow.llm.vllm_engine",
    "fetch_metrics": "agentflow.llm.metrics",
    "VllmMetrics": "agentflow.llm.metrics",
    "AimdLimiter": "agentflow.llm.metrics",
    "MetricsAwareModel": "agentflow.llm.metrics",
    "PrefixCacheProbe": "agentflow.llm.metrics",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentflow.llm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CallContext", "ChatModel", "ChatRequest", "ChatResponse", "Choice", "Latency", "Message", "ModelInfo",
    "NamedToolChoice", "OutputSchema", "StreamDone", "StreamEvent", "TextDelta", "TokenLogprob", "ToolCall",
    "ToolCallDelta", "ToolChoice", "ToolSpec", "Usage", "UsageLedger", "UsageRecord", "collect_stream",
    "stream_from_complete",
    # lazily imported (see _LAZY)
    "Capabilities", "Capability", "CapabilityCache", "EndpointPool", "OpenAICompatModel", "RetryNotice",
    "RetryPolicy", "probe_endpoint", "VllmServer", "VllmServerConfig", "VllmEngineModel", "fetch_metrics",
    "VllmMetrics", "AimdLimiter", "MetricsAwareModel", "PrefixCacheProbe",
]
