"""The zero-latency fake OpenAI server (tests/fake_openai_server.py) in a process of its own.

Client-overhead benchmarks measure ``time.process_time`` of the benchmark process, so the server
must not share it: its request parsing and JSON encoding would be billed to the client under test.
A benchmark passes the source of an ``answer(body)`` function (it may use ``text``,
``tool_call`` and anything else ``fake_openai_server`` exports); the child process serves it as
the server's default reply and lives until its stdin closes or it is killed.

    with fake_server(ANSWER_SOURCE) as base_url:
        ...
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from fake_openai_server import *  # noqa: F403 - the answer source uses the reply helpers
{answer}
server = FakeOpenAIServer(default=answer).start()
print(server.base_url, flush=True)
sys.stdin.read()
"""


def start_server(answer_source: str) -> tuple[subprocess.Popen[str], str]:
    """Start the server process; returns it and the base URL (``http://127.0.0.1:PORT/v1``).

    ``answer_source`` must define ``answer(body)``. The caller owns the process (kill it when done).
    """
    script = _SCRIPT.format(tests=str(ROOT / "tests"), answer=textwrap.dedent(answer_source))
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    base_url = proc.stdout.readline().strip()
    if not base_url:
        proc.kill()
        proc.wait()
        raise RuntimeError("the fake OpenAI server process exited before printing its URL (see its stderr above)")
    return proc, base_url


@contextmanager
def fake_server(answer_source: str) -> Iterator[str]:
    """``start_server`` as a context manager: yields the base URL, kills the process on exit."""
    proc, base_url = start_server(answer_source)
    try:
        yield base_url
    finally:
        proc.kill()
        proc.wait()
