"""Load GAIA tasks from a directory the user placed on disk.

GAIA is gated on the Hugging Face hub, so agentflow never downloads it: users clone or snapshot
the dataset themselves and point ``--data-dir`` (or ``GAIA_DATA_DIR``) at it. Releases differ in
small ways and this loader accepts all of them:

* ``metadata.jsonl`` (the 2023 release) or ``metadata.parquet`` (later revisions);
* ``Level`` as an int (jsonl) or a string (parquet);
* attachments found through ``file_path`` (later revisions, relative to the dataset root) or
  ``file_name`` next to the metadata file;
* the test split's placeholder row ``0-0-0-0-0`` is skipped;
* the data dir may be the dataset root (``<root>/2023/<split>``), a year folder
  (``<year>/<split>``) or the split folder itself.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentflow.errors import ConfigurationError

logger = logging.getLogger(__name__)

GAIA_DATA_DIR_ENV = "GAIA_DATA_DIR"
PLACEHOLDER_TASK_ID = "0-0-0-0-0"
_METADATA_FILES = ("metadata.jsonl", "metadata.parquet")
_KNOWN_FIELDS = {"task_id", "Question", "Level", "Final answer", "file_name", "file_path", "Annotator Metadata"}


class GaiaTask(BaseModel):
    """One GAIA question, with its attachment resolved to an absolute path when it has one."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    question: str
    level: int
    #: ``None`` on the test split, whose answers are private
    final_answer: str | None = None
    file_name: str = ""
    #: absolute path of the attachment, ``None`` when the task has none or it is missing on disk
    file_path: Path | None = None
    annotator_metadata: dict[str, Any] | None = None
    #: columns this loader does not know, kept so custom task sets can carry extra information
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def has_attachment(self) -> bool:
        return self.file_path is not None


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir`` if given, else ``$GAIA_DATA_DIR``; an error says how to provide one."""
    raw = data_dir if data_dir not in (None, "") else os.environ.get(GAIA_DATA_DIR_ENV)
    if not raw:
        raise ConfigurationError(
            "no GAIA data directory given",
            hint=f"pass --data-dir DIR or set {GAIA_DATA_DIR_ENV}; the dataset is gated, place it yourself "
            "(see docs/gaia.md), or generate the bundled task set with "
            "`python -m benchmarks.gaia_local.generate --out DIR`",
        )
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ConfigurationError(f"GAIA data directory {path} does not exist",
                                 hint="check --data-dir / GAIA_DATA_DIR")
    return path.resolve()


def find_split_dir(data_dir: Path, split: str) -> Path:
    """The folder holding the split's metadata file, searched in the layouts releases use."""
    candidates = [data_dir / "2023" / split, data_dir / split, data_dir]
    candidates += sorted(p / split for p in data_dir.iterdir() if p.is_dir() and p.name.isdigit())
    for candidate in candidates:
        if any((candidate / name).is_file() for name in _METADATA_FILES):
            return candidate
    raise ConfigurationError(
        f"no metadata.jsonl or metadata.parquet for split {split!r} under {data_dir}",
        hint=f"expected {data_dir}/2023/{split}/metadata.jsonl (the dataset's layout); check --split",
    )


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}:{lineno} is not valid JSON: {exc.msg}",
                                         hint="the metadata file is damaged; re-fetch the dataset") from None
            if not isinstance(row, dict):
                raise ConfigurationError(f"{path}:{lineno} is not a JSON object",
                                         hint="the metadata file is damaged; re-fetch the dataset")
            yield row


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigurationError(
            f"{path} is a parquet file and pyarrow is not installed",
            hint="pip install 'agentflow[gaia]' (or pyarrow), or use the dataset's metadata.jsonl",
        ) from None
    yield from pq.read_table(path).to_pylist()


def _level(value: Any, task_id: str) -> int:
    try:
        level = int(str(value).strip())
    except ValueError:
        raise ConfigurationError(f"task {task_id}: Level {value!r} is not a number",
                                 hint="GAIA levels are 1, 2 or 3") from None
    return level


def _annotator_metadata(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {"Steps": value}
    return dict(value) if isinstance(value, dict) else {"value": value}


def _attachment(row: dict[str, Any], data_dir: Path, split_dir: Path) -> Path | None:
    file_name = str(row.get("file_name") or "").strip()
    file_path = str(row.get("file_path") or "").strip()
    candidates: list[Path] = []
    if file_path:
        p = Path(file_path)
        candidates += [p] if p.is_absolute() else [data_dir / p, split_dir / p, split_dir / p.name]
    if file_name:
        candidates.append(split_dir / file_name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    if file_name or file_path:
        logger.warning("task %s: attachment %s not found under %s", row.get("task_id"), file_path or file_name,
                       split_dir)
    return None


def parse_task(row: dict[str, Any], *, data_dir: Path, split_dir: Path) -> GaiaTask:
    """One metadata row to a ``GaiaTask``; unknown columns go to ``extra``."""
    task_id = str(row.get("task_id") or "").strip()
    if not task_id:
        raise ConfigurationError(f"a row in {split_dir} has no task_id", hint="the metadata file is damaged")
    question = row.get("Question")
    if not isinstance(question, str):
        raise ConfigurationError(f"task {task_id} has no Question", hint="the metadata file is damaged")
    answer = row.get("Final answer")
    if answer == "?":  # the test split marks private answers this way
        answer = None
    return GaiaTask(
        task_id=task_id,
        question=question,
        level=_level(row.get("Level"), task_id),
        final_answer=None if answer is None else str(answer),
        file_name=str(row.get("file_name") or ""),
        file_path=_attachment(row, data_dir, split_dir),
        annotator_metadata=_annotator_metadata(row.get("Annotator Metadata")),
        extra={k: v for k, v in row.items() if k not in _KNOWN_FIELDS},
    )


def load_gaia_tasks(
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "validation",
    *,
    levels: Iterable[int] | None = None,
    limit: int | None = None,
    task_ids: Iterable[str] | None = None,
) -> list[GaiaTask]:
    """Tasks of one split, in file order, filtered by level and task id, at most ``limit`` of them.

    ``data_dir`` falls back to ``$GAIA_DATA_DIR``. When both metadata files exist, jsonl wins: it
    is the format the dataset's own README documents.
    """
    root = resolve_data_dir(data_dir)
    split_dir = find_split_dir(root, split)
    jsonl = split_dir / "metadata.jsonl"
    rows = _read_jsonl(jsonl) if jsonl.is_file() else _read_parquet(split_dir / "metadata.parquet")
    wanted_levels = set(levels) if levels is not None else None
    wanted_ids = set(task_ids) if task_ids is not None else None
    if limit is not None and limit < 0:
        raise ConfigurationError(f"limit must be >= 0, got {limit}", hint="pass --limit N with N >= 0")

    tasks: list[GaiaTask] = []
    seen: set[str] = set()
    for row in rows:
        if limit is not None and len(tasks) >= limit:
            break
        if str(row.get("task_id", "")).strip() == PLACEHOLDER_TASK_ID:
            continue
        task = parse_task(row, data_dir=root, split_dir=split_dir)
        if task.task_id in seen:
            raise ConfigurationError(f"task id {task.task_id} appears twice in {split_dir}",
                                     hint="task ids must be unique; results are keyed by them")
        seen.add(task.task_id)
        if wanted_levels is not None and task.level not in wanted_levels:
            continue
        if wanted_ids is not None and task.task_id not in wanted_ids:
            continue
        tasks.append(task)
    logger.info("loaded %d GAIA tasks from %s", len(tasks), split_dir)
    return tasks


__all__ = [
    "GAIA_DATA_DIR_ENV", "PLACEHOLDER_TASK_ID", "GaiaTask", "find_split_dir", "load_gaia_tasks", "parse_task",
    "resolve_data_dir",
]
