"""Loading GAIA metadata in the formats the dataset's releases use."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentflow.errors import ConfigurationError
from agentflow.evals.loader import GAIA_DATA_DIR_ENV, load_gaia_tasks

ROWS = [
    {"task_id": "t-1", "Question": "What is 2+2?", "Level": 1, "Final answer": "4", "file_name": "",
     "Annotator Metadata": {"Steps": "add", "Tools": "none"}},
    {"task_id": "t-2", "Question": "Sum the sheet.", "Level": "2", "Final answer": "10", "file_name": "t-2.xlsx",
     "Annotator Metadata": {"Steps": "open; sum"}},
    {"task_id": "t-3", "Question": "Hard one.", "Level": 3, "Final answer": "x", "file_name": ""},
]


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def jsonl_dataset(tmp_path):
    split = tmp_path / "2023" / "validation"
    _write_jsonl(split / "metadata.jsonl", ROWS)
    (split / "t-2.xlsx").write_bytes(b"fake")
    return tmp_path


def test_jsonl_release_layout(jsonl_dataset):
    tasks = load_gaia_tasks(jsonl_dataset, "validation")
    assert [t.task_id for t in tasks] == ["t-1", "t-2", "t-3"]
    assert [t.level for t in tasks] == [1, 2, 3]  # "2" (str) became 2
    assert tasks[0].file_path is None
    assert tasks[1].file_path == (jsonl_dataset / "2023" / "validation" / "t-2.xlsx").resolve()
    assert tasks[0].annotator_metadata == {"Steps": "add", "Tools": "none"}
    assert tasks[0].final_answer == "4"


def test_level_and_limit_filters(jsonl_dataset):
    assert [t.task_id for t in load_gaia_tasks(jsonl_dataset, levels=[2, 3])] == ["t-2", "t-3"]
    assert [t.task_id for t in load_gaia_tasks(jsonl_dataset, limit=2)] == ["t-1", "t-2"]
    assert load_gaia_tasks(jsonl_dataset, limit=0) == []
    assert [t.task_id for t in load_gaia_tasks(jsonl_dataset, task_ids={"t-3"})] == ["t-3"]


def test_parquet_release_with_string_levels_and_file_path(tmp_path):
    split = tmp_path / "2023" / "validation"
    split.mkdir(parents=True)
    (split / "abc.pdf").write_bytes(b"%PDF-1.4")
    table = pa.table({
        "task_id": ["abc", "def"],
        "Question": ["Read the PDF.", "No file."],
        "Level": ["1", "3"],
        "Final answer": ["yes", "no"],
        "file_name": ["abc.pdf", ""],
        "file_path": ["2023/validation/abc.pdf", ""],  # newer releases: relative to the dataset root
        "Annotator Metadata": [json.dumps({"Steps": "read"}), ""],
    })
    pq.write_table(table, split / "metadata.parquet")
    tasks = load_gaia_tasks(tmp_path, "validation")
    assert [(t.task_id, t.level) for t in tasks] == [("abc", 1), ("def", 3)]
    assert tasks[0].file_path == (split / "abc.pdf").resolve()
    assert tasks[0].annotator_metadata == {"Steps": "read"}
    assert tasks[1].annotator_metadata is None


def test_test_split_placeholder_row_is_skipped_and_private_answers_are_none(tmp_path):
    rows = [{"task_id": "0-0-0-0-0", "Question": "placeholder", "Level": 1, "Final answer": "?", "file_name": ""},
            {"task_id": "q1", "Question": "Real question", "Level": 2, "Final answer": "?", "file_name": ""}]
    _write_jsonl(tmp_path / "2023" / "test" / "metadata.jsonl", rows)
    tasks = load_gaia_tasks(tmp_path, "test")
    assert [t.task_id for t in tasks] == ["q1"]
    assert tasks[0].final_answer is None


def test_data_dir_from_environment(jsonl_dataset, monkeypatch):
    monkeypatch.setenv(GAIA_DATA_DIR_ENV, str(jsonl_dataset))
    assert len(load_gaia_tasks(None, "validation")) == 3


def test_split_folder_itself_is_accepted(jsonl_dataset):
    assert len(load_gaia_tasks(jsonl_dataset / "2023" / "validation", "validation")) == 3


def test_missing_data_dir_says_how_to_provide_one(monkeypatch):
    monkeypatch.delenv(GAIA_DATA_DIR_ENV, raising=False)
    with pytest.raises(ConfigurationError) as err:
        load_gaia_tasks(None)
    assert "--data-dir" in str(err.value) and GAIA_DATA_DIR_ENV in str(err.value)


def test_missing_split_names_the_expected_path(jsonl_dataset):
    with pytest.raises(ConfigurationError, match="no metadata.jsonl or metadata.parquet for split 'test'"):
        load_gaia_tasks(jsonl_dataset, "test")


def test_missing_attachment_leaves_file_path_empty(tmp_path, caplog):
    _write_jsonl(tmp_path / "validation" / "metadata.jsonl",
                 [{"task_id": "a", "Question": "q", "Level": 1, "Final answer": "1", "file_name": "gone.csv"}])
    (task,) = load_gaia_tasks(tmp_path)
    assert task.file_path is None and task.file_name == "gone.csv"
    assert "gone.csv" in caplog.text


def test_damaged_metadata_is_a_clear_error(tmp_path):
    path = tmp_path / "validation" / "metadata.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"task_id": "a", "Question": "q", "Level": 1}\n{not json\n', encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"metadata.jsonl:2 is not valid JSON"):
        load_gaia_tasks(tmp_path)


def test_bad_level_and_duplicate_ids_are_rejected(tmp_path):
    _write_jsonl(tmp_path / "validation" / "metadata.jsonl",
                 [{"task_id": "a", "Question": "q", "Level": "hard"}])
    with pytest.raises(ConfigurationError, match="Level 'hard' is not a number"):
        load_gaia_tasks(tmp_path)
    _write_jsonl(tmp_path / "validation" / "metadata.jsonl",
                 [{"task_id": "a", "Question": "q", "Level": 1}, {"task_id": "a", "Question": "q", "Level": 1}])
    with pytest.raises(ConfigurationError, match="appears twice"):
        load_gaia_tasks(tmp_path)


def test_unknown_columns_are_kept_in_extra(tmp_path):
    _write_jsonl(tmp_path / "validation" / "metadata.jsonl",
                 [{"task_id": "a", "Question": "q", "Level": 1, "Final answer": "1", "source": "custom"}])
    (task,) = load_gaia_tasks(tmp_path)
    assert task.extra == {"source": "custom"}
