"""Run a solver over GAIA tasks: concurrent, resumable, with per-attempt event logs.

Layout of the output folder::

    run.json            what was run (dataset, split); a resume with other inputs is refused
    results.jsonl       one line per finished attempt, appended the moment it finishes
    events/<id>.jsonl   every event of that attempt, written as it happens
    work/<id>/          the attempt's scratch folder (what its tools read and wrote)
    submission.jsonl    GAIA leaderboard file: task_id, model_answer, reasoning_trace
    summary.json        the per-level report (see ``agentflow.evals.report``)

A rerun with the same folder skips attempts already recorded. Timeouts and crashes are recorded
too (as wrong) and are skipped as well, unless ``retry_errors`` asks to run them again; tasks that
were in flight when a run was interrupted have no record and simply run again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentflow.errors import ConfigurationError
from agentflow.evals.answer_format import format_gaia_answer
from agentflow.evals.loader import GaiaTask
from agentflow.evals.report import BenchReport, write_outputs
from agentflow.evals.results import (
    EVENTS_DIR,
    RESULTS_FILE,
    ResultsWriter,
    RunManifest,
    TaskRecord,
    check_manifest,
    load_records,
)
from agentflow.evals.scorer import score_answer
from agentflow.evals.solver import SolveContext, Solver, SolverOutput, coerce_output, wants_context
from agentflow.runs.events import Event

logger = logging.getLogger(__name__)

AnswerFormatter = Callable[[str | None, str], str]
CostFn = Callable[[SolverOutput], float | None]


class BenchTaskStarted(Event):
    """The runner began an attempt (first line of every events file)."""

    type: Literal["bench_task_started"] = "bench_task_started"
    task_id: str
    attempt: int = 0
    level: int = 0


class BenchTaskFinished(Event):
    """The runner finished an attempt (last line of every events file)."""

    type: Literal["bench_task_finished"] = "bench_task_finished"
    task_id: str
    attempt: int = 0
    status: str
    answer: str | None = None
    correct: bool | None = None
    seconds: float = 0.0
    error: str | None = None


class Progress(BaseModel):
    """Sent to the progress callback after every finished attempt."""

    model_config = ConfigDict(frozen=True)

    done: int
    total: int
    #: attempt-0 records finished so far (this run and resumed ones)
    scored: int
    correct: int
    record: TaskRecord | None = None

    @property
    def running_accuracy(self) -> float | None:
        return self.correct / self.scored if self.scored else None


class RunOptions(BaseModel):
    concurrency: int = Field(default=4, ge=1)
    #: seconds per attempt; ``None`` for no limit
    timeout: float | None = Field(default=None, gt=0)
    attempts: int = Field(default=1, ge=1)
    #: rerun attempts recorded as timeouts or errors
    retry_errors: bool = False


#: per-attempt scratch folders live under ``<out>/work/``
WORK_DIR = "work"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def attempt_run_id(task_id: str, attempt: int) -> str:
    """A file-name-safe id per attempt; ids that needed escaping get a hash so they cannot collide."""
    safe = _UNSAFE.sub("_", task_id).strip("._")[:80] or "task"
    if safe != task_id:
        safe += "-" + hashlib.sha1(task_id.encode()).hexdigest()[:8]
    return safe if attempt == 0 else f"{safe}-a{attempt}"


class _EventFile:
    """An attempt's events file; a sink that writes each event as one JSON line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = path.open("w", encoding="utf-8")
        self.seen: set[str] = set()

    async def __call__(self, event: Event) -> None:
        self.write(event)

    def write(self, event: Event) -> None:
        if self._fh.closed or event.id in self.seen:
            return
        self.seen.add(event.id)
        self._fh.write(event.model_dump_json() + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class GaiaRunner:
    """Runs ``solver`` on ``tasks`` into ``out_dir``.

    Args:
        tasks: the selection to run (already filtered by level/limit).
        solver: ``async (task) -> SolverOutput | (answer, trace, usage, events)``; may also take a
            ``SolveContext`` as second argument (attempt number, event sink, workspace).
        out_dir: results folder; reusing it resumes.
        data_dir, split: recorded in ``run.json`` to refuse resuming into the wrong folder.
        formatter: applied to every answer before scoring (GAIA's answer rules by default);
            ``None`` scores the raw answer.
        cost_fn: computes an attempt's cost when the solver does not report one.
        on_progress: called after every finished attempt (the CLI draws its progress bar with it).
        workspace, corpus: passed to the solver in its ``SolveContext``.
    """

    def __init__(self, tasks: Sequence[GaiaTask], solver: Solver, out_dir: str | Path, *,
                 options: RunOptions | None = None, data_dir: str | Path = "", split: str = "validation",
                 solver_name: str = "", formatter: AnswerFormatter | None = format_gaia_answer,
                 cost_fn: CostFn | None = None, on_progress: Callable[[Progress], None] | None = None,
                 workspace: Path | None = None, corpus: Path | None = None) -> None:
        ids = [t.task_id for t in tasks]
        if len(set(ids)) != len(ids):
            raise ConfigurationError("duplicate task ids in the selection", hint="task ids must be unique")
        self.tasks = list(tasks)
        self.solver = solver
        self.out_dir = Path(out_dir)
        self.options = options or RunOptions()
        self.manifest = RunManifest(data_dir=str(data_dir), split=split, solver=solver_name)
        self.formatter = formatter
        self.cost_fn = cost_fn
        self.on_progress = on_progress
        self.workspace = workspace
        self.corpus = corpus
        self._pass_context = wants_context(solver)

    # --- planning -------------------------------------------------------------------------------

    def pending(self, records: dict[tuple[str, int], TaskRecord]) -> list[tuple[GaiaTask, int]]:
        """Attempts still to run, attempt 0 of every task first (so pass@1 completes soonest)."""
        todo = []
        for attempt in range(self.options.attempts):
            for task in self.tasks:
                rec = records.get((task.task_id, attempt))
                if rec is None or (self.options.retry_errors and rec.status != "answered"):
                    todo.append((task, attempt))
        return todo

    # --- running --------------------------------------------------------------------------------

    async def run(self) -> BenchReport:
        """Run every pending attempt; always leaves results, submission and summary consistent on disk."""
        check_manifest(self.out_dir, self.manifest)
        records = load_records(self.out_dir / RESULTS_FILE)
        todo = self.pending(records)
        total = len(todo)
        logger.info("GAIA run into %s: %d tasks, %d attempts pending (%d recorded)", self.out_dir,
                    len(self.tasks), total, len(records))
        selected = {t.task_id for t in self.tasks}
        scored = [r for (tid, a), r in records.items() if a == 0 and tid in selected and r.correct is not None]
        state = {"done": 0, "scored": len(scored), "correct": sum(1 for r in scored if r.correct)}
        self._emit(state, total, None)

        queue: asyncio.Queue[tuple[GaiaTask, int]] = asyncio.Queue()
        for item in todo:
            queue.put_nowait(item)
        writer = ResultsWriter(self.out_dir / RESULTS_FILE)
        try:
            async def worker() -> None:
                while True:
                    try:
                        task, attempt = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    record = await self._attempt(task, attempt)
                    writer.write(record)
                    records[record.key] = record
                    state["done"] += 1
                    if attempt == 0 and record.correct is not None:
                        state["scored"] += 1
                        state["correct"] += int(bool(record.correct))
                    self._emit(state, total, record)

            n = min(self.options.concurrency, max(1, total))
            await asyncio.gather(*(worker() for _ in range(n)))
        finally:
            writer.close()
            # also on Ctrl-C: what finished is summarised and submittable
            report = write_outputs(self.out_dir, self.tasks, records, attempts=self.options.attempts)
        return report

    def _emit(self, state: dict[str, int], total: int, record: TaskRecord | None) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(Progress(done=state["done"], total=total, scored=state["scored"],
                                      correct=state["correct"], record=record))
        except Exception:  # a broken progress display must not lose results
            logger.exception("progress callback failed")

    async def _call_solver(self, task: GaiaTask, context: SolveContext) -> SolverOutput:
        if self._pass_context:
            result = await self.solver(task, context)
        else:
            result = await self.solver(task)
        return coerce_output(result)

    async def _attempt(self, task: GaiaTask, attempt: int) -> TaskRecord:
        run_id = attempt_run_id(task.task_id, attempt)
        events_rel = f"{EVENTS_DIR}/{run_id}.jsonl"
        events = _EventFile(self.out_dir / events_rel)
        scratch = self.out_dir / WORK_DIR / run_id
        if scratch.exists():
            shutil.rmtree(scratch)  # leftovers of an interrupted attempt
        scratch.mkdir(parents=True)
        context = SolveContext(attempt=attempt, run_id=run_id, sink=events, workspace=self.workspace,
                               corpus=self.corpus, scratch=scratch)
        events.write(BenchTaskStarted(run_id=run_id, task_id=task.task_id, attempt=attempt, level=task.level))
        started_wall = time.time()
        started = time.monotonic()
        output: SolverOutput | None = None
        status = "answered"
        error: str | None = None
        try:
            coro = self._call_solver(task, context)
            output = await (asyncio.wait_for(coro, self.options.timeout) if self.options.timeout else coro)
        except asyncio.TimeoutError as exc:
            if self.options.timeout and time.monotonic() - started >= 0.99 * self.options.timeout:
                status, error = "timeout", f"no answer within {self.options.timeout:g} s"
            else:  # a timeout inside the solver (an HTTP call), not the task's deadline
                status, error = "error", f"TimeoutError: {exc or 'timed out inside the solver'}"
        except asyncio.CancelledError:
            events.close()
            raise
        except Exception as exc:  # a crashing solver is a wrong answer, never a crashed benchmark
            logger.warning("task %s attempt %d crashed: %s", task.task_id, attempt, exc, exc_info=True)
            status, error = "error", f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - started

        record = TaskRecord(task_id=task.task_id, level=task.level, attempt=attempt, status=status,
                            ground_truth=task.final_answer, seconds=round(seconds, 3), error=error,
                            events_path=events_rel, started_at=started_wall)
        if output is not None:
            for event in output.events:
                events.write(event)
            answer = output.answer
            if self.formatter is not None:
                try:
                    answer = self.formatter(output.answer, task.question)
                except Exception:  # a formatter bug must not lose the raw answer
                    logger.exception("answer formatter failed on task %s; scoring the raw answer", task.task_id)
            cost = output.cost if output.cost is not None else (self.cost_fn(output) if self.cost_fn else None)
            record = record.model_copy(update={
                "answer": answer, "raw_answer": output.answer, "reasoning_trace": output.trace,
                "prompt_tokens": output.usage.prompt_tokens, "completion_tokens": output.usage.completion_tokens,
                "tokens": output.usage.total_tokens, "cost": cost, "model_calls": output.model_calls,
            })
        if task.final_answer is not None:
            record.correct = status == "answered" and score_answer(record.answer, task.final_answer)
        events.write(BenchTaskFinished(run_id=run_id, task_id=task.task_id, attempt=attempt, status=status,
                                       answer=record.answer, correct=record.correct, seconds=record.seconds,
                                       error=error))
        events.close()
        return record


def read_events(out_dir: str | Path, record: TaskRecord) -> list[Event]:
    """The typed events of one recorded attempt (for reports and debugging)."""
    from agentflow.runs.events import parse_event

    if not record.events_path:
        return []
    path = Path(out_dir) / record.events_path
    if not path.is_file():
        return []
    return [parse_event(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def run_gaia(tasks: Sequence[GaiaTask], solver: Solver, out_dir: str | Path, **kwargs) -> BenchReport:
    """Convenience wrapper: ``GaiaRunner(tasks, solver, out_dir, **kwargs).run()``.

    Options (concurrency, timeout, attempts, retry_errors) may be given directly as keywords.
    """
    option_keys = set(RunOptions.model_fields)
    options = RunOptions(**{k: kwargs.pop(k) for k in list(kwargs) if k in option_keys})
    return await GaiaRunner(tasks, solver, out_dir, options=options, **kwargs).run()


__all__ = ["BenchTaskFinished", "BenchTaskStarted", "GaiaRunner", "Progress", "RunOptions", "attempt_run_id",
           "read_events", "run_gaia"]
