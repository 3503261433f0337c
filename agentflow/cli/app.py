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


# Command modules register themselves on import; list every one here.
from agentflow.cli import bench_cmd, bench_gaia_cmd, doctor_cmd, run_cmd, serve_cmd
