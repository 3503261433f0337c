"""The typer application; each command group lives in its own module and registers itself here."""

from __future__ import annotations

import logging

import typer

app = typer.Typer(
    name="agentflow",
    help="LLM agent orchestration against local vLLM or any OpenAI-compatible server.",
    no_args_is_help=True,
    add_completion=False,
)



@app.callback()
def _configure(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    """Library code logs with `logging`; the CLI shows those logs through rich."""
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(show_path=False, rich_tracebacks=False)], force=True)
    if not verbose:
        for noisy in ("httpx", "httpcore", "openai"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


# Command modules register on import. Keep one line per module.
from agentflow.cli import run_cmd  # noqa: E402,F401
from agentflow.cli import doctor_cmd  # noqa: E402,F401
