"""Tools: functions a model can call, with schemas from type hints and failure-proof execution.

    from agentflow.tools import tool, Toolkit

    @tool
    def add(a: int, b: int) -> int:
        '''Add two integers.

        Args:
            a: The first addend.
            b: The second addend.
        '''
        return a + b

    result = await Toolkit([add]).execute(call)   # a ToolResult, never an exception

Built-in tools (sandboxed Python, calculator, workspace file access) live in
``agentflow.tools.builtin``.
"""

from agentflow.tools.base import TOOL_NAME_PATTERN, Tool, tool, validate_tool_name
from agentflow.tools.result import ErrorKind, ToolFailure, ToolResult
from agentflow.tools.toolkit import Toolkit

__all__ = [
    "TOOL_NAME_PATTERN", "ErrorKind", "Tool", "ToolFailure", "ToolResult", "Toolkit", "tool",
    "validate_tool_name",
]
