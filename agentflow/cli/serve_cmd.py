"""``agentflow serve``: run a vLLM server set up for agentflow, in the foreground.

The command owns the server's whole process group: Ctrl-C, SIGTERM or SIGHUP to agentflow stop
vLLM and its engine processes, and if vLLM dies on its own the command exits with its status and
the last lines of its log.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agentflow.cli.app import app
from agentflow.errors import AgentflowError
from agentflow.llm.vllm_server import (
    VllmServer,
    VllmServerConfig,
    build_command,
    provision_tiny,
    resolve_launcher,
    tiny_cpu_config,
)

console = Console(stderr=True)


class _Stop(Exception):
    """Raised from a signal handler so that ``finally`` blocks stop the server."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help="model name or local checkpoint dir")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="build (once) and serve the tiny random CPU test model")] = False,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    tool_parser: Annotated[str | None, typer.Option(
        "--tool-parser", help="vLLM tool-call parser (default: chosen from the model family)")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="context length (prompt + output tokens)")] = None,
    served_model_name: Annotated[str | None, typer.Option(help="name clients send as `model`")] = None,
    dtype: Annotated[str | None, typer.Option(help="weights dtype, e.g. bfloat16, float32")] = None,
    enforce_eager: Annotated[bool, typer.Option(help="disable CUDA graphs / compilation")] = False,
    no_prefix_caching: Annotated[bool, typer.Option("--no-prefix-caching", help="disable prefix caching")] = False,
    api_key: Annotated[str | None, typer.Option(help="require this API key from clients")] = None,
    python: Annotated[str | None, typer.Option(help="python of a venv that has vLLM installed")] = None,
    log_file: Annotated[Path | None, typer.Option(help="write vLLM's output here (default: a temp file)")] = None,
    show_logs: Annotated[bool, typer.Option("--show-logs", help="stream vLLM's output to the terminal")] = False,
    startup_timeout: Annotated[float, typer.Option(help="seconds to wait for /health")] = 900.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the command line and exit")] = False,
) -> None:
    """Start a vLLM OpenAI-compatible server with tool calling, prefix caching and metrics on.

    Arguments after `--` go to vLLM unchanged, e.g. `agentflow serve -m M -- --tensor-parallel-size 2`.
    """
    if not tiny and not model:
        console.print("[red]error:[/] pass --model NAME_OR_DIR, or --tiny for the CPU test model")
        raise typer.Exit(2)
    common = {
        "host": host, "port": port, "tool_parser": tool_parser, "api_key": api_key,
        "enable_prefix_caching": not no_prefix_caching, "extra_args": list(ctx.args),
    }
    for key, value in (("max_model_len", max_model_len), ("served_model_name", served_model_name),
                       ("dtype", dtype)):
        if value is not None:
            common[key] = value
    if enforce_eager:
        common["enforce_eager"] = True
    try:
        if tiny:
            with console.status("Preparing the tiny CPU model (first run installs vLLM: ~3 min, ~3.4 GB)..."):
                venv_python, model_dir = provision_tiny(python)
            if model:
                console.print("[yellow]--tiny given: ignoring --model[/]")
            config = tiny_cpu_config(model_dir, python=venv_python, **common)
        else:
            config = VllmServerConfig(model=model, python=python, **common)
    except AgentflowError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc

    if dry_run:
        typer.echo(" ".join(build_command(config)))
        return

    server = VllmServer(config, log_path=None if show_logs else log_file, inherit_output=show_logs)
    console.print(f"[dim]launcher: {resolve_launcher(config.python).reason}[/]")
    console.print(f"[dim]tool-call parser: {server.tool_parser} ({server.tool_parser_reason})[/]")
    if server.log_path:
        console.print(f"[dim]vLLM log: {server.log_path}[/]")

    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    exit_code = 0
    try:
        server.start()
        console.print(f"[dim]vLLM pid {server.pgid} (its own process group)[/]")
        with console.status(f"Waiting for vLLM to load {config.model_name} ..."):
            waited = asyncio.run(server.wait_healthy(startup_timeout))
        console.print(f"[green]vLLM ready[/] in {waited:.0f}s: model [bold]{config.model_name}[/]")
        typer.echo(config.base_url)  # stdout: scripts can capture the base URL
        console.print("[dim]Ctrl-C stops the server.[/]")
        assert server.process is not None
        while (code := server.process.poll()) is None:
            time.sleep(0.5)
        console.print(f"[red]vLLM exited on its own with status {code}[/]; last log lines:\n{server.log_tail()}")
        exit_code = code or 1
    except (KeyboardInterrupt, _Stop) as exc:
        name = exc.args[0] if isinstance(exc, _Stop) else "SIGINT"
        console.print(f"[yellow]{name}: stopping vLLM ...[/]")
        exit_code = 128 + (exc.signum if isinstance(exc, _Stop) else signal.SIGINT)
    except AgentflowError as exc:
        console.print(f"[red]error:[/] {exc}")
        exit_code = 1
    finally:
        # stopping must not be interrupted by a second Ctrl-C, or the engine would be orphaned
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if exit_code in (128 + signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGHUP):
            console.print("vLLM stopped.")
    raise typer.Exit(exit_code)
