"""The bundled task set: GAIA's format, the level mix, determinism, and the oracle agreeing everywhere."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` lives at the repo root

from agentflow.evals import load_gaia_tasks, score_answer  # noqa: E402
from agentflow.evals.scorer import scoring_path  # noqa: E402
from benchmarks.gaia_local.generate import generate  # noqa: E402
from benchmarks.gaia_local.oracle import solve_all  # noqa: E402


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_levels_and_attachment_kinds(gaia_dataset):
    tasks = load_gaia_tasks(gaia_dataset, "validation")
    assert len(tasks) >= 60
    levels = Counter(t.level for t in tasks)
    assert levels[1] / len(tasks) == pytest.approx(0.4, abs=0.03)
    assert levels[2] / len(tasks) == pytest.approx(0.4, abs=0.03)
    assert levels[3] / len(tasks) == pytest.approx(0.2, abs=0.03)
    kinds = {t.file_path.suffix for t in tasks if t.file_path is not None}
    assert kinds >= {".xlsx", ".csv", ".pdf", ".docx", ".pptx", ".json", ".xml", ".zip", ".py"}
    assert all(t.file_path is not None for t in tasks if t.file_name)  # every attachment exists
    distinct = {(t.question, t.file_path.read_bytes() if t.file_path else b"") for t in tasks}
    assert len(distinct) == len(tasks)
    assert (gaia_dataset / "2023" / "validation" / "corpus").is_dir()
    row = json.loads((gaia_dataset / "2023" / "validation" / "metadata.jsonl").read_text().splitlines()[0])
    assert {"task_id", "Question", "Level", "Final answer", "file_name", "Annotator Metadata"} <= set(row)


def test_format_traps_cover_every_scoring_path(gaia_dataset):
    tasks = load_gaia_tasks(gaia_dataset, "validation")
    paths = Counter(scoring_path(t.final_answer or "") for t in tasks)
    assert paths["number"] > 20 and paths["list"] >= 3 and paths["string"] >= 5
    big = [t for t in tasks if (t.final_answer or "").isdigit() and len(t.final_answer or "") > 20]
    assert big, "big-integer answers exercise exact arithmetic"
    # a thousands separator in a numeric answer would send it down the list path: none may have one
    assert all("," not in (t.final_answer or "") for t in tasks if scoring_path(t.final_answer or "") == "number")


def test_oracle_reproduces_every_answer_from_the_files(gaia_dataset):
    tasks = load_gaia_tasks(gaia_dataset, "validation")
    oracle = solve_all(gaia_dataset)
    mismatches = {t.task_id: (t.final_answer, oracle.get(t.task_id)) for t in tasks
                  if oracle.get(t.task_id) != t.final_answer}
    assert mismatches == {}
    assert all(score_answer(oracle[t.task_id], t.final_answer or "") for t in tasks)


def test_generation_is_deterministic_and_seeded(gaia_dataset, tmp_path):
    generate(tmp_path / "again", seed=0)
    assert _digest(tmp_path / "again") == _digest(gaia_dataset)
    generate(tmp_path / "other", seed=1)
    first = (gaia_dataset / "2023" / "validation" / "metadata.jsonl").read_text()
    assert (tmp_path / "other" / "2023" / "validation" / "metadata.jsonl").read_text() != first
