"""Rendering a ``BenchReport``: a rich table for the terminal and a JSON file for the record.

Trial counts are *censored means*: a seed on which a strategy never reached the target within the
trial budget counts as the full budget, and the table marks such means with ">=" together with
how many seeds did reach the target — an honest lower bound instead of a flattering average
over the successes only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from agentflow.budget.offline.bench import BenchReport


def _trials_cell(stats: dict[str, Any], seeds: int) -> str:
    if stats["mean"] is None:
        return "-"
    mark = ">=" if stats["censored"] else ""
    return f"{mark}{stats['mean']:.1f} ({stats['reached']}/{seeds})"


def summary_table(report: BenchReport) -> Table:
    """Per strategy: mean trials to 95% and 99% of the optimum, area under the curve, final value."""
    seeds = len(report.seeds)
    table = Table(title=f"TTS allocation search: {seeds} seeds x {report.trials} trials "
                        "(best-so-far / table optimum)")
    table.add_column("strategy")
    table.add_column("trials to 95%", justify="right")
    table.add_column("trials to 99%", justify="right")
    table.add_column("AUC", justify="right")
    table.add_column("final", justify="right")
    table.add_column("infeasible", justify="right")
    table.add_column("time", justify="right")
    for s in report.summaries():
        table.add_row(
            s["strategy"],
            _trials_cell(s["trials_to_95"], seeds),
            _trials_cell(s["trials_to_99"], seeds),
            f"{s['auc']:.4f}" if s["auc"] is not None else "-",
            f"{s['final']:.4f}" if s["final"] is not None else "-",
            str(s["infeasible"]),
            f"{s['seconds']:.1f}s",
        )
    return table


def write_json(report: BenchReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json_dict(), indent=1))
    return path
