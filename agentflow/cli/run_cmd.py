"""``agentflow run``: answer one question with a worker (or, by default, a workforce)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.panel import Panel

from agentflow.cli.app import app
from agentflow.cli.common import (
    ApiKeyOption,
    BaseUrlOption,
    ModelOption,
    connect,
    console,
    resolve_endpoint,
    run_async,
)
from agentflow.errors import ConfigurationError


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
    critic: bool = typer.Option(True, "--critic/--no-critic", help="Check each node's result (workforce only)."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds for the whole run."),
    budget: float | None = typer.Option(None, "--budget", help="Compute budget for the whole run (workforce only)."),
    budget_unit: str = typer.Option("tokens", "--budget-unit", help="Unit of --budget: tokens, flops or usd."),
    samples: int = typer.Option(1, "--samples", min=1, help="Samples per worker node under --budget (majority vote)."),
    price_in: float | None = typer.Option(None, "--price-in", help="USD per million prompt tokens (--budget-unit usd)."),
    price_out: float | None = typer.Option(None, "--price-out", help="USD per million completion tokens."),
    show_steps: bool = typer.Option(False, "--steps", help="Print each step (single worker) or the final plan."),
) -> None:
    """Answer QUESTION with the built-in tools (python, calculator, file list/read).

    By default a workforce plans the request as a task DAG, runs independent nodes in parallel,
    checks each result and replans what failed; --single uses one tool-calling worker.
    """
    base, model_name, key = resolve_endpoint(base_url, model, api_key)
    tools_root = workspace.resolve()

    async def main() -> None:
        from agentflow.tools.builtin import default_tools

        backend = await connect(base, model_name, key)
        tools = default_tools(tools_root)
        if single:
            if budget is not None:
                raise ConfigurationError("--budget applies to workforce runs", hint="drop --single or --budget")
            await _run_single(backend, tools, question, max_steps, max_tokens, show_steps)
        else:
            policy = None
            if budget is not None:
                policy = budget_policy(budget, backend.name, budget_unit, samples, price_in, price_out)
            await _run_workforce(backend, tools, question, max_steps, max_tokens, critic, timeout, show_steps,
                                 policy)

    run_async(main())


def budget_policy(budget: float, model: str, unit: str, samples: int, price_in: float | None,
                  price_out: float | None):
    """The ``--budget`` options as a BudgetPolicy for the one served model."""
    from agentflow.budget.policy import BudgetPolicy
    from agentflow.budget.registry import ModelPrice, ModelRegistry, ModelSpec, guess_params

    registry = ModelRegistry()
    if unit.strip().lower() in {"usd", "dollars", "dollar"}:
        if price_in is None and price_out is None:
            raise ConfigurationError("a dollar budget needs the model's prices",
                                     hint="pass --price-in and --price-out (USD per million tokens)")
        registry.add(ModelSpec(name=model, params=guess_params(model) or 1.0,
                               prices=ModelPrice(input_per_mtok=price_in or 0.0, output_per_mtok=price_out or 0.0)))
    return BudgetPolicy.for_models(budget, [model], unit=unit, samples=samples, registry=registry)


async def _run_single(backend, tools, question: str, max_steps: int, max_tokens: int | None, show_steps: bool) -> None:
    from agentflow.agent import Worker

    worker = Worker("assistant", "general problem solver", model=backend, tools=tools, max_steps=max_steps,
                    max_tokens=max_tokens)
    result = await worker.run(question)
    if show_steps:
        for step in result.steps:
            calls = ", ".join(f"{c.name}({c.raw_arguments})" for c in step.tool_calls)
            console.print(f"[dim]step {step.index}:[/] {calls or (step.text or '')[:200]}")
    _print_answer(result.content, result.failed, result.reason)
    u = result.usage
    console.print(f"[dim]{result.model_calls} model calls, {result.tool_calls} tool calls, "
                  f"{u.prompt_tokens}+{u.completion_tokens} tokens, {result.seconds:.1f}s[/]")
    if result.failed:
        raise typer.Exit(1)


async def _run_workforce(backend, tools, question: str, max_steps: int, max_tokens: int | None, critic: bool,
                         timeout: float | None, show_steps: bool, policy) -> None:
    import asyncio

    from rich.live import Live

    from agentflow.workforce import build_default_workforce, render_run

    # a local model that cannot produce a valid plan still gets the request, as one worker node
    workforce = build_default_workforce(backend, tools, max_steps=max_steps, max_tokens=max_tokens, critic=critic,
                                        budget=policy, on_plan_failure="single_node")
    handle = workforce.start(question, timeout=timeout)
    # a live view only on a terminal; piped output gets the final answer alone
    with Live(render_run(handle.state), console=console, refresh_per_second=4, transient=not show_steps,
              auto_refresh=console.is_terminal) as live:
        while not handle.done():
            live.update(render_run(handle.state))
            await asyncio.sleep(0.25)
        result = await handle
        live.update(render_run(result.state))
    if show_steps and not console.is_terminal:
        console.print(render_run(result.state))
    ok = result.status in ("succeeded", "partial")
    _print_answer(result.answer or "", not ok, result.error if not ok else None)
    totals = result.usage
    hit = totals.cache_hit_rate
    cache = f"; prefix-cache hits {hit:.0%} of prompt tokens" if hit else ""
    console.print(f"[dim]status {result.status}; {len(result.state.nodes)} nodes; {result.model_calls} model calls; "
                  f"{totals.prompt_tokens}+{totals.completion_tokens} tokens{cache}; {result.duration_s:.1f}s[/]")
    if result.budget is not None:
        b = result.budget
        console.print(f"[dim]budget: spent {b.spent:.6g} of {b.budget:.6g} {b.unit} in {b.calls} calls"
                      + (f"; {len(b.degradations)} calls degraded to fit" if b.degradations else "") + "[/]")
    if not ok:
        raise typer.Exit(1)


def _print_answer(content: str, failed: bool, reason: str | None) -> None:
    console.print(Panel(content or "(no answer)", title="failed" if failed else "answer",
                        border_style="red" if failed else "green"))
    if reason:
        console.print(f"[dim]{reason}[/]")
