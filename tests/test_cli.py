"""The `agentflow` command against a live fake server and against nothing at all."""

from __future__ import annotations

import json
import socket

from fake_openai_server import text, tool_call
from typer.testing import CliRunner

from agentflow.cli import app

runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doctor_prints_capability_table(fake_openai):
    result = runner.invoke(app, ["doctor", "--base-url", fake_openai.base_url])
    assert result.exit_code == 0, result.output
    for label in ("tool_choice", "json_schema", "logprobs", "streaming", "fake-model"):
        assert label in result.output


def test_run_single_worker_uses_tools_and_prints_answer(fake_openai, tmp_path):
    fake_openai.enqueue(tool_call("calculator", {"expression": "6*7"}), text("42"))
    result = runner.invoke(app, ["run", "What is 6*7?", "--single", "--base-url", fake_openai.base_url,
                                 "--workspace", str(tmp_path), "--steps"])
    assert result.exit_code == 0, result.output
    assert "42" in result.output and "calculator" in result.output
    second = fake_openai.requests[1]["messages"]
    assert any(m["role"] == "tool" and m["content"] == "42" for m in second)


def test_env_variables_configure_the_endpoint(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTFLOW_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("AGENTFLOW_MODEL", "fake-model")
    fake_openai.enqueue(text("hello"))
    result = runner.invoke(app, ["run", "hi", "--single", "--workspace", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert fake_openai.requests[0]["model"] == "fake-model"


def test_nothing_listening_is_one_clear_error():
    url = f"http://127.0.0.1:{free_port()}/v1"
    for args in (["doctor", "--base-url", url], ["run", "hi", "--base-url", url]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        out = result.output
        assert url in out and "agentflow serve" in out and "AGENTFLOW_BASE_URL" in out
        assert "Traceback" not in out
        assert out.count("error:") == 1


def _workforce_brain(body: dict):
    """Plays every role of a workforce run over HTTP, keyed by the structured-output schema name."""
    fmt = (body.get("response_format") or {}).get("json_schema") or {}
    name = fmt.get("name")
    node = {"expected_output": "a number", "acceptance_criteria": "a number", "worker": None, "handler": "worker",
            "function": None, "arguments": "", "map_over": None, "map_mode": "project"}
    if name == "plan":
        return text(json.dumps({"nodes": [
            {**node, "id": "a", "goal": "compute 6*7", "inputs": []},
            {**node, "id": "b", "goal": "compute 5+5", "inputs": []},
            {**node, "id": "c", "goal": "add the results", "inputs": ["a", "b"]},
        ], "outputs": ["c"]}))
    if name == "assignments":
        ids = fmt["schema"]["properties"]["assignments"]["items"]["properties"]["node"]["enum"]
        return text(json.dumps({"assignments": [{"node": i, "worker": "assistant"} for i in ids]}))
    if name == "verdict":
        return text(json.dumps({"ok": True, "score": 0.95, "feedback": ""}))
    return text("52")


def test_run_uses_the_workforce_by_default(fake_openai_factory, tmp_path):
    server = fake_openai_factory(default=_workforce_brain)
    result = runner.invoke(app, ["run", "What is 6*7 + 5+5?", "--base-url", server.base_url,
                                 "--workspace", str(tmp_path), "--no-critic"])
    assert result.exit_code == 0, result.output
    assert "52" in result.output and "succeeded" in result.output and "3 nodes" in result.output
    names = [((r.get("response_format") or {}).get("json_schema") or {}).get("name") for r in server.requests]
    assert names[0] == "plan" and "verdict" not in names


def test_run_under_a_budget_samples_and_reports_spending(fake_openai_factory, tmp_path):
    server = fake_openai_factory(default=_workforce_brain)
    result = runner.invoke(app, ["run", "What is 6*7 + 5+5?", "--base-url", server.base_url, "--workspace",
                                 str(tmp_path), "--no-critic", "--budget", "200000", "--samples", "3"])
    assert result.exit_code == 0, result.output
    assert "budget: spent" in result.output and "of 200000 tokens" in result.output
    from agentflow.agent import DEFAULT_INSTRUCTIONS

    worker_requests = [r for r in server.requests if r["messages"][0]["content"] == DEFAULT_INSTRUCTIONS]
    assert worker_requests and all(r.get("n") == 3 for r in worker_requests)


def test_dollar_budget_without_prices_is_a_clear_error(fake_openai, tmp_path):
    result = runner.invoke(app, ["run", "hi", "--base-url", fake_openai.base_url, "--workspace", str(tmp_path),
                                 "--budget", "0.01", "--budget-unit", "usd"])
    assert result.exit_code == 1 and "--price-in" in result.output
