"""The offline TTS benchmark: runner, report, plot and the ``agentflow bench tts`` command."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from agentflow.budget.offline.bench import BenchReport, run_tts_bench
from agentflow.budget.offline.plot import plot_best_so_far
from agentflow.budget.offline.report import summary_table, write_json
from agentflow.errors import ConfigurationError
from agentflow.llm.types import ChatRequest
from agentflow.testing import ScriptedModel, reply


def scripted_llm() -> ScriptedModel:
    rng = random.Random(0)

    def answer(request: ChatRequest):
        if request.output_schema.name == "tts_insights":
            return reply({"insights": ["prefer small models with more samples early on"]})
        items = request.output_schema.json_schema["properties"]["candidates"]["items"]["properties"]
        return reply({"candidates": [
            {n: {"model": rng.choice(p["properties"]["model"]["enum"]),
                 "samples": rng.choice(p["properties"]["samples"]["enum"][:3])} for n, p in items.items()}
            for _ in range(3)]})

    return ScriptedModel(answer, name="scripted-llm")


async def test_bench_runs_every_strategy_and_skips_llm_ones_without_a_model():
    report = await run_tts_bench(seeds=2, trials=12, strategies=["random", "insight", "agenttts", "llm-zero-shot"])
    assert [s.name for s in report.strategies] == ["random", "insight"]
    assert set(report.skipped) == {"agenttts", "llm-zero-shot"}
    assert all("--base-url" in why for why in report.skipped.values())
    for run in report.strategies:
        assert len(run.curves) == 2 and all(len(c) == 12 for c in run.curves)
        assert all(0 < v <= 1.0 + 1e-9 for c in run.curves for v in c)
        assert all(c == sorted(c) for c in run.curves)  # best-so-far never drops
        summary = run.summary(report.trials)
        assert summary["trials_to_95"]["reached"] + summary["trials_to_95"]["censored"] == 2
        assert run.infeasible == 0
    assert [t.seed for t in report.tasks] == [0, 1] and all(t.optimum > 0 for t in report.tasks)


async def test_bench_runs_agenttts_end_to_end_with_a_model():
    model = scripted_llm()
    report = await run_tts_bench(seeds=[3, 4], trials=20, strategies=["agenttts", "llm-zero-shot"], model=model)
    assert not report.skipped and report.model == "scripted-llm"
    agenttts = report.strategies[0]
    assert agenttts.name == "agenttts" and agenttts.infeasible == 0
    assert all(c.get("rounds", 0) >= 1 and c.get("llm_calls", 0) >= 2 for c in agenttts.counters)
    assert any(c.request.output_schema.name == "tts_insights" for c in model.calls)


async def test_bench_rejects_bad_arguments():
    with pytest.raises(ConfigurationError, match="unknown strategies"):
        await run_tts_bench(seeds=1, trials=5, strategies=["simulated-annealing"])
    with pytest.raises(ConfigurationError):
        await run_tts_bench(seeds=[], trials=5)


async def test_report_json_round_trips_and_the_plot_is_a_png(tmp_path):
    report = await run_tts_bench(seeds=2, trials=10, strategies=["random", "grid"])
    path = write_json(report, tmp_path / "r" / "tts.json")
    data = json.loads(path.read_text())
    assert {s["strategy"] for s in data["summary"]} == {"random", "grid"}
    again = BenchReport.model_validate({k: v for k, v in data.items() if k != "summary"})
    assert again.strategies[0].curves == report.strategies[0].curves
    png = plot_best_so_far(report, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = summary_table(report)
    assert table.row_count == 2


def test_cli_prints_table_writes_files_and_says_what_was_skipped(tmp_path):
    from agentflow.cli.app import app
    from agentflow.cli.bench_cmd import JSON_NAME, PLOT_NAME

    result = CliRunner().invoke(app, ["bench", "tts", "--seeds", "2", "--trials", "10", "--strategies",
                                      "random,insight,agenttts", "--out", str(tmp_path), "--quiet"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "95%" in result.output and "99%" in result.output and "AUC" in result.output
    assert "insight" in result.output and "random" in result.output
    assert "skipped agenttts" in result.output and "--base-url" in result.output
    assert (tmp_path / JSON_NAME).exists() and (tmp_path / PLOT_NAME).exists()

    bad = CliRunner().invoke(app, ["bench", "tts", "--seeds", "1", "--trials", "5", "--strategies", "nope",
                                   "--out", str(tmp_path)])
    assert bad.exit_code == 1 and "unknown strategies" in bad.output


async def test_a_strategy_with_a_missing_package_is_skipped_with_the_reason(monkeypatch):
    from agentflow.budget.strategies.bayesian import BayesianStrategy

    monkeypatch.setattr(BayesianStrategy, "missing_dependency", classmethod(lambda cls: "optuna is not installed"))
    report = await run_tts_bench(seeds=1, trials=5, strategies=["random", "bayesian"])
    assert [s.name for s in report.strategies] == ["random"]
    assert report.skipped == {"bayesian": "optuna is not installed"}
