"""The typer application; each command group lives in its own module and registers itself here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="agentflow",
    help="LLM agent orchestration against local vLLM or any OpenAI-compatible server.",
    no_args_is_help=True,
    add_completion=False,
)

# Command modules register on import. Keep one line per module.
from agentflow.cli import run_cmd  # noqa: E402,F401
from agentflow.cli import doctor_cmd  # noqa: E402,F401
