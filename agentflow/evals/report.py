"""Summaries of a benchmark run: the per-level table, pass@k, failure lists and the submission file.

Accounting rules (the ones researchers compare numbers by):

* pass@1 uses attempt 0 only. Later attempts never change it.
* Every selected task is in the denominator. Timeouts, crashes and tasks that never ran
  (``unfinished``, e.g. after Ctrl-C) count as wrong and are also listed separately.
* pass@k (k = attempts requested) is reported in its own column: a task counts when any of its
  first k attempts is correct; tasks with fewer than k finished attempts count with what they have.
* Time is the mean over finished attempt-0 records; tokens and cost are summed over all attempts
  actually made, since that is what the run consumed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from agentflow.evals.loader import GaiaTask
from agentflow.evals.results import SUBMISSION_FILE, SUMMARY_FILE, TaskRecord, write_jsonl


class LevelSummary(BaseModel):
    level: str
    tasks: int = 0
    answered: int = 0
    correct: int = 0
    #: pass@1 over all selected tasks; ``None`` when no ground truth is known (test split)
    accuracy: float | None = None
    #: ``None`` unless more than one attempt was requested
    pass_at_k: float | None = None
    timeouts: int = 0
    errors: int = 0
    unfinished: int = 0
    mean_seconds: float | None = None
    tokens: int = 0
    cost: float | None = None


class BenchReport(BaseModel):
    attempts: int = 1
    levels: list[LevelSummary] = Field(default_factory=list)
    overall: LevelSummary
    timeouts: list[str] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict)
    unfinished: list[str] = Field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        return self.overall.accuracy


def _summarize(label: str, tasks: Sequence[GaiaTask], records: Mapping[tuple[str, int], TaskRecord],
               attempts: int) -> LevelSummary:
    row = LevelSummary(level=label, tasks=len(tasks))
    scored = any(t.final_answer is not None for t in tasks)
    seconds: list[float] = []
    costs: list[float] = []
    k_hits = 0
    for task in tasks:
        first = records.get((task.task_id, 0))
        if first is None:
            row.unfinished += 1
        else:
            seconds.append(first.seconds)
            if first.status == "answered":
                row.answered += 1
            elif first.status == "timeout":
                row.timeouts += 1
            else:
                row.errors += 1
            if first.correct:
                row.correct += 1
        hit = False
        for attempt in range(attempts):
            rec = records.get((task.task_id, attempt))
            if rec is None:
                continue
            row.tokens += rec.tokens
            if rec.cost is not None:
                costs.append(rec.cost)
            hit = hit or bool(rec.correct)
        k_hits += hit
    if scored and tasks:
        row.accuracy = row.correct / len(tasks)
        if attempts > 1:
            row.pass_at_k = k_hits / len(tasks)
    row.mean_seconds = sum(seconds) / len(seconds) if seconds else None
    row.cost = sum(costs) if costs else None
    return row


def summarize(tasks: Sequence[GaiaTask], records: Mapping[tuple[str, int], TaskRecord], *,
              attempts: int = 1) -> BenchReport:
    """The report for ``tasks`` (the run's selection) given the records found for them."""
    by_level: dict[int, list[GaiaTask]] = {}
    for task in tasks:
        by_level.setdefault(task.level, []).append(task)
    report = BenchReport(
        attempts=attempts,
        levels=[_summarize(str(level), by_level[level], records, attempts) for level in sorted(by_level)],
        overall=_summarize("all", tasks, records, attempts),
    )
    for task in tasks:
        rec = records.get((task.task_id, 0))
        if rec is None:
            report.unfinished.append(task.task_id)
        elif rec.status == "timeout":
            report.timeouts.append(task.task_id)
        elif rec.status == "error":
            report.errors[task.task_id] = rec.error or "unknown error"
    return report


def submission_rows(tasks: Iterable[GaiaTask], records: Mapping[tuple[str, int], TaskRecord]) -> list[dict]:
    """GAIA leaderboard rows: one per task, attempt 0's answer, empty when the task has none."""
    rows = []
    for task in tasks:
        rec = records.get((task.task_id, 0))
        rows.append({
            "task_id": task.task_id,
            "model_answer": (rec.answer or "") if rec is not None else "",
            "reasoning_trace": (rec.reasoning_trace or rec.error or "") if rec is not None else "",
        })
    return rows


def write_outputs(out_dir: Path, tasks: Sequence[GaiaTask], records: Mapping[tuple[str, int], TaskRecord], *,
                  attempts: int) -> BenchReport:
    """Write ``submission.jsonl`` and ``summary.json``; return the report."""
    report = summarize(tasks, records, attempts=attempts)
    write_jsonl(out_dir / SUBMISSION_FILE, submission_rows(tasks, records))
    tmp = out_dir / (SUMMARY_FILE + ".tmp")
    tmp.write_text(json.dumps(report.model_dump(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(out_dir / SUMMARY_FILE)
    return report


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def report_table(report: BenchReport):
    """A ``rich.table.Table`` of the report (built here, printed by the CLI)."""
    from rich import box
    from rich.table import Table

    table = Table(title="GAIA results", caption="pass@1 counts timeouts (T/O), errors and unfinished tasks as wrong",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header in ("Level", "Tasks", "Right", "pass@1"):
        table.add_column(header, justify="left" if header == "Level" else "right", no_wrap=True)
    if report.attempts > 1:
        table.add_column(f"pass@{report.attempts}", justify="right", no_wrap=True)
    for header in ("T/O", "Err", "Unfin", "Mean s", "Tokens", "Cost"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in [*report.levels, report.overall]:
        cells = [row.level if row.level == "all" else f"L{row.level}", str(row.tasks), str(row.correct),
                 _pct(row.accuracy)]
        if report.attempts > 1:
            cells.append(_pct(row.pass_at_k))
        cells += [str(row.timeouts), str(row.errors), str(row.unfinished),
                  "-" if row.mean_seconds is None else f"{row.mean_seconds:.1f}", f"{row.tokens:,}",
                  "-" if row.cost is None else f"{row.cost:.4g}"]
        table.add_row(*cells, style="bold" if row.level == "all" else None)
    return table


__all__ = ["BenchReport", "LevelSummary", "report_table", "submission_rows", "summarize", "write_outputs"]
