"""``agentflow bench gaia``: run a solver over GAIA (or the bundled GAIA-style set), resumably.

    agentflow bench gaia --data-dir ~/data/GAIA --split validation --level 1 --limit 20 \\
        --concurrency 4 --timeout 600 --out runs/gaia-l1

Re-running the same command resumes: finished tasks are skipped. ``--report-only`` prints the
table of an existing results folder without running anything.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agentflow.cli.bench_cmd import bench_app
from agentflow.cli.common import (
    ApiKeyOption,
    BaseUrlOption,
    ModelOption,
    connect,
    console,
    err_console,
    resolve_endpoint,
    run_async,
)
from agentflow.errors import ConfigurationError

SOLVER_HELP = ("workforce: a planned, parallel workforce per task with the GAIA toolkit and GAIA answer rules "
               "(default); worker: one tool-calling worker per task; single: one model call, no tools; "
               "module:attr: your own solver (an async callable taking the task, or a zero-argument factory "
               "returning one).")


def _custom_solver(spec: str):
    module_name, _, attr = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load solver {spec!r}: {exc}",
                                 hint="use module:attribute with the module importable (on PYTHONPATH)") from None
    is_solver = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(type(target).__call__)
    return target if is_solver else target()


def _price_fn(price_in: float | None, price_out: float | None):
    if price_in is None and price_out is None:
        return None

    def cost(output) -> float:
        return (output.usage.prompt_tokens * (price_in or 0.0) + output.usage.completion_tokens * (price_out or 0.0)) / 1e6
    return cost


@bench_app.command("gaia")
def gaia(
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder; reusing it resumes the run.")],
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="GAIA dataset folder [env GAIA_DATA_DIR].")] = None,
    split: Annotated[str, typer.Option("--split", help="validation or test.")] = "validation",
    level: Annotated[list[int] | None, typer.Option("--level", help="Only this level (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="At most N tasks (after the level filter).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Tasks run at the same time.")] = 4,
    timeout: Annotated[float | None, typer.Option("--timeout", min=1, help="Seconds per task attempt.")] = None,
    attempts: Annotated[int, typer.Option("--attempts", min=1, help="Attempts per task; k > 1 adds a pass@k column.")] = 1,
    solver: Annotated[str, typer.Option("--solver", help=SOLVER_HELP)] = "workforce",
    base_url: str | None = BaseUrlOption,
    model: str | None = ModelOption,
    api_key: str | None = ApiKeyOption,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1, help="Model turns per worker.")] = 12,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Cap on generated tokens per call.")] = None,
    corpus: Annotated[Path | None, typer.Option("--corpus", help="Documents for local search [default: <split folder>/corpus when it exists].")] = None,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Rerun attempts that timed out or crashed.")] = False,
    raw_answers: Annotated[bool, typer.Option("--raw-answers", help="Score answers as given, without GAIA formatting.")] = False,
    price_in: Annotated[float | None, typer.Option("--price-in", help="USD per million prompt tokens (cost column).")] = None,
    price_out: Annotated[float | None, typer.Option("--price-out", help="USD per million completion tokens.")] = None,
    report_only: Annotated[bool, typer.Option("--report-only", help="Print the report of --out; run nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run the GAIA benchmark: results JSONL, leaderboard submission, per-level table; resumable."""
    from agentflow.evals import GaiaRunner, RunOptions, load_gaia_tasks, report_table
    from agentflow.evals.answer_format import format_gaia_answer
    from agentflow.evals.loader import find_split_dir, resolve_data_dir
    from agentflow.evals.report import write_outputs
    from agentflow.evals.results import RESULTS_FILE, SUBMISSION_FILE, load_records

    async def main() -> None:
        root = resolve_data_dir(data_dir)
        split_dir = find_split_dir(root, split)
        tasks = load_gaia_tasks(root, split, levels=level or None, limit=limit)
        if not tasks:
            raise ConfigurationError("no tasks selected", hint="check --level / --limit / --split")
        if report_only:
            report = write_outputs(out, tasks, load_records(out / RESULTS_FILE), attempts=attempts)
            console.print(report_table(report))
            return
        corpus_dir = corpus or (split_dir / "corpus" if (split_dir / "corpus").is_dir() else None)

        if ":" in solver:
            chosen, name = _custom_solver(solver), solver
        elif solver in {"workforce", "worker", "single"}:
            from agentflow.evals import ChatModelSolver
            from agentflow.evals.adapters import WorkerSolver, WorkforceSolver
            from agentflow.evals.answer_format import GaiaAnswerRules
            from agentflow.workforce import build_default_workforce

            base, model_name, key = resolve_endpoint(base_url, model, api_key)
            backend = await connect(base, model_name, key)  # a dead endpoint fails here, once, clearly
            if solver == "workforce":
                chosen = WorkforceSolver(lambda tools, task: build_default_workforce(
                    backend, tools, max_steps=max_steps, max_tokens=max_tokens, formatter=GaiaAnswerRules()))
            elif solver == "worker":
                chosen = WorkerSolver(backend, max_steps=max_steps, max_tokens=max_tokens)
            else:
                chosen = ChatModelSolver(backend, max_tokens=max_tokens)
            name = f"{solver}:{getattr(backend, 'name', '')}"
        else:
            raise ConfigurationError(f"unknown solver {solver!r}", hint=SOLVER_HELP)

        console.print(f"[bold]GAIA[/] {split}: {len(tasks)} tasks from {split_dir} -> {out}"
                      + (f" (corpus: {corpus_dir})" if corpus_dir else ""))
        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[acc]}"), TimeElapsedColumn(), console=console,
                            disable=quiet, transient=False)
        bar = progress.add_task("running", total=None, acc="")

        def on_progress(update) -> None:
            acc = update.running_accuracy
            shown = "" if acc is None else f"accuracy {100 * acc:.1f}% ({update.correct}/{update.scored})"
            progress.update(bar, total=update.total, completed=update.done, acc=shown)

        runner = GaiaRunner(
            tasks, chosen, out, options=RunOptions(concurrency=concurrency, timeout=timeout, attempts=attempts,
                                                   retry_errors=retry_errors),
            data_dir=root, split=split, solver_name=name, formatter=None if raw_answers else format_gaia_answer,
            cost_fn=_price_fn(price_in, price_out), on_progress=on_progress, workspace=split_dir, corpus=corpus_dir,
        )
        with progress:
            report = await runner.run()
        console.print(report_table(report))
        if report.timeouts:
            console.print(f"[yellow]timed out ({len(report.timeouts)}):[/] " + ", ".join(report.timeouts))
        for task_id, error in report.errors.items():
            err_console.print(f"[red]error[/] {task_id}: {error[:300]}")
        if report.unfinished:
            console.print(f"[yellow]unfinished ({len(report.unfinished)}):[/] rerun the same command to resume")
        console.print(f"results: {out / RESULTS_FILE}\nsubmission: {out / SUBMISSION_FILE}")

    run_async(main())
