"""The ``python`` tool: lets a model run code in a ``PythonSandbox`` and read what it printed.

The result text always states the exit status, both output streams and whether network
isolation was in effect, so the model (and a human reading the trace) never has to guess how a
run ended. A non-zero exit or a timeout is reported as an error result (``error_kind`` =
``"exception"`` / ``"timeout"``) with the output still included, because the traceback is what
the model needs to fix its code.

Isolation in short (the full account is in ``agentflow.tools.builtin.sandbox`` and docs/tools.md):
isolated are the process (fresh ``python -I`` per call, own process group, killed at the time
limit), memory/CPU/file-size/process-count rlimits, the working directory (fresh temp dir unless
a workspace is given), the environment (allow-list only, so no API keys or tokens), stdin, and on
Linux the network (private empty network namespace, reported in every result; when the OS
refuses, the code runs with network access and the result says ``network: NOT isolated``). Not
isolated: reading and writing the file system with the user's permissions, the user's privileges
(root stays root), processes that call ``setsid()``, and local IPC. It is a guard against
accidents, not a security boundary against hostile code.
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import Field

from agentflow.tools.base import Tool
from agentflow.tools.builtin.sandbox import PythonSandbox
from agentflow.tools.result import ToolResult


def python_tool(
    workspace: str | os.PathLike[str] | None = None,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    max_output_chars: int = 4000,
    allow_network: bool = False,
    require_network_isolation: bool = False,
    env: dict[str, str] | None = None,
    name: str = "python",
) -> Tool:
    """A tool that runs Python code in a sandboxed subprocess.

    ``workspace``: directory the code runs in (its files persist between calls); without one every
    call starts in a fresh, empty temporary directory. ``max_output_chars`` applies to stdout and
    stderr separately (head and tail are kept). See ``agentflow.tools.builtin.sandbox`` for exactly
    what is isolated; ``env`` adds variables to the otherwise scrubbed environment.
    """
    sandbox = PythonSandbox(
        workspace, timeout_s=timeout_s, memory_mb=memory_mb, max_output_chars=max_output_chars,
        allow_network=allow_network, require_network_isolation=require_network_isolation, env=env,
    )
    isolation = sandbox.network_isolation()
    where = (
        "The working directory is a shared workspace: files written there persist between calls."
        if workspace is not None
        else "Each call starts in a fresh, empty working directory; files do not persist between calls."
    )
    network = "Network access is disabled." if isolation.available else "Network access is not blocked."
    description = (
        "Run Python 3 code in a sandboxed subprocess and return its exit code, stdout and stderr. "
        "Each call is a fresh interpreter: variables and imports do not persist between calls, so "
        "include everything the code needs. Use print() to show results; the value of a final bare "
        f"expression is printed too. {where} Limits: {timeout_s:g} s wall time, {memory_mb} MB memory. "
        f"{network}"
    )

    async def run_python(
        code: Annotated[str, Field(description="Complete Python 3 source code to execute.")],
    ) -> ToolResult:
        outcome = await sandbox.run(code)
        kind = None if outcome.ok else ("timeout" if outcome.timed_out else "exception")
        return ToolResult(name=name, content=outcome.format(), is_error=not outcome.ok, error_kind=kind)

    # the sandbox enforces the real limit; the tool-level timeout only guards the machinery
    return Tool(run_python, name=name, description=description, timeout=timeout_s + 30.0,
                max_output_chars=2 * max_output_chars + 2000, side_effects=True)
