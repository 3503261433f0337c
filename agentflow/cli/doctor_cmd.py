"""``agentflow doctor``: probe an endpoint and show what agentflow can use there."""

from __future__ import annotations

import typer
from rich.table import Table

from agentflow.cli.app import app
from agentflow.cli.common import (
    ApiKeyOption,
    BaseUrlOption,
    ModelOption,
    console,
    resolve_endpoint,
    run_async,
)

_MARKS = {True: "[green]yes[/]", False: "[red]no[/]", None: "[yellow]?[/]"}


@app.command()
def doctor(
    base_url: str | None = BaseUrlOption,
    model: str | None = ModelOption,
    api_key: str | None = ApiKeyOption,
    timeout: float = typer.Option(15.0, "--timeout", help="Seconds per probe request."),
) -> None:
    """Probe an OpenAI-compatible endpoint and print a capability table.

    Exits non-zero when nothing answers at the URL.
    """
    base, model_name, key = resolve_endpoint(base_url, model, api_key)

    async def main() -> None:
        from agentflow.errors import AgentflowError
        from agentflow.llm.metrics import fetch_metrics
        from agentflow.llm.openai_compat import probe_endpoint

        caps = await probe_endpoint(base, key, model_name, timeout=timeout)
        table = Table(title=f"agentflow doctor — {base}", show_lines=False)
        table.add_column("capability")
        table.add_column("ok", justify="center")
        table.add_column("detail", overflow="fold")
        for row in caps.table():
            table.add_row(row.label, _MARKS[row.available], row.detail)
        console.print(table)
        if caps.is_vllm and caps.metrics.available:
            try:
                snap = await fetch_metrics(base, timeout=timeout)
            except AgentflowError as exc:
                console.print(f"[yellow]metrics unreadable:[/] {exc.message}")
            else:
                kv = f"{snap.kv_cache_usage:.1%}" if snap.kv_cache_usage is not None else "n/a"
                hits, queries = snap.prefix_cache_hits, snap.prefix_cache_queries
                rate = f"{hits / queries:.1%}" if hits is not None and queries else "n/a"
                console.print(f"[dim]vLLM load: running={snap.running} waiting={snap.waiting} "
                              f"kv-cache={kv} prefix-cache hit rate since start={rate}[/]")
        missing = [r.label for r in caps.table() if r.available is False]
        if missing:
            console.print(f"[yellow]not available:[/] {', '.join(missing)} — agentflow falls back to "
                          "prompting plus validation for missing constraints.")

    run_async(main())
