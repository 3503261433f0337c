"""Built-in tools: sandboxed Python, an exact calculator and workspace-confined file access.

``default_tools(workspace)`` gives a worker the usual GAIA-style kit in one call.
"""

import os

from agentflow.tools.base import Tool
from agentflow.tools.builtin.calculator import calculate, calculator
from agentflow.tools.builtin.files import Workspace, file_tools
from agentflow.tools.builtin.python import python_tool
from agentflow.tools.builtin.sandbox import (
    NetworkIsolation,
    PythonSandbox,
    SandboxResult,
    network_isolation_support,
)


def default_tools(workspace: str | os.PathLike[str]) -> list[Tool]:
    """``[python, calculator, list_files, read_file]`` sharing one workspace directory."""
    return [python_tool(workspace), calculator, *file_tools(workspace)]


__all__ = [
    "NetworkIsolation", "PythonSandbox", "SandboxResult", "Workspace", "calculate", "calculator",
    "default_tools", "file_tools", "network_isolation_support", "python_tool",
]
