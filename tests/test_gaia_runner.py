"""The GAIA runner: results as tasks finish, resume, failure accounting, pass@k, submission file."""

from __future__ import annotations

import asyncio
import json

import pytest

from agentflow.errors import ConfigurationError
from agentflow.evals import ChatModelSolver, GaiaRunner, RunOptions, SolverOutput, load_gaia_tasks, run_gaia
from agentflow.evals.results import load_records
from agentflow.evals.runner import read_events
from agentflow.llm.types import ChatRequest, Usage
from agentflow.testing import ScriptedModel, reply

QUESTIONS = {
    "t1": ("What is 6 times 7?", 1, "42"),
    "t2": ("Name the capital of France.", 1, "Paris"),
    "t3": ("How many legs does a spider have?", 2, "8"),
    "t4": ("This one crashes the model.", 2, "x"),
    "t5": ("This one is too slow.", 3, "slow"),
    "t6": ("How many metres in a kilometre?", 3, "1000"),
}
# what the scripted model says for each task (t4 raises, t5 sleeps past the timeout)
REPLIES = {
    "t1": "Thinking... FINAL ANSWER: 42",
    "t2": "FINAL ANSWER: Lyon",
    "t3": "FINAL ANSWER: 8",
    "t6": "FINAL ANSWER: 1,000 m",  # formatting turns this into 1000
}


@pytest.fixture
def dataset(tmp_path):
    split = tmp_path / "data" / "2023" / "validation"
    split.mkdir(parents=True)
    rows = [{"task_id": tid, "Question": q, "Level": lvl, "Final answer": a, "file_name": ""}
            for tid, (q, lvl, a) in QUESTIONS.items()]
    (split / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return tmp_path / "data"


def task_of(request: ChatRequest) -> str:
    text = request.messages[-1].content or ""
    return next(tid for tid, (q, _, _) in QUESTIONS.items() if q in text)


def scripted_model(**kwargs) -> ScriptedModel:
    def answer(request: ChatRequest):
        tid = task_of(request)
        if tid == "t4":
            return RuntimeError("backend exploded")
        if tid == "t5":
            return reply("FINAL ANSWER: slow", delay=5.0)
        return reply(REPLIES[tid])
    return ScriptedModel(answer, **kwargs)


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def test_run_writes_results_events_summary_and_submission(dataset, tmp_path):
    tasks = load_gaia_tasks(dataset)
    model = scripted_model(latency=0.02)
    seen = []
    out = tmp_path / "out"
    report = await GaiaRunner(tasks, ChatModelSolver(model), out, data_dir=dataset,
                              options=RunOptions(concurrency=3, timeout=0.5), on_progress=seen.append).run()

    results = {r["task_id"]: r for r in rows(out / "results.jsonl")}
    assert set(results) == set(QUESTIONS)
    assert {tid: r["status"] for tid, r in results.items()} == {
        "t1": "answered", "t2": "answered", "t3": "answered", "t4": "error", "t5": "timeout", "t6": "answered"}
    assert {tid: r["correct"] for tid, r in results.items()} == {
        "t1": True, "t2": False, "t3": True, "t4": False, "t5": False, "t6": True}
    assert results["t6"]["raw_answer"] == "FINAL ANSWER: 1,000 m" and results["t6"]["answer"] == "1000"
    assert "backend exploded" in results["t4"]["error"]
    assert results["t1"]["tokens"] > 0 and results["t1"]["prompt_tokens"] > 0 and results["t1"]["seconds"] > 0
    assert results["t1"]["level"] == 1 and results["t5"]["level"] == 3

    # every attempt has an events file: started, the model call, finished
    events = read_events(out, load_records(out / "results.jsonl")[("t1", 0)])
    assert [e.type for e in events] == ["bench_task_started", "model_call", "bench_task_finished"]
    assert events[-1].correct is True

    # failures count as wrong and are listed separately
    assert report.overall.tasks == 6 and report.overall.correct == 3
    assert report.overall.accuracy == pytest.approx(0.5)
    assert report.timeouts == ["t5"] and list(report.errors) == ["t4"] and report.unfinished == []
    by_level = {row.level: row for row in report.levels}
    assert (by_level["1"].correct, by_level["1"].tasks, by_level["1"].accuracy) == (1, 2, 0.5)
    assert (by_level["3"].timeouts, by_level["2"].errors) == (1, 1)
    assert by_level["1"].pass_at_k is None  # one attempt: no pass@k column
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["accuracy"] == pytest.approx(0.5)

    submission = rows(out / "submission.jsonl")
    assert [r["task_id"] for r in submission] == list(QUESTIONS)  # dataset order
    assert set(submission[0]) == {"task_id", "model_answer", "reasoning_trace"}
    assert submission[0]["model_answer"] == "42" and submission[3]["model_answer"] == ""
    assert "42" in submission[0]["reasoning_trace"]

    # progress: one update at start, one per finished attempt; running accuracy over finished ones
    assert seen[0].done == 0 and seen[-1].done == 6 and seen[-1].total == 6
    assert seen[-1].running_accuracy == pytest.approx(0.5)
    assert 1 < model.max_in_flight <= 3


async def test_rerun_resumes_and_skips_finished_tasks(dataset, tmp_path):
    tasks = load_gaia_tasks(dataset)
    out = tmp_path / "out"
    await run_gaia(tasks, ChatModelSolver(scripted_model()), out, data_dir=dataset, timeout=0.3)
    lines_before = len(rows(out / "results.jsonl"))

    second = scripted_model()
    report = await run_gaia(tasks, ChatModelSolver(second), out, data_dir=dataset, timeout=0.3)
    assert second.calls == []  # nothing ran again, errors and timeouts included
    assert len(rows(out / "results.jsonl")) == lines_before
    assert report.overall.correct == 3

    # --retry-errors reruns only the crashed and timed-out attempts
    third = scripted_model()
    await run_gaia(tasks, ChatModelSolver(third), out, data_dir=dataset, timeout=0.3, retry_errors=True)
    assert sorted(task_of(c.request) for c in third.calls) == ["t4", "t5"]


async def test_interrupted_run_resumes_the_unfinished_tasks(dataset, tmp_path):
    tasks = load_gaia_tasks(dataset)
    out = tmp_path / "out"
    release = asyncio.Event()

    async def first_solver(task):
        if task.task_id in {"t1", "t2"}:
            return f"FINAL ANSWER: {QUESTIONS[task.task_id][2]}"
        await release.wait()  # the rest hang until the run is cancelled
        return "never"

    run = asyncio.create_task(run_gaia(tasks, first_solver, out, data_dir=dataset, concurrency=6))
    while not (out / "results.jsonl").exists() or len(rows(out / "results.jsonl")) < 2:
        await asyncio.sleep(0.01)
    run.cancel()  # what Ctrl-C does to the run
    with pytest.raises(asyncio.CancelledError):
        await run
    # the interruption still left a consistent summary and submission
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["unfinished"] == 4 and sorted(summary["unfinished"]) == ["t3", "t4", "t5", "t6"]
    assert summary["overall"]["correct"] == 2

    # a damaged last line (crash mid-write) is ignored, its task reruns
    with (out / "results.jsonl").open("a") as fh:
        fh.write('{"task_id": "t3", "level": 2, "sta')

    ran = []

    async def second_solver(task):
        ran.append(task.task_id)
        return SolverOutput(answer=QUESTIONS[task.task_id][2], usage=Usage(prompt_tokens=10, completion_tokens=2))

    report = await run_gaia(tasks, second_solver, out, data_dir=dataset)
    assert sorted(ran) == ["t3", "t4", "t5", "t6"]
    assert report.overall.correct == 6 and report.unfinished == [] and report.overall.tokens == 48
    assert len(load_records(out / "results.jsonl")) == 6


async def test_pass_at_k_is_reported_separately_from_pass_at_1(dataset, tmp_path):
    tasks = load_gaia_tasks(dataset, levels=[1])

    async def solver(task, context):
        # t1 right only on the third attempt, t2 never right
        if task.task_id == "t1":
            return ("42" if context.attempt == 2 else "41", "trace", Usage(prompt_tokens=5), [])
        return ("Lyon", "", None, None)

    report = await run_gaia(tasks, solver, tmp_path / "out", data_dir=dataset, attempts=3)
    assert report.overall.accuracy == 0.0  # pass@1 uses attempt 0 only
    assert report.overall.pass_at_k == pytest.approx(0.5)
    assert report.attempts == 3
    records = load_records(tmp_path / "out" / "results.jsonl")
    assert sorted(records) == [("t1", 0), ("t1", 1), ("t1", 2), ("t2", 0), ("t2", 1), ("t2", 2)]
    assert records[("t1", 2)].events_path == "events/t1-a2.jsonl"
    submission = rows(tmp_path / "out" / "submission.jsonl")
    assert submission[0]["model_answer"] == "41"  # the submission is attempt 0, never the best of k


async def test_resuming_into_a_folder_of_another_split_is_refused(dataset, tmp_path):
    tasks = load_gaia_tasks(dataset, limit=1)

    async def solver(task):
        return "42"

    await run_gaia(tasks, solver, tmp_path / "out", data_dir=dataset, split="validation")
    with pytest.raises(ConfigurationError, match="different --out folder"):
        await run_gaia(tasks, solver, tmp_path / "out", data_dir=dataset, split="test")


async def test_test_split_without_answers_is_not_scored(tmp_path):
    split = tmp_path / "2023" / "test"
    split.mkdir(parents=True)
    (split / "metadata.jsonl").write_text(json.dumps(
        {"task_id": "q", "Question": "?", "Level": 1, "Final answer": "?", "file_name": ""}) + "\n")
    tasks = load_gaia_tasks(tmp_path, "test")

    async def solver(task):
        return "FINAL ANSWER: 5"

    report = await run_gaia(tasks, solver, tmp_path / "out", data_dir=tmp_path, split="test")
    assert report.overall.accuracy is None
    (record,) = load_records(tmp_path / "out" / "results.jsonl").values()
    assert record.correct is None and record.answer == "5"


async def test_solver_returning_garbage_is_recorded_as_an_error(dataset, tmp_path):
    tasks = load_gaia_tasks(dataset, limit=1)

    async def solver(task):
        return 12345  # not an answer shape

    report = await run_gaia(tasks, solver, tmp_path / "out", data_dir=dataset)
    assert "TypeError" in report.errors["t1"]
