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

__all__ = [
    "CallContext", "ChatModel", "ChatRequest", "ChatResponse", "Choice", "Latency", "Message", "ModelInfo",
    "NamedToolChoice", "OutputSchema", "StreamDone", "StreamEvent", "TextDelta", "TokenLogprob", "ToolCall",
    "ToolCallDelta", "ToolChoice", "ToolSpec", "Usage", "UsageLedger", "UsageRecord", "collect_stream",
    "stream_from_complete",
]
