"""Options and error handling shared by CLI commands."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console

from agentflow.errors import AgentflowError

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"  # vLLM's default

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")

BaseUrlOption = typer.Option(
    None, "--base-url", help=f"OpenAI-compatible endpoint [env AGENTFLOW_BASE_URL, default {DEFAULT_BASE_URL}]"
)
ModelOption = typer.Option(None, "--model", "-m", help="Model name [env AGENTFLOW_MODEL, default: the server's first]")
ApiKeyOption = typer.Option(
    None, "--api-key", help="API key [env AGENTFLOW_API_KEY or OPENAI_API_KEY]", show_default=False
)


def resolve_endpoint(base_url: str | None, model: str | None, api_key: str | None) -> tuple[str, str | None, str | None]:
    """Flags win over environment variables, which win over defaults."""
    return (
        base_url or os.environ.get("AGENTFLOW_BASE_URL") or DEFAULT_BASE_URL,
        model or os.environ.get("AGENTFLOW_MODEL") or None,
        api_key or os.environ.get("AGENTFLOW_API_KEY") or os.environ.get("OPENAI_API_KEY") or None,
    )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; an AgentflowError becomes one clear message and exit code 1."""
    try:
        return asyncio.run(coro)
    except AgentflowError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {exc.hint}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


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
        caps = await probe.probe()
    finally:
        await probe.aclose()
    # pin the served model's name now: budgets, usage records and events all refer to it
    resolved = model or (caps.model_ids[0] if caps.model_ids else None)
    return OpenAICompatModel(base_url, model=resolved, api_key=api_key, capability_cache=cache)
