"""End to end on the bundled task set: `agentflow bench gaia` with a custom solver, and the GAIA worker
solver (ScriptedModel driving real tools on real attachments)."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` lives at the repo root

from agentflow.evals import GaiaRunner, load_gaia_tasks  # noqa: E402
from agentflow.evals.adapters import WorkerSolver  # noqa: E402
from agentflow.evals.runner import read_events  # noqa: E402
from agentflow.llm.types import ChatRequest  # noqa: E402
from agentflow.testing import ScriptedModel, call, reply  # noqa: E402


@pytest.fixture
def cli():
    from agentflow.cli import bench_gaia_cmd  # noqa: F401 - registers `gaia` on bench_app
    from agentflow.cli.bench_cmd import bench_app

    root = typer.Typer()
    root.add_typer(bench_app, name="bench")
    runner = CliRunner()
    return lambda *args: runner.invoke(root, ["bench", "gaia", *map(str, args)])


SOLVER_MODULE = textwrap.dedent('''
    from pathlib import Path
    from agentflow.evals import SolverOutput
    from agentflow.llm.types import Usage

    CALLS = Path(__file__).with_name("calls.txt")

    async def solver(task):
        with CALLS.open("a") as fh:
            fh.write(task.task_id + "\\n")
        # right on level 1, wrong elsewhere: the table must show it per level
        answer = task.final_answer if task.level == 1 else "wrong"
        return SolverOutput(answer=f"FINAL ANSWER: {answer}", trace="looked it up",
                            usage=Usage(prompt_tokens=100, completion_tokens=10))
''')


def test_bench_gaia_runs_resumes_and_reports(cli, gaia_dataset, tmp_path, monkeypatch):
    (tmp_path / "mysolver.py").write_text(SOLVER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    result = cli("--data-dir", gaia_dataset, "--out", out, "--solver", "mysolver:solver", "--limit", 12,
                 "--concurrency", 3, "--price-in", 1.0, "--price-out", 2.0, "--quiet")
    assert result.exit_code == 0, result.output
    assert "GAIA results" in result.output and "pass@1" in result.output
    assert "submission:" in result.output

    tasks = load_gaia_tasks(gaia_dataset, limit=12)
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in results) == sorted(t.task_id for t in tasks)
    assert all(r["correct"] == (r["level"] == 1) for r in results)
    assert all(r["cost"] == pytest.approx(100e-6 + 20e-6) for r in results)
    assert all((out / r["events_path"]).is_file() for r in results)
    submission = [json.loads(line) for line in (out / "submission.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in submission] == [t.task_id for t in tasks]
    n_l1 = sum(t.level == 1 for t in tasks)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["correct"] == n_l1 and summary["overall"]["tasks"] == 12

    # same command again: resumes, nothing reruns; a larger --limit runs only the new tasks
    assert cli("--data-dir", gaia_dataset, "--out", out, "--solver", "mysolver:solver", "--limit", 12, "-q").exit_code == 0
    assert len((tmp_path / "calls.txt").read_text().split()) == 12
    assert cli("--data-dir", gaia_dataset, "--out", out, "--solver", "mysolver:solver", "--limit", 15, "-q").exit_code == 0
    assert len((tmp_path / "calls.txt").read_text().split()) == 15

    report = cli("--data-dir", gaia_dataset, "--out", out, "--limit", 15, "--report-only")
    assert report.exit_code == 0 and re.search(r"all\s.*15", report.output)


def test_bench_gaia_errors_are_one_clear_line(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("GAIA_DATA_DIR", raising=False)
    result = cli("--out", tmp_path / "x", "--solver", "mysolver:solver")
    assert result.exit_code == 1
    assert "no GAIA data directory given" in result.output and "Traceback" not in result.output


async def test_worker_solver_uses_the_gaia_tools_on_the_attachment(gaia_dataset, tmp_path):
    tasks = [t for t in load_gaia_tasks(gaia_dataset) if (t.annotator_metadata or {}).get("Family") == "csv_units_sold"]
    task = tasks[0]

    def script(request: ChatRequest):
        tool_messages = [m for m in request.messages if m.role == "tool"]
        if not tool_messages:
            assert {t.name for t in request.tools} >= {"read_document", "python", "calculator", "list_files",
                                                        "search_documents"}
            attached = re.search(r"Attached file: (\S+)", request.messages[-1].content or "").group(1)
            return call("read_document", path=attached)
        assert "order_id" in (tool_messages[-1].content or "")  # the CSV really was read through the tool
        return reply(f"I summed the rows. FINAL ANSWER: {task.final_answer}")

    model = ScriptedModel(script)
    out = tmp_path / "out"
    split_dir = gaia_dataset / "2023" / "validation"
    report = await GaiaRunner([task], WorkerSolver(model), out, data_dir=gaia_dataset, workspace=split_dir,
                              corpus=split_dir / "corpus").run()
    assert report.overall.correct == 1
    events = read_events(out, next(iter(__import__("agentflow.evals.results", fromlist=["x"]).load_records(
        out / "results.jsonl").values())))
    assert "tool_call" in {e.type for e in events} and events[-1].type == "bench_task_finished"
    # the attempt worked on a copy: the dataset folder is untouched, the scratch folder has the file
    assert (out / "work" / task.task_id / task.file_path.name).is_file()
    assert (out / "work" / task.task_id / "corpus").is_dir()


async def test_workforce_adapter_streams_events_and_reads_the_result(gaia_dataset, tmp_path):
    from agentflow.evals.adapters import WorkforceSolver
    from agentflow.llm.types import Usage
    from agentflow.runs.events import WorkerStepEvent

    built = {}

    class FakeResult:
        def __init__(self, answer):
            self.answer = answer
            self.usage = Usage(prompt_tokens=30, completion_tokens=5)
            self.events = []

    class FakeWorkforce:
        def __init__(self, tools, task):
            built["tools"] = [t.name for t in tools]
            built["file"] = task.file_path

        async def run(self, request, *, sink=None):
            await sink(WorkerStepEvent(worker="w", step=1, text="reading"))
            return FakeResult("FINAL ANSWER: 7")

    task = next(t for t in load_gaia_tasks(gaia_dataset) if t.file_path is not None)
    out = tmp_path / "out"
    report = await GaiaRunner([task], WorkforceSolver(FakeWorkforce), out, data_dir=gaia_dataset,
                              workspace=gaia_dataset / "2023" / "validation").run()
    assert "read_document" in built["tools"] and built["file"].parent == out / "work" / task.task_id
    from agentflow.evals.results import load_records

    record = load_records(out / "results.jsonl")[(task.task_id, 0)]
    assert record.answer == "7" and record.tokens == 35
    assert "worker_step" in [e.type for e in read_events(out, record)]
    assert report.overall.tasks == 1


def test_custom_solver_factory_with_a_scripted_model(cli, gaia_dataset, tmp_path, monkeypatch):
    (tmp_path / "scripted_solver.py").write_text(textwrap.dedent('''
        from agentflow.evals import ChatModelSolver
        from agentflow.testing import ScriptedModel, reply

        def make():
            return ChatModelSolver(ScriptedModel(lambda request: reply("Reasoning... FINAL ANSWER: 1,000 km")))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    result = cli("--data-dir", gaia_dataset, "--out", out, "--solver", "scripted_solver:make", "--level", 3,
                 "--limit", 4, "-q")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["level"] == 3 and r["answer"] == "1000" for r in records)
    assert all(r["model_calls"] == 1 and r["tokens"] > 0 for r in records)


async def test_default_workforce_solver_end_to_end_with_scripted_roles(gaia_dataset, tmp_path):
    """The real Workforce (planner, coordinator, worker with GAIA tools, critic, answer stage) on a task."""
    from agentflow.evals.adapters import WorkforceSolver
    from agentflow.evals.answer_format import GaiaAnswerRules
    from agentflow.testing import by_role
    from agentflow.workforce import build_default_workforce

    task = next(t for t in load_gaia_tasks(gaia_dataset) if (t.annotator_metadata or {}).get("Family") == "csv_units_sold")
    read = []

    def worker(request: ChatRequest):
        tool_messages = [m for m in request.messages if m.role == "tool"]
        if not tool_messages:
            attached = re.search(r"Attached file: (\S+)", request.messages[-1].content or "").group(1)
            return call("read_document", path=attached)
        read.append(tool_messages[-1].content or "")
        return reply(f"The units sold add up to {task.final_answer}.")

    def planner(request: ChatRequest):
        # the planner sees the whole request and must carry the attachment into the node's goal:
        # a node sees only its goal and its inputs, never the whole request
        attached = re.search(r"Attached file: (\S+)", request.messages[-1].content or "").group(1)
        return reply({"nodes": [{"id": "units", "goal": f"sum the units sold. Attached file: {attached}",
                                 "inputs": []}], "outputs": ["units"]})

    model = ScriptedModel(by_role(
        planner=planner,
        coordinator=lambda r: reply({"assignments": [{"node": "units", "worker": "assistant"}]}),
        worker=worker,
        critic=lambda r: reply({"verdict": "yes", "score": 0.9, "feedback": ""}),
        answer=lambda r: reply(f"FINAL ANSWER: {task.final_answer}"),
    ))
    solver = WorkforceSolver(lambda tools, t: build_default_workforce(model, tools, formatter=GaiaAnswerRules()))
    out = tmp_path / "out"
    split_dir = gaia_dataset / "2023" / "validation"
    report = await GaiaRunner([task], solver, out, data_dir=gaia_dataset, workspace=split_dir,
                              corpus=split_dir / "corpus").run()
    assert report.overall.correct == 1
    assert read and "order_id" in read[0]  # the worker really read the CSV through the tool
    from agentflow.evals.results import load_records

    record = load_records(out / "results.jsonl")[(task.task_id, 0)]
    assert record.model_calls == len(model.calls)
    types = {e.type for e in read_events(out, record)}
    assert {"plan_created", "node_finished", "tool_call", "critic_verdict"} <= types
    assert {r.context.role for r in model.requests} >= {"planner", "worker", "critic", "answer"}
