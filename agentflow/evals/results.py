"""The results file of a benchmark run: one JSON line per finished attempt, appended as it finishes.

Appending (and flushing) each record the moment its task ends is what makes a run resumable: a
crash, Ctrl-C or a killed machine loses only the tasks that were in flight. On reload the last
record for a ``(task_id, attempt)`` wins, so retried attempts simply append a newer line, and a
line cut short by a crash is ignored with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from agentflow.errors import ConfigurationError

logger = logging.getLogger(__name__)

Status = Literal["answered", "timeout", "error"]

RESULTS_FILE = "results.jsonl"
SUBMISSION_FILE = "submission.jsonl"
SUMMARY_FILE = "summary.json"
MANIFEST_FILE = "run.json"
EVENTS_DIR = "events"


class TaskRecord(BaseModel):
    """The outcome of one attempt at one task."""

    task_id: str
    level: int
    attempt: int = 0
    status: Status
    #: the answer after GAIA formatting; what was scored and what is submitted
    answer: str | None = None
    #: the solver's answer before formatting
    raw_answer: str | None = None
    ground_truth: str | None = None
    #: ``None`` when the split has no public answers (the test split)
    correct: bool | None = None
    seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens: int = 0
    cost: float | None = None
    model_calls: int = 0
    #: the attempt's events file, relative to the output folder
    events_path: str | None = None
    error: str | None = None
    reasoning_trace: str = ""
    started_at: float = 0.0
    finished_at: float = Field(default_factory=time.time)

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.attempt)


class RunManifest(BaseModel):
    """What a results folder was produced from; a resume with different inputs is refused."""

    benchmark: str = "gaia"
    data_dir: str
    split: str
    created_at: float = Field(default_factory=time.time)
    solver: str = ""


def load_records(path: Path) -> dict[tuple[str, int], TaskRecord]:
    """Records by ``(task_id, attempt)``, the last line for a key winning; damaged lines skipped."""
    records: dict[tuple[str, int], TaskRecord] = {}
    if not path.is_file():
        return records
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = TaskRecord.model_validate_json(line)
            except ValidationError as exc:
                logger.warning("%s:%d is not a valid result record (ignored; the task will rerun): %s",
                               path, lineno, exc.errors()[0].get("msg", exc))
                continue
            records[record.key] = record
    return records


class ResultsWriter:
    """Appends records to ``results.jsonl``, one flushed and fsync'ed line each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._fh = path.open("a", encoding="utf-8")

    def _repair_tail(self) -> None:
        """Terminate a last line cut short by a crash, so the next record starts on its own line."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")

    def write(self, record: TaskRecord) -> None:
        self._fh.write(record.model_dump_json() + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_manifest(out_dir: Path, manifest: RunManifest) -> None:
    """Write the manifest on first use; on resume refuse a different dataset or split."""
    path = out_dir / MANIFEST_FILE
    if path.is_file():
        try:
            existing = RunManifest.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError:
            logger.warning("%s is damaged; rewriting it", path)
        else:
            if (existing.data_dir, existing.split) != (manifest.data_dir, manifest.split):
                raise ConfigurationError(
                    f"{out_dir} holds results for {existing.split!r} of {existing.data_dir}, "
                    f"not {manifest.split!r} of {manifest.data_dir}",
                    hint="use a different --out folder for a different dataset or split",
                )
            return
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write a whole JSONL file atomically (temp file + rename), so readers never see half of it."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


__all__ = [
    "EVENTS_DIR", "MANIFEST_FILE", "RESULTS_FILE", "SUBMISSION_FILE", "SUMMARY_FILE", "ResultsWriter", "RunManifest",
    "Status", "TaskRecord", "check_manifest", "load_records", "write_jsonl",
]
