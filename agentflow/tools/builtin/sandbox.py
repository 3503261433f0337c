"""Running model-written Python in a separate, resource-limited process.

This is a *containment* layer for honest mistakes and runaway code (infinite loops, huge
allocations, fork storms, accidental network calls, leaking the host's API keys). It is **not** a
security boundary against deliberately malicious code; run agentflow inside a container or VM
when the code may be hostile.

What is isolated
----------------
- **Process**: each run is a fresh ``python -I`` interpreter (isolated mode: ``PYTHON*``
  variables and the user site-packages are ignored) in its own session/process group. Variables
  do not persist between runs.
- **Time**: a wall-clock limit (``timeout_s``) after which the whole process group is killed
  with SIGKILL, plus ``RLIMIT_CPU`` as a backstop. Processes the code leaves behind in its group
  are killed when the run ends, too.
- **Memory**: ``RLIMIT_AS`` (address space, ``memory_mb``); large allocations raise
  ``MemoryError`` inside the code.
- **Files written**: ``RLIMIT_FSIZE`` caps the size of any single file written (``max_file_mb``);
  ``RLIMIT_CORE`` is 0.
- **Processes**: ``RLIMIT_NPROC`` limits how many *more* processes/threads the code may create
  (``max_processes``). Linux counts this limit per real user across the whole machine, so it is
  set to "the user's current count + max_processes"; it is not enforced for root.
- **Working directory**: a fresh empty temporary directory, deleted afterwards, unless a
  ``workspace`` is given (then the code runs there and its files persist). ``HOME`` and
  ``TMPDIR`` point into private directories as well.
- **Environment**: built from an allow-list (``PATH``, locale and timezone variables) plus what
  the caller passes in ``env``; nothing else is inherited, so ``*_API_KEY``, ``*TOKEN*``, cloud
  credentials and the like are not visible.
- **Input**: stdin is ``/dev/null``. stdout and stderr are captured; beyond
  ``max_output_chars`` per stream only the head and tail are kept (the rest is drained, so a
  chatty program cannot block or exhaust memory).
- **Network** (Linux): the child enters a new, empty network namespace before exec, so it has
  no interfaces but a down loopback: every connection fails, including to ``127.0.0.1``. As root
  this uses ``unshare(CLONE_NEWNET)``; otherwise an unprivileged user namespace
  (``CLONE_NEWUSER``, mapping the user to itself) is created first. Whether this works is probed
  once per process; when it does not (no ``unshare``, containers with seccomp filters, non-Linux
  systems) the code runs *with* network access and every result says so
  (``network_isolated=False``); pass ``require_network_isolation=True`` to refuse instead.

What is *not* isolated
----------------------
- The file system is not hidden: the code can read every file the user running agentflow can
  read, and write wherever that user can write (limited only by ``RLIMIT_FSIZE``).
- Privileges are not dropped: if agentflow runs as root, so does the code (and root can raise
  its own limits).
- A process that calls ``setsid()`` leaves the process group and survives the group kill.
- Other local IPC (Unix sockets, shared memory, signals to the user's other processes) is
  not blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from agentflow.errors import SandboxViolationError, ToolError

try:  # POSIX only; on other systems no limits can be applied
    import resource
except ImportError:  # pragma: no cover - exercised only on Windows
    resource = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MiB = 1024 * 1024

#: variables passed through from the parent environment (everything else is dropped)
ENV_ALLOWLIST = (
    "PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "LC_COLLATE",
    "LC_MONETARY", "LC_MESSAGES", "TZ",
)

# Runs inside the child before the user's code: reads the snippet, shows tracebacks that start at
# the user's code, and prints the value of a trailing expression like a notebook cell does.
BOOTSTRAP = r'''
def _agentflow_main():
    import ast, linecache, os, sys, traceback
    path, echo = sys.argv[1], sys.argv[2] == "1"
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    filename = "<code>"
    sys.argv = [filename]
    sys.path.insert(0, os.getcwd())
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(encoding="utf-8", errors="backslashreplace")
        except Exception:
            pass
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError) as exc:
        traceback.print_exception(type(exc), exc, None)
        sys.exit(1)
    last = None
    if echo and tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    namespace = sys.modules["__main__"].__dict__
    namespace.pop("_agentflow_main", None)
    namespace["__file__"] = filename
    try:
        exec(compile(tree, filename, "exec"), namespace)
        if last is not None:
            value = eval(compile(last, filename, "eval"), namespace)
            if value is not None:
                print(repr(value))
    except SystemExit:
        raise
    except BaseException as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
        sys.exit(1)
_agentflow_main()
'''

_PROBE = "import socket; print(','.join(sorted(n for _, n in socket.if_nameindex())))"


# --- network isolation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkIsolation:
    """Whether (and how) children can be put in a private network namespace on this machine."""

    mode: Literal["netns", "userns+netns"] | None
    detail: str

    @property
    def available(self) -> bool:
        return self.mode is not None


@functools.lru_cache(maxsize=1)
def _unshare_function() -> Callable[[int], None] | None:
    """``os.unshare`` (Python 3.12+) or the libc call through ctypes; None off Linux."""
    if hasattr(os, "unshare"):
        return os.unshare  # type: ignore[no-any-return]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc_unshare = libc.unshare
    except (OSError, AttributeError):
        return None
    libc_unshare.argtypes = [ctypes.c_int]
    libc_unshare.restype = ctypes.c_int

    def unshare(flags: int) -> None:
        if libc_unshare(flags) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return unshare


def _write_proc_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _enter_network_namespace(mode: str, unshare: Callable[[int], None], uid: int, gid: int) -> None:
    """Runs in the forked child (see ``_make_preexec``): only raw syscalls, no locks, no imports."""
    if mode == "netns":
        unshare(CLONE_NEWNET)
    elif mode == "userns+netns":
        unshare(CLONE_NEWUSER | CLONE_NEWNET)
        _write_proc_file("/proc/self/setgroups", b"deny")
        _write_proc_file("/proc/self/uid_map", f"{uid} {uid} 1".encode())
        _write_proc_file("/proc/self/gid_map", f"{gid} {gid} 1".encode())


@functools.lru_cache(maxsize=1)
def network_isolation_support() -> NetworkIsolation:
    """Probe once per process which namespace mode works here (a cached fact about the OS)."""
    unshare = _unshare_function()
    if unshare is None:
        return NetworkIsolation(None, f"network namespaces are not available on {sys.platform}")
    uid, gid = os.getuid(), os.getgid()
    modes = ["netns", "userns+netns"] if uid == 0 else ["userns+netns", "netns"]
    failures: list[str] = []
    for mode in modes:
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-S", "-c", _PROBE],
                preexec_fn=functools.partial(_enter_network_namespace, mode, unshare, uid, gid),
                capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            failures.append(f"{mode}: {exc}")
            continue
        interfaces = proc.stdout.strip()
        if proc.returncode == 0 and interfaces == "lo":
            logger.debug("network isolation for sandboxed code: %s", mode)
            return NetworkIsolation(mode, "private network namespace" + (
                " (unprivileged user namespace)" if mode == "userns+netns" else ""))
        failures.append(f"{mode}: probe saw interfaces {interfaces!r} (rc={proc.returncode})")
    detail = "unshare of the network namespace is not permitted here (" + "; ".join(failures) + ")"
    logger.warning("sandboxed Python code will have network access: %s", detail)
    return NetworkIsolation(None, detail)


# --- resource limits -----------------------------------------------------------------------------


def _user_task_count(uid: int) -> int | None:
    """Processes + threads owned by ``uid`` (what RLIMIT_NPROC counts), or None if unknown."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    count = 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            count += len(os.listdir(f"/proc/{entry}/task"))
        except OSError:
            continue  # the process exited meanwhile
    return count


def _clamped(res: int, soft: int, hard: int) -> tuple[int, int]:
    """Never ask for more than the current hard limit (raising it needs privileges)."""
    assert resource is not None
    _, current_hard = resource.getrlimit(res)
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    return soft, hard


def _make_preexec(
    limits: list[tuple[int, int, int]], isolation: NetworkIsolation, uid: int, gid: int,
    unshare: Callable[[int], None] | None,
) -> Callable[[], None]:
    """Everything is computed in the parent; the child only makes syscalls (fork-safe)."""

    def preexec() -> None:
        if isolation.mode is not None and unshare is not None:
            _enter_network_namespace(isolation.mode, unshare, uid, gid)
        if resource is not None:
            for res, soft, hard in limits:
                resource.setrlimit(res, (soft, hard))

    return preexec


# --- output capture ------------------------------------------------------------------------------


class _Capture:
    """Keeps the head and the tail of a stream and counts what falls in between."""

    def __init__(self, limit: int) -> None:
        self.head_limit = max(limit * 2 // 3, 1)
        self.tail_limit = max(limit - self.head_limit, 0)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self.tail_limit:
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_limit:
                del self.tail[: -self.tail_limit]

    def text(self) -> tuple[str, int]:
        tail = bytes(self.tail[-self.tail_limit:]) if self.tail_limit else b""
        cut = self.total - len(self.head) - len(tail)
        if cut <= 0:
            return (bytes(self.head) + tail).decode("utf-8", "replace"), 0
        return (
            bytes(self.head).decode("utf-8", "replace")
            + f"\n[... {cut:,} bytes of output cut ...]\n"
            + tail.decode("utf-8", "replace"),
            cut,
        )


class _RunProtocol(asyncio.SubprocessProtocol):
    """Feeds the captures directly and signals exit and pipe closure separately.

    (``asyncio.subprocess.Process.wait()`` also waits for the pipes to close, so a background
    process that inherited stdout would make a finished run look like it hung.)
    """

    def __init__(self, out: _Capture, err: _Capture, loop: asyncio.AbstractEventLoop) -> None:
        self.out, self.err = out, err
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        (self.out if fd == 1 else self.err).feed(data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _shared_cache_dir(name: str) -> str:
    """A per-user cache directory reused across runs (matplotlib's font cache takes seconds to build)."""
    path = Path(tempfile.gettempdir()) / f"agentflow-cache-{os.getuid()}" / name
    with contextlib.suppress(OSError):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(path)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# --- the sandbox ---------------------------------------------------------------------------------


class SandboxResult(BaseModel):
    """What one run produced; ``format()`` renders it for a model."""

    stdout: str = ""
    stderr: str = ""
    #: the process exit status; negative means killed by that signal (POSIX convention)
    exit_code: int | None = None
    timed_out: bool = False
    stdout_cut_bytes: int = 0
    stderr_cut_bytes: int = 0
    network_isolated: bool = False
    network_detail: str = ""
    duration_s: float = 0.0
    timeout_s: float = 0.0
    memory_mb: int | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def format(self) -> str:
        if self.timed_out:
            status = (f"TIMED OUT after {self.timeout_s:g} s: the process group was killed. "
                      "Output produced before the kill is shown below.")
        elif self.exit_code is not None and self.exit_code < 0:
            sig = -self.exit_code
            try:
                sig_name = signal.Signals(sig).name
            except ValueError:
                sig_name = f"signal {sig}"
            status = f"killed by {sig_name}"
            if sig_name == "SIGXCPU":
                status += " (CPU time limit reached)"
        else:
            status = f"exit code: {self.exit_code}"
        parts = [status]
        if self.stdout:
            parts.append("stdout:\n" + self.stdout.rstrip("\n"))
        if self.stderr:
            parts.append("stderr:\n" + self.stderr.rstrip("\n"))
        if not self.stdout and not self.stderr:
            parts.append("(no output" + ("; use print() to show values)" if self.exit_code == 0 else ")"))
        if "MemoryError" in self.stderr and self.memory_mb:
            parts.append(f"note: the memory limit is {self.memory_mb} MB")
        parts.append("network: " + ("isolated" if self.network_isolated else f"NOT isolated ({self.network_detail})"))
        return "\n".join(parts)


class PythonSandbox:
    """Runs Python source in a limited subprocess. See the module docstring for what is isolated."""

    def __init__(
        self,
        workspace: str | os.PathLike[str] | None = None,
        *,
        timeout_s: float = 10.0,
        memory_mb: int = 1024,
        cpu_s: int | None = None,
        max_file_mb: int = 64,
        max_processes: int = 64,
        max_output_chars: int = 4000,
        allow_network: bool = False,
        require_network_isolation: bool = False,
        env: dict[str, str] | None = None,
        python: str | None = None,
        echo_last_expression: bool = True,
    ) -> None:
        if timeout_s <= 0:
            raise ToolError(f"timeout_s must be positive, got {timeout_s!r}")
        if memory_mb < 64:
            raise ToolError(f"memory_mb={memory_mb} is too small for a Python interpreter",
                            hint="Use at least 64 (the default is 1024).")
        self.workspace = Path(workspace).resolve() if workspace is not None else None
        if self.workspace is not None and not self.workspace.is_dir():
            raise ToolError(f"Workspace {str(workspace)!r} is not an existing directory.",
                            hint="Create it first, or pass workspace=None for a fresh temp dir per run.")
        self.timeout_s = float(timeout_s)
        self.memory_mb = memory_mb
        self.cpu_s = cpu_s if cpu_s is not None else int(timeout_s) + 2
        self.max_file_mb = max_file_mb
        self.max_processes = max_processes
        self.max_output_chars = max_output_chars
        self.allow_network = allow_network
        self.require_network_isolation = require_network_isolation
        self.extra_env = dict(env or {})
        self.python = python or sys.executable
        self.echo_last_expression = echo_last_expression

    def network_isolation(self) -> NetworkIsolation:
        if self.allow_network:
            return NetworkIsolation(None, "network access allowed by configuration")
        return network_isolation_support()

    def _environment(self, home: Path, tmp: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in ENV_ALLOWLIST if k in os.environ}
        env.setdefault("PATH", os.defpath)
        env.update(
            HOME=str(home), TMPDIR=str(tmp), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
            MKL_NUM_THREADS="1", MPLBACKEND="Agg", MPLCONFIGDIR=_shared_cache_dir("matplotlib"),
        )
        env.update(self.extra_env)
        return env

    def _limits(self) -> list[tuple[int, int, int]]:
        if resource is None:
            return []
        limits = [
            (resource.RLIMIT_AS, *_clamped(resource.RLIMIT_AS, self.memory_mb * MiB, self.memory_mb * MiB)),
            (resource.RLIMIT_CPU, *_clamped(resource.RLIMIT_CPU, self.cpu_s, self.cpu_s + 1)),
            (resource.RLIMIT_FSIZE, *_clamped(resource.RLIMIT_FSIZE, self.max_file_mb * MiB, self.max_file_mb * MiB)),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        if os.getuid() != 0 and self.max_processes > 0:
            current = _user_task_count(os.getuid())
            if current is not None:
                n = current + self.max_processes
                limits.append((resource.RLIMIT_NPROC, *_clamped(resource.RLIMIT_NPROC, n, n)))
        return limits

    async def run(self, code: str) -> SandboxResult:
        """Run ``code``; raises ``SandboxViolationError`` only when isolation is required but missing."""
        isolation = await asyncio.to_thread(self.network_isolation)  # the first call probes (a subprocess)
        if not isolation.available and self.require_network_isolation and not self.allow_network:
            raise SandboxViolationError(
                f"Refusing to run code: network isolation is required but unavailable ({isolation.detail}).",
                hint="Run agentflow where unprivileged user namespaces are allowed, or set "
                     "require_network_isolation=False to accept code with network access.",
            )
        start = time.perf_counter()
        run_dir = Path(tempfile.mkdtemp(prefix="agentflow-python-"))
        try:
            script = run_dir / "snippet.py"
            script.write_text(code, encoding="utf-8")
            home, tmp = run_dir / "home", run_dir / "tmp"
            home.mkdir()
            tmp.mkdir()
            workdir = self.workspace
            if workdir is None:
                workdir = run_dir / "work"
                workdir.mkdir()
            uid, gid = os.getuid(), os.getgid()
            unshare = _unshare_function() if isolation.available else None
            preexec = _make_preexec(self._limits(), isolation, uid, gid, unshare)
            argv = [self.python, "-I", "-u", "-c", BOOTSTRAP, str(script), "1" if self.echo_last_expression else "0"]
            result = await self._execute(argv, workdir, self._environment(home, tmp), preexec)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        result.network_isolated = isolation.available
        result.network_detail = isolation.detail
        result.duration_s = time.perf_counter() - start
        result.timeout_s = self.timeout_s
        result.memory_mb = self.memory_mb
        return result

    async def _execute(self, argv: list[str], cwd: Path, env: dict[str, str],
                       preexec: Callable[[], None]) -> SandboxResult:
        out, err = _Capture(self.max_output_chars), _Capture(self.max_output_chars)
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _RunProtocol(out, err, loop), *argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, preexec_fn=preexec,
        )
        pid = transport.get_pid()
        timed_out = killed = False
        try:
            try:
                await asyncio.wait_for(asyncio.shield(protocol.exited), self.timeout_s)
            except asyncio.TimeoutError:
                timed_out = True
            _kill_group(pid)  # on timeout; otherwise removes what the code left behind in its group
            killed = True
            await asyncio.wait_for(asyncio.shield(protocol.exited), 10)
            try:
                await asyncio.wait_for(asyncio.shield(protocol.closed), 2)
            except asyncio.TimeoutError:
                # a descendant that left the process group (setsid) still holds the pipes open
                logger.warning("sandboxed code left a process holding its output pipes; stopped reading")
        finally:  # also on cancellation: the code must not outlive the call
            if not killed:
                _kill_group(pid)
            transport.close()
        stdout, stdout_cut = out.text()
        stderr, stderr_cut = err.text()
        return SandboxResult(
            stdout=stdout, stderr=stderr, exit_code=transport.get_returncode(), timed_out=timed_out,
            stdout_cut_bytes=stdout_cut, stderr_cut_bytes=stderr_cut,
        )
