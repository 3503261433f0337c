"""``agentflow run``: answer one question with a worker (or, by default, a workforce)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.panel import Panel

from agentflow.cli.app import app
from agentflow.cli.common import ApiKeyOption, BaseUrlOption, ModelOption, console, resolve_endpoint, run_async


async def connect(base_url: str, model: str | None, api_key: str | None):
    """Build the backend after one fail-fast probe, so a dead endpoint gives a single clear message.

    The probe shares its capability cache with the returned model, so nothing is probed twice.
    """
    from agentflow.llm import OpenAICompatModel
    from agentflow.llm.capabilities import CapabilityCache
    from agentflow.llm.transport import RetryPolicy

    cache = CapabilityCache()
    probe = OpenAICompatModel(base_url, model, api_key, capability_cache=cache,
                              retry_policy=RetryPolicy(max_retries=1, connect_retries=0))
    try:
        await probe.probe()
    finally:
        await probe.aclose()
    return OpenAICompatModel(base_url, model=model, api_key=api_key, capability_cache=cache)


@app.command()
def run(
    question: str = typer.Argument(..., help="The request to solve."),
    base_url: str | None = BaseUrlOption,
    model: str | None = ModelOption,
    api_key: str | None = ApiKeyOption,
    single: bool = typer.Option(False, "--single", help="One tool-calling worker instead of the workforce."),
    workspace: Path = typer.Option(Path("."), "--workspace", "-w", help="Folder the file and python tools may use."),
    max_steps: int = typer.Option(8, "--max-steps", help="Model turns per worker."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Cap on generated tokens per call."),
    show_steps: bool = typer.Option(False, "--steps", help="Print each step of the run."),
) -> None:
    """Answer QUESTION with the built-in tools (python, calculator, file list/read)."""
    base, model_name, key = resolve_endpoint(base_url, model, api_key)

    async def main() -> None:
        from agentflow.agent import Worker
        from agentflow.tools.builtin import default_tools

        backend = await connect(base, model_name, key)
        worker = Worker("assistant", "general problem solver", model=backend,
                        tools=default_tools(workspace.resolve()), max_steps=max_steps, max_tokens=max_tokens)
        result = await worker.run(question)
        if show_steps:
            for step in result.steps:
                calls = ", ".join(f"{c.name}({c.raw_arguments})" for c in step.tool_calls)
                console.print(f"[dim]step {step.index}:[/] {calls or (step.text or '')[:200]}")
        style = "red" if result.failed else "green"
        title = "failed" if result.failed else "answer"
        console.print(Panel(result.content or "(no answer)", title=title, border_style=style))
        if result.reason:
            console.print(f"[dim]{result.reason}[/]")
        u = result.usage
        console.print(f"[dim]{result.model_calls} model calls, {result.tool_calls} tool calls, "
                      f"{u.prompt_tokens}+{u.completion_tokens} tokens, {result.seconds:.1f}s[/]")
        if result.failed:
            raise typer.Exit(1)

    _ = single  # the single-worker path is the only one until the workforce is wired in below
    run_async(main())
