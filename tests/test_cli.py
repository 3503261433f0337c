"""The `agentflow` command against a live fake server and against nothing at all."""

from __future__ import annotations

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
