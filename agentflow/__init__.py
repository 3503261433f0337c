"""agentflow: LLM agent orchestration.

A planner turns a request into a typed task DAG, a coordinator assigns nodes to workers, a
scheduler runs ready nodes concurrently against a local vLLM server (or any OpenAI-compatible
endpoint), a critic checks results and triggers localized replanning, and a budget allocator
decides which model and how many samples each node gets.
"""

from agentflow.agent import StepRecord, TaskResult, Worker
from agentflow.errors import AgentflowError
from agentflow.llm import (
    ChatModel,
    ChatRequest,
    ChatResponse,
    Message,
    OutputSchema,
    ToolCall,
    ToolSpec,
    Usage,
)
from agentflow.testing import ScriptedModel
from agentflow.tools import Tool, ToolFailure, Toolkit, ToolResult, tool
from agentflow.workforce import (
    Plan,
    PlanNode,
    RunResult,
    Workforce,
    WorkforceConfig,
    build_default_workforce,
    run_sync,
)

__version__ = "0.1.0"

__all__ = [
    "AgentflowError", "ChatModel", "ChatRequest", "ChatResponse", "Message", "OutputSchema", "ScriptedModel",
    "StepRecord", "TaskResult", "Tool", "ToolCall", "ToolFailure", "ToolResult", "ToolSpec", "Toolkit", "Usage",
    "Worker", "__version__", "tool", "Plan", "PlanNode", "RunResult", "Workforce", "WorkforceConfig",
    "build_default_workforce", "run_sync",
]
