"""The in-process engine (``VllmEngineModel``) on the tiny model, run in the vLLM venv."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
TOOL_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["paris", "rome"]},
                   "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "days"], "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {"verdict": {"type": "string", "enum": ["yes", "no"]},
                                           "score": {"type": "integer", "minimum": 0, "maximum": 9}},
          "required": ["verdict", "score"], "additionalProperties": False}


@pytest.fixture(scope="module")
def engine_result(vllm_python: str, tiny_model_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.run([vllm_python, str(Path(__file__).with_name("engine_script.py")), str(tiny_model_dir)],
                          capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"in-process engine run failed (exit {proc.returncode}):\n"
                    + "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-40:]))
    return json.loads(lines[-1][len("RESULT "):])


def test_engine_chat_n_and_logprobs(engine_result: dict) -> None:
    chat = engine_result["chat"]
    assert chat["n"] == 3 and chat["model"] == "agentflow-tiny"
    assert chat["usage"]["prompt_tokens"] > 10 and chat["usage"]["completion_tokens"] >= 3
    assert all(f in ("stop", "length") for f in chat["finish"])
    assert all(n >= 1 for n in chat["logprobs"]) and all(t >= 2 for t in chat["top"])


def test_engine_forced_tool_calls_are_schema_valid_and_cached(engine_result: dict) -> None:
    for i, item in enumerate(engine_result["forced"]):
        assert item["finish"] == "tool_calls", item
        (call,) = item["calls"]
        assert call["name"] == "lookup_weather" and call["parse_error"] is None
        jsonschema.validate(call["arguments"], TOOL_PARAMS)
        if i > 0:  # same system + tools prefix: served from the prefix cache
            assert item["cached"] >= item["prompt"] // 2, item


def test_engine_structured_output(engine_result: dict) -> None:
    for item in engine_result["json"]:
        assert item["error"] is None
        jsonschema.validate(item["parsed"], SCHEMA)


def test_engine_streaming_and_auto_tools(engine_result: dict) -> None:
    s = engine_result["stream"]
    assert s["done_last"] and s["joined_matches"] and s["deltas"] >= 2 and s["completion_tokens"] > 0
    assert engine_result["auto"]["has_text_or_calls"]


def test_engine_rejects_requests_beyond_the_context(engine_result: dict) -> None:
    assert engine_result["too_long"] == "ContextLengthExceededError"
