"""The best-so-far plot: mean normalized best-so-far against trials, one line per strategy, with
the interquartile range over seeds shaded."""

from __future__ import annotations

from pathlib import Path

from agentflow.budget.offline.bench import BenchReport
from agentflow.errors import ConfigurationError


def plot_best_so_far(report: BenchReport, path: str | Path) -> Path:
    """Write the plot as a PNG (matplotlib, Agg backend: no display needed)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        raise ConfigurationError("plotting needs matplotlib", hint="pip install matplotlib") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    x = np.arange(1, report.trials + 1)
    for run in report.strategies:
        curves = np.array(run.curves, dtype=float)
        mean = curves.mean(axis=0)
        lo, hi = np.percentile(curves, [25, 75], axis=0)
        (line,) = ax.plot(x, mean, label=run.name, linewidth=1.6)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.12, linewidth=0)
    ax.axhline(0.99, color="grey", linestyle=":", linewidth=0.8)
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("trials")
    ax.set_ylabel("best-so-far / table optimum")
    ax.set_title(f"Allocation search, mean over {len(report.seeds)} seeds (shaded: 25-75%)")
    ax.set_xscale("log")
    ax.set_ylim(max(0.0, min(0.8, float(ax.get_ylim()[0]))), 1.005)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
