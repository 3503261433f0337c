"""Built-in tools: the Python sandbox, the calculator and the workspace file tools."""

import asyncio
import os
import socket
import threading
from pathlib import Path

import pytest

from agentflow.errors import SandboxViolationError, ToolError
from agentflow.tools.builtin import (
    NetworkIsolation,
    PythonSandbox,
    calculate,
    calculator,
    default_tools,
    file_tools,
    network_isolation_support,
    python_tool,
)
from agentflow.tools.builtin import sandbox as sandbox_module
from agentflow.tools.result import ToolFailure

# --- python sandbox ----------------------------------------------------------------------------------


async def test_python_reports_output_and_exit_code():
    py = python_tool(timeout_s=10)
    ok = await py.invoke({"code": "print('hello')\nx = 6\nx * 7"}, call_id="c")
    assert not ok.is_error and ok.call_id == "c" and ok.name == "python"
    assert ok.content.startswith("exit code: 0\nstdout:\nhello\n42")  # trailing expression echoed

    failed = await py.invoke({"code": "import sys\nprint('partial')\nsys.exit(3)"})
    assert failed.is_error and failed.error_kind == "exception"
    assert failed.content.startswith("exit code: 3\nstdout:\npartial")

    crashed = await py.invoke({"code": "def f():\n    return 1 / 0\nf()"})
    assert "exit code: 1" in crashed.content and "ZeroDivisionError: division by zero" in crashed.content
    # the traceback points into the model's code (with source lines), not into the runner
    assert 'File "<code>", line 2, in f' in crashed.content and "return 1 / 0" in crashed.content
    assert "_agentflow_main" not in crashed.content

    syntax = await py.invoke({"code": "def broken(:\n  pass"})
    assert syntax.is_error and "SyntaxError" in syntax.content


async def test_time_limit_kills_an_infinite_loop():
    py = python_tool(timeout_s=1)
    result = await py.invoke({"code": "print('start', flush=True)\nwhile True:\n    pass"})
    assert result.is_error and result.error_kind == "timeout"
    assert result.content.startswith("TIMED OUT after 1 s: the process group was killed.")
    assert "start" in result.content  # output produced before the kill is kept


async def test_memory_limit_stops_a_huge_allocation():
    sandbox = PythonSandbox(memory_mb=256, timeout_s=10)
    result = await sandbox.run("data = bytearray(4 * 1024**3)\nprint('allocated')")
    assert result.exit_code == 1 and "MemoryError" in result.stderr and "allocated" not in result.stdout
    assert "note: the memory limit is 256 MB" in result.format()


async def test_file_size_limit_applies():
    sandbox = PythonSandbox(max_file_mb=1, timeout_s=10)
    result = await sandbox.run("open('big.bin', 'wb').write(b'x' * (2 * 1024 * 1024))")
    assert result.exit_code == 1 and "File too large" in result.stderr


async def test_each_run_gets_its_own_temporary_directory():
    sandbox = PythonSandbox(timeout_s=10)
    code = "import os\nprint(os.getcwd())\nprint(os.listdir('.'))\n_ = open('note.txt', 'w').write('x')"
    first, second = await sandbox.run(code), await sandbox.run(code)
    dir1, listing1 = first.stdout.splitlines()
    dir2, _ = second.stdout.splitlines()
    assert listing1 == "[]"  # starts empty: the snippet file itself lives elsewhere
    assert dir1 != dir2 and dir1 != os.getcwd()
    assert not Path(dir1).exists() and not Path(dir2).exists()  # cleaned up afterwards


async def test_workspace_files_persist_between_runs(tmp_path):
    py = python_tool(tmp_path, timeout_s=10)
    await py.invoke({"code": "open('state.txt', 'w').write('42')"})
    result = await py.invoke({"code": "print(open('state.txt').read())"})
    assert "42" in result.content and (tmp_path / "state.txt").read_text() == "42"


async def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-1")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-secret-2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-3")
    sandbox = PythonSandbox(timeout_s=10, env={"ALLOWED_SETTING": "visible"})
    result = await sandbox.run("import os\nfor k, v in sorted(os.environ.items()):\n    print(k, '=', v)")
    assert result.exit_code == 0
    for secret in ("sk-secret-1", "ghp-secret-2", "aws-secret-3", "OPENAI_API_KEY", "GITHUB_TOKEN"):
        assert secret not in result.stdout
    assert "ALLOWED_SETTING = visible" in result.stdout
    assert f"HOME = {os.environ.get('HOME')}\n" not in result.stdout


async def test_stdin_is_closed():
    result = await PythonSandbox(timeout_s=10).run("input()")
    assert result.exit_code == 1 and "EOFError" in result.stderr


async def test_long_output_keeps_head_and_tail():
    sandbox = PythonSandbox(timeout_s=10, max_output_chars=1000)
    result = await sandbox.run("print('FIRST')\nprint('x' * 200_000)\nprint('LAST')")
    assert result.exit_code == 0 and result.stdout_cut_bytes > 190_000
    assert result.stdout.startswith("FIRST") and result.stdout.rstrip().endswith("LAST")
    assert f"[... {result.stdout_cut_bytes:,} bytes of output cut ...]" in result.stdout


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" in status.read_text()  # a zombie is dead, awaiting its reaper


async def test_background_processes_are_killed_when_the_run_ends():
    result = await PythonSandbox(timeout_s=10).run(
        "import subprocess\np = subprocess.Popen(['sleep', '60'])\nprint(p.pid)")
    assert result.exit_code == 0 and not result.timed_out
    pid = int(result.stdout.strip())
    for _ in range(100):
        if _process_gone(pid):
            break
        await asyncio.sleep(0.02)
    assert _process_gone(pid)


async def test_cancellation_kills_the_code_and_propagates(tmp_path):
    sandbox = PythonSandbox(tmp_path, timeout_s=60)
    task = asyncio.create_task(sandbox.run(
        "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(60)"))
    pid_file = tmp_path / "pid"
    for _ in range(500):
        if pid_file.exists() and pid_file.read_text():
            break
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if _process_gone(pid):
            break
        await asyncio.sleep(0.02)
    assert _process_gone(pid)


@pytest.fixture
def loopback_server():
    """A TCP server on 127.0.0.1 that accepts connections, for checking network isolation."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


CONNECT = """
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", exc)
"""


async def test_network_isolation_matches_what_is_reported(loopback_server):
    sandbox = PythonSandbox(timeout_s=10)
    result = await sandbox.run(CONNECT.format(port=loopback_server))
    assert result.network_isolated == network_isolation_support().available
    if result.network_isolated:
        assert result.stdout.startswith("BLOCKED"), result.stdout
        assert result.format().endswith("network: isolated")
    else:
        assert result.stdout.startswith("CONNECTED"), result.stdout
        assert "network: NOT isolated (" in result.format()


async def test_allow_network_really_allows_it(loopback_server):
    result = await PythonSandbox(timeout_s=10, allow_network=True).run(CONNECT.format(port=loopback_server))
    assert result.stdout.startswith("CONNECTED") and not result.network_isolated
    assert "network: NOT isolated (network access allowed by configuration)" in result.format()


async def test_required_isolation_refuses_when_unavailable(monkeypatch):
    monkeypatch.setattr(sandbox_module, "network_isolation_support",
                        lambda: NetworkIsolation(None, "namespaces blocked in this test"))
    sandbox = PythonSandbox(timeout_s=10, require_network_isolation=True)
    with pytest.raises(SandboxViolationError, match="namespaces blocked in this test"):
        await sandbox.run("print(1)")
    py = python_tool(timeout_s=10, require_network_isolation=True)
    assert "Network access is not blocked." in py.description
    result = await py.invoke({"code": "print(1)"})
    assert result.error_kind == "sandbox" and "network isolation is required" in result.content


def test_python_tool_rejects_missing_workspace(tmp_path):
    with pytest.raises(ToolError, match="not an existing directory"):
        python_tool(tmp_path / "missing")


# --- calculator ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expression", "expected"), [
    ("1 + 2 * 3", "7"),
    ("(1 + 2) * 3", "9"),
    ("2 ** 100", "1267650600228229401496703205376"),
    ("12345678901234567890 * 98765432109876543210", "1219326311370217952237463801111263526900"),
    ("7 // 2", "3"),
    ("-7 % 3", "2"),
    ("-(3 - 5)", "2"),
    ("10 / 4", "2.5 (exactly 5/2)"),
    ("10 / 5", "2"),
    ("1 / 3", "0.333333333333333 (exactly 1/3)"),
    ("2 ** -2", "0.25 (exactly 1/4)"),
    ("0.1 + 0.2", "0.3"),
    ("sqrt(16)", "4"),
    ("log(8, 2)", "3"),
    ("sin(pi / 2)", "1"),
    ("factorial(20)", "2432902008176640000"),
    ("comb(50, 25)", "126410606437752"),
    ("abs(-2.5) + max(1, 4, 2)", "6.5"),
    ("round(2.567, 2)", "2.57"),
    ("3 \u00d7 4 \u00f7 2", "6"),
])
def test_calculator_results(expression, expected):
    assert calculate(expression) == expected


def test_calculator_huge_results_are_exact_or_clearly_approximate():
    assert calculate("10 ** 30 / 7") == "1.42857142857143e+29 (exactly 1000000000000000000000000000000/7)"
    assert calculate("2 ** 5000").endswith("(an integer with 1,506 digits)")
    assert calculate("2 ** 5000").startswith("1.41246703213942e+1505")


@pytest.mark.parametrize(("expression", "message"), [
    ("__import__('os').system('echo hi')", "not allowed"),
    ("(1).real", "Attribute access is not allowed"),
    ("open('x')", "Calling 'open' is not allowed"),
    ("x + 1", "The name 'x' is not allowed"),
    ("'a' * 3", "The literal 'a' is not allowed"),
    ("[1, 2][0]", "not allowed"),
    ("(lambda: 1)()", "not allowed"),
    ("2 ^ 10", "write powers as a ** b"),
    ("9 ** 9 ** 9", "more than this calculator allows"),
    ("factorial(10 ** 6)", "above 10,000 are not supported"),
    ("2 ** 99999 * 2 ** 99999", "The result is too large"),
    ("1 +", "Not a valid expression"),
    ("", "empty"),
])
def test_calculator_rejects_unsafe_or_unbounded_input(expression, message):
    with pytest.raises(ToolFailure) as info:
        calculate(expression)
    assert info.value.kind == "validation" and message in info.value.message


async def test_calculator_tool_reports_math_errors_as_results():
    zero = await calculator.invoke({"expression": "1 / (2 - 2)"})
    assert zero.is_error and zero.error_kind == "exception" and "division by zero" in zero.content
    domain = await calculator.invoke({"expression": "sqrt(-1)"})
    assert domain.is_error and "outside the function's domain" in domain.content
    overflow = await calculator.invoke({"expression": "exp(1000)"})
    assert overflow.is_error and "too large for a floating-point number" in overflow.content
    unsafe = await calculator.invoke({"expression": "__import__('os')"})
    assert unsafe.error_kind == "validation"
    assert (await calculator.invoke('{"expression": "6 * 7"}')).content == "42"


# --- file tools ---------------------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "data.csv").write_text("x,y\n1,2\n")
    (root / "docs" / "readme.md").write_text("# Readme\n")
    (root / "docs" / "deep" / "notes.txt").write_text("deep notes")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (root / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "secret.txt").write_text("top secret")
    (root / "escape_link").symlink_to(tmp_path / "secret.txt")
    (root / "escape_dir").symlink_to(tmp_path, target_is_directory=True)
    (root / "inner_link").symlink_to(root / "a.txt")
    return root


@pytest.fixture
def files(workspace):
    list_files, read_file = file_tools(workspace, max_chars=50)
    return list_files, read_file


async def test_list_files(files):
    list_files, _ = files
    top = (await list_files.invoke({})).content
    assert "docs/" in top and "a.txt  (6 bytes)" in top and "docs/readme.md" not in top
    assert "escape_link -> (link outside the workspace, not accessible)" in top
    deep = (await list_files.invoke({"path": "docs", "recursive": True})).content
    assert "docs/readme.md" in deep and "docs/deep/notes.txt  (10 bytes)" in deep
    matched = (await list_files.invoke({"pattern": "*.txt", "recursive": True})).content
    assert "a.txt" in matched and "docs/deep/notes.txt" in matched and "data.csv" not in matched
    # recursion does not follow a symlinked directory out of the workspace
    assert "secret.txt" not in matched
    missing = await list_files.invoke({"path": "nope"})
    assert missing.is_error and "No such directory" in missing.content


async def test_read_file_normal_and_in_chunks(files, workspace):
    _, read_file = files
    assert (await read_file.invoke({"path": "a.txt"})).content == "alpha\n"
    assert (await read_file.invoke({"path": "inner_link"})).content == "alpha\n"  # link inside is fine
    assert (await read_file.invoke({"path": str(workspace / "data.csv")})).content == "x,y\n1,2\n"
    (workspace / "long.txt").write_text("".join(f"{i:03d}\n" for i in range(30)))  # 120 characters
    first = (await read_file.invoke({"path": "long.txt"})).content
    assert first.startswith("000\n001\n") and "call read_file with offset=50 to continue" in first
    second = (await read_file.invoke({"path": "long.txt", "offset": 50, "max_chars": 50})).content
    assert second.startswith("2\n013\n") and "offset=100" in second
    assert first.split("\n[")[0] + second.split("\n[")[0] == "".join(f"{i:03d}\n" for i in range(25))
    last = (await read_file.invoke({"path": "long.txt", "offset": 100})).content
    assert last.endswith("end of file]") and last.startswith("025\n")
    too_big = await read_file.invoke({"path": "long.txt", "max_chars": 51})
    assert too_big.error_kind == "validation" and "less than or equal to 50" in too_big.content


async def test_binary_files_are_reported_not_dumped(files):
    _, read_file = files
    png = await read_file.invoke({"path": "image.png"})
    assert "is a binary file (PNG image, 1,032 bytes)" in png.content and "\x00" not in png.content
    blob = await read_file.invoke({"path": "blob.bin"})
    assert "binary file (binary data" in blob.content


@pytest.mark.parametrize("path", [
    "../secret.txt", "docs/../../secret.txt", "escape_link", "escape_dir/secret.txt", "/etc/passwd",
])
async def test_paths_leaving_the_workspace_are_refused(files, path):
    list_files, read_file = files
    result = await read_file.invoke({"path": path})
    assert result.is_error and result.error_kind == "sandbox" and "outside the workspace" in result.content
    assert "top secret" not in result.content


async def test_listing_outside_the_workspace_is_refused(files):
    list_files, _ = files
    for path in ("..", "escape_dir", "/"):
        result = await list_files.invoke({"path": path})
        assert result.error_kind == "sandbox", path
    assert "symlink" in (await list_files.invoke({"path": "escape_dir"})).content


async def test_read_file_errors_guide_the_model(files):
    _, read_file = files
    missing = await read_file.invoke({"path": "missing.txt"})
    assert missing.is_error and "Call list_files" in missing.content
    directory = await read_file.invoke({"path": "docs"})
    assert directory.is_error and "is a directory" in directory.content


def test_file_tools_need_an_existing_directory(tmp_path):
    with pytest.raises(ToolError, match="not an existing directory"):
        file_tools(tmp_path / "missing")


def test_default_tools(tmp_path):
    tools = default_tools(tmp_path)
    assert [t.name for t in tools] == ["python", "calculator", "list_files", "read_file"]
    for t in tools:  # every built-in can be sent to a strict server
        assert t.spec(strict=True).strict
