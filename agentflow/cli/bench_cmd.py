"""``agentflow bench``: benchmark command group; ``agentflow bench tts`` lives here.

Other benchmark commands add themselves to ``bench_app`` from their own modules (``bench gaia``
does), so this module only owns the group and the TTS allocation-search benchmark:

    agentflow bench tts --seeds 20 --trials 100 --out benchmarks/results
    agentflow bench tts --seeds 20 --base-url http://127.0.0.1:8000/v1 --model Qwen2.5-7B-Instruct

LLM-driven strategies (AgentTTS, LLM zero-shot) run only when a model is configured with
``--base-url``/``--model``; otherwise they are skipped and the output says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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

bench_app = typer.Typer(name="bench", help="Benchmarks: allocation search (tts), GAIA (gaia).",
                        no_args_is_help=True, add_completion=False)
app.add_typer(bench_app, name="bench")

JSON_NAME = "tts_bench.json"
PLOT_NAME = "tts_best_so_far.png"


@bench_app.command("tts")
def tts(
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Synthetic tasks (seeds 0..N-1).")] = 20,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Evaluations per search.")] = 100,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the JSON report and the plot.")]
    = Path("benchmarks/results"),
    strategies: Annotated[str | None, typer.Option(
        "--strategies", help="Comma-separated subset, e.g. random,bayesian,insight (default: all).")] = None,
    subtasks: Annotated[int | None, typer.Option("--subtasks", min=1, max=7,
                                                 help="Subtasks per task (default: 2 or 3, by seed).")] = None,
    noise: Annotated[float, typer.Option("--noise", min=0.0, help="Score noise (std) in the tables.")] = 0.004,
    max_distance: Annotated[float, typer.Option("--max-distance", min=0.0,
                                                help="Lookup: reject matches farther than this.")] = 0.25,
    base_url: str | None = BaseUrlOption,
    model: str | None = ModelOption,
    api_key: str | None = ApiKeyOption,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Compare allocation-search strategies on seeded synthetic AgentTTS tables.

    Prints, per strategy, the mean trials to reach 95% and 99% of each table's optimum and the
    area under the best-so-far curve; writes the full report as JSON and a best-so-far plot.
    """
    run_async(_tts(seeds=seeds, trials=trials, out=out, strategies=strategies, subtasks=subtasks, noise=noise,
                   max_distance=max_distance, base_url=base_url, model=model, api_key=api_key, quiet=quiet))


async def _tts(*, seeds: int, trials: int, out: Path, strategies: str | None, subtasks: int | None, noise: float,
               max_distance: float, base_url: str | None, model: str | None, api_key: str | None,
               quiet: bool) -> None:
    from agentflow.budget.offline.bench import run_tts_bench
    from agentflow.budget.offline.plot import plot_best_so_far
    from agentflow.budget.offline.report import summary_table, write_json
    from agentflow.errors import ConfigurationError

    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise
    except ImportError:
        pass  # the bench skips the bayesian strategy and says why
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    backend = None
    if base_url or model:
        base, model_name, key = resolve_endpoint(base_url, model, api_key)
        backend = await connect(base, model_name, key)  # a dead endpoint fails here, once, clearly
        console.print(f"LLM strategies use [bold]{backend.name}[/] at {base}")

    def progress(name: str, done: int, total: int) -> None:
        if not quiet and done == total:
            console.print(f"[dim]{name}: {total} seeds done[/]")

    report = await run_tts_bench(seeds=seeds, trials=trials, strategies=names, model=backend, n_subtasks=subtasks,
                                 noise=noise, max_distance=max_distance, progress=progress)
    console.print(summary_table(report))
    for name, why in report.skipped.items():
        console.print(f"[yellow]skipped {name}:[/] {why}")
    console.print(f"report: {write_json(report, out / JSON_NAME)}")
    if report.strategies:
        try:
            console.print(f"plot: {plot_best_so_far(report, out / PLOT_NAME)}")
        except ConfigurationError as exc:
            console.print(f"[yellow]no plot:[/] {exc.message} ({exc.hint})")
