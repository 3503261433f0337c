"""Offline TTS allocation-search benchmark (the same run as ``agentflow bench tts``).

    python benchmarks/tts/run.py --seeds 20 --trials 100
    python benchmarks/tts/run.py --seeds 20 --base-url http://127.0.0.1:8000/v1 --model Qwen2.5-7B-Instruct

Every strategy searches the same seeded synthetic AgentTTS tables (see
agentflow/budget/offline/generator.py); the table shows, per strategy, the mean number of trials
to reach 95% and 99% of each table's optimum (censored at --trials, marked ">=") and the area
under the normalized best-so-far curve. Writes tts_bench.json and tts_best_so_far.png to --out.
LLM-driven strategies run only with --base-url/--model.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agentflow.budget.offline.bench import run_tts_bench  # noqa: E402
from agentflow.budget.offline.plot import plot_best_so_far  # noqa: E402
from agentflow.budget.offline.report import summary_table, write_json  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass  # the bayesian strategy is skipped, with the reason in the output
    console = Console()
    model = None
    if args.base_url or args.model:
        from agentflow.llm import OpenAICompatModel

        model = OpenAICompatModel(args.base_url or "http://127.0.0.1:8000/v1", model=args.model, api_key=args.api_key)
        await model.probe()
    names = [s for s in args.strategies.split(",") if s] if args.strategies else None
    report = await run_tts_bench(seeds=args.seeds, trials=args.trials, strategies=names, model=model,
                                 n_subtasks=args.subtasks, noise=args.noise, max_distance=args.max_distance,
                                 progress=lambda name, done, total: done == total and console.print(f"[dim]{name} done"))
    console.print(summary_table(report))
    for name, why in report.skipped.items():
        console.print(f"[yellow]skipped {name}:[/] {why}")
    out = Path(args.out)
    console.print(f"report: {write_json(report, out / 'tts_bench.json')}")
    if report.strategies:
        console.print(f"plot: {plot_best_so_far(report, out / 'tts_best_so_far.png')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--strategies", default=None, help="comma-separated subset")
    parser.add_argument("--subtasks", type=int, default=None)
    parser.add_argument("--noise", type=float, default=0.004)
    parser.add_argument("--max-distance", type=float, default=0.25)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--api-key", default=None)
    asyncio.run(main(parser.parse_args()))
