"""Throughput that agentflow reaches on a vLLM server, against a raw openai-client load.

A batch of independent tasks (one model call each) runs through several paths against the
*same* server in the *same* run:

* ``raw``        — ``AsyncOpenAI`` with an ``asyncio.Semaphore``: the ceiling a hand-written
                   client reaches;
* ``workers``    — ``Worker.run`` per task over ``OpenAICompatModel`` (its ``max_concurrency``
                   limit), gathered;
* ``workforce``  — a ``Workforce`` running a plan of independent nodes (scheduler, coordinator,
                   events; critic off), when the workforce package is importable;
* ``aimd``       — ``workers`` again, but admitted by ``MetricsAwareModel`` (the AIMD limit fed by
                   ``/metrics``) instead of a fixed limit.

Each path gets its own task texts (a phase tag in the user message) behind the same system
prompt, so the prefix cache shares what a real batch of sibling nodes shares — the stable system
text — and no path is served another path's full prompts from cache. Requests/s, generated tokens/s
and the prefix-cache hit rate (``/metrics`` deltas, and per-request ``cached_tokens``) are
reported, with each path's ratio to ``raw``.

    python benchmarks/vllm_throughput.py                 # starts the tiny CPU server itself
    python benchmarks/vllm_throughput.py --base-url http://127.0.0.1:8000/v1 --model NAME

Prints a table and writes ``benchmarks/results/vllm_throughput.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agentflow.agent import Worker  # noqa: E402
from agentflow.llm.metrics import (  # noqa: E402
    AimdLimiter,
    MetricsAwareModel,
    PrefixCacheProbe,
)
from agentflow.llm.openai_compat import OpenAICompatModel  # noqa: E402
from agentflow.llm.types import Usage  # noqa: E402
from agentflow.llm.usage import UsageLedger  # noqa: E402
from agentflow.llm.vllm_server import VllmServer, provision_tiny, tiny_cpu_config  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "vllm_throughput.json"
INSTRUCTIONS = (
    "You are one of several analysts working on a market study in parallel. Each of you gets one "
    "independent question about a product category. Answer in two or three sentences, state your "
    "assumptions, and do not refer to the other analysts. Keep numbers rounded and give a range when "
    "unsure. Write plain text without lists or headings."
)
CATEGORIES = ["bicycles", "coffee machines", "garden tools", "laptops", "running shoes", "tea", "tents",
              "headphones", "desk lamps", "kayaks", "board games", "e-readers", "backpacks", "cameras",
              "blenders", "umbrellas"]


def tasks_for(phase: str, count: int) -> list[str]:
    """Volatile content last: the phase tag and the question sit after the shared system prompt."""
    return [f"[{phase} task {i}] Estimate next year's demand growth for {CATEGORIES[i % len(CATEGORIES)]} "
            f"in region {i // len(CATEGORIES) + 1}." for i in range(count)]


def make_worker(model: Any, max_tokens: int) -> Worker:
    return Worker("analyst", "estimates market figures", model=model, instructions=INSTRUCTIONS,
                  max_steps=1, max_tokens=max_tokens, temperature=1.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_raw(base_url: str, model: str, tasks: list[str], concurrency: int, max_tokens: int) -> dict:
    """Exactly the messages a Worker sends, through the bare openai client."""
    worker = make_worker(None, max_tokens)
    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=300)
    sem = asyncio.Semaphore(concurrency)
    usage = Usage()

    async def one(task: str) -> None:
        nonlocal usage
        msgs = [m.to_openai() for m in worker.build_messages(task)]
        async with sem:
            r = await client.chat.completions.create(model=model, messages=msgs, max_tokens=max_tokens,
                                                     temperature=1.0)
        details = getattr(r.usage, "prompt_tokens_details", None)
        usage = usage + Usage(prompt_tokens=r.usage.prompt_tokens, completion_tokens=r.usage.completion_tokens,
                              cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0)

    t0 = time.perf_counter()
    await asyncio.gather(*[one(t) for t in tasks])
    wall = time.perf_counter() - t0
    await client.close()
    return {"wall_s": wall, "requests": len(tasks), "usage": usage, "failed": 0}


async def run_workers(base_url: str, model: str, tasks: list[str], concurrency: int, max_tokens: int,
                      *, aimd: bool = False) -> dict:
    ledger = UsageLedger()
    extra: dict[str, Any] = {}
    async with OpenAICompatModel(base_url, model, timeout=300, ledger=ledger,
                                 max_concurrency=concurrency if not aimd else 1024) as base:
        chat_model: Any = base
        limiter = None
        if aimd:
            # starts at the fixed path's limit and adapts from there
            limiter = AimdLimiter(initial=concurrency, max_limit=concurrency * 4)
            chat_model = MetricsAwareModel(base, base_url, limiter=limiter, poll_interval_s=0.25)
            await chat_model.start()
        worker = make_worker(chat_model, max_tokens)
        t0 = time.perf_counter()
        results = await asyncio.gather(*[worker.run(t) for t in tasks])
        wall = time.perf_counter() - t0
        if aimd:
            await chat_model.stop()
            extra = {"aimd_final_limit": round(limiter.limit, 1), "aimd_peak_in_flight": limiter.peak_in_flight,
                     "aimd_decreases": sum(s.action == "decrease" for s in limiter.history)}
    return {"wall_s": wall, "requests": ledger.calls(), "usage": ledger.total(),
            "failed": sum(r.failed for r in results), **extra}


async def run_workforce(base_url: str, model: str, tasks: list[str], concurrency: int, max_tokens: int) -> dict:
    from agentflow.workforce import Workforce
    from agentflow.workforce.plan import Plan, PlanNode
    from agentflow.workforce.validation import PlanLimits

    ledger = UsageLedger()
    async with OpenAICompatModel(base_url, model, timeout=300, ledger=ledger, max_concurrency=concurrency) as base:
        worker = make_worker(base, max_tokens)
        wf = Workforce([worker], model=base, planner=None, critic=None, answer=None, max_concurrency=concurrency,
                       limits=PlanLimits(max_nodes=len(tasks)))
        plan = Plan(nodes=[PlanNode(id=f"n{i}", goal=t, worker="analyst", check=False) for i, t in enumerate(tasks)])
        t0 = time.perf_counter()
        result = await wf.run("Market study: answer every question independently.", plan=plan)
        wall = time.perf_counter() - t0
    if str(result.status) != "succeeded":
        raise RuntimeError(f"the workforce run did not succeed ({result.status}): {result.error}")
    return {"wall_s": wall, "requests": ledger.calls(), "usage": ledger.total(), "failed": 0,
            "status": str(result.status)}


async def measure(name: str, base_url: str, coro) -> dict:
    async with PrefixCacheProbe(base_url) as probe:
        out = await coro
    usage: Usage = out.pop("usage")
    wall = out["wall_s"]
    return {
        "path": name, **out,
        "req_per_s": out["requests"] / wall,
        "gen_tok_per_s": usage.completion_tokens / wall,
        "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "hit_rate_usage": usage.cache_hit_rate,
        "hit_rate_metrics": probe.delta.prefix_cache_hit_rate,
        "server_prompt_tokens": probe.delta.prompt_tokens,
        "server_generation_tokens": probe.delta.generation_tokens,
    }


async def bench(base_url: str, model: str, n: int, concurrency: int, max_tokens: int, rounds: int) -> list[dict]:
    try:
        import agentflow.workforce  # noqa: F401
        have_workforce = True
    except Exception:  # the workforce package is optional for this benchmark
        have_workforce = False
    # warm-up: first requests compile grammars, fill caches, open connections
    await run_raw(base_url, model, tasks_for("warmup", 8), concurrency, max_tokens)
    rows: list[dict] = []
    for r in range(rounds):  # alternate paths so drift (thermal, other load) hits all alike
        start = len(rows)
        rows.append(await measure("raw", base_url, run_raw(base_url, model, tasks_for(f"raw{r}", n), concurrency,
                                                             max_tokens)))
        rows.append(await measure("workers", base_url, run_workers(base_url, model, tasks_for(f"w{r}", n),
                                                                     concurrency, max_tokens)))
        if have_workforce:
            rows.append(await measure("workforce", base_url, run_workforce(base_url, model, tasks_for(f"wf{r}", n),
                                                                             concurrency, max_tokens)))
        rows.append(await measure("aimd", base_url, run_workers(base_url, model, tasks_for(f"a{r}", n),
                                                                  concurrency, max_tokens, aimd=True)))
        for row in rows[start:]:  # ratio to the raw run of the same round: robust to drift
            row["round"] = r
            row["req_ratio_same_round"] = row["req_per_s"] / rows[start]["req_per_s"]
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    paths = list(dict.fromkeys(r["path"] for r in rows))
    out = []
    for p in paths:
        sel = [r for r in rows if r["path"] == p]
        wall = sum(r["wall_s"] for r in sel)
        out.append({
            "path": p, "runs": len(sel), "requests": sum(r["requests"] for r in sel),
            "failed": sum(r["failed"] for r in sel), "wall_s": wall,
            "req_per_s": sum(r["requests"] for r in sel) / wall,
            "gen_tok_per_s": sum(r["completion_tokens"] for r in sel) / wall,
            "hit_rate_metrics": _mean([r["hit_rate_metrics"] for r in sel]),
            "hit_rate_usage": _mean([r["hit_rate_usage"] for r in sel]),
            **{k: sel[-1][k] for k in ("aimd_final_limit", "aimd_peak_in_flight", "aimd_decreases") if k in sel[-1]},
        })
    raw = next(s for s in out if s["path"] == "raw")
    for s in out:
        s["req_ratio_vs_raw"] = s["req_per_s"] / raw["req_per_s"]
        s["tok_ratio_vs_raw"] = s["gen_tok_per_s"] / raw["gen_tok_per_s"]
        per_round = sorted(r["req_ratio_same_round"] for r in rows if r["path"] == s["path"])
        s["req_ratio_median_of_rounds"] = per_round[len(per_round) // 2]
        s["req_ratio_range"] = [per_round[0], per_round[-1]]
    return out


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", help="use a running server instead of starting the tiny CPU one")
    ap.add_argument("--model", default="agentflow-tiny")
    ap.add_argument("--requests", type=int, default=64, help="tasks per path and round")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--python", help="python of the vLLM venv (default: tools/vllm_env.py installs one)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    console = Console(width=160)

    server = None
    base_url = args.base_url
    if base_url is None:
        with console.status("provisioning vLLM and the tiny model ..."):
            python, model_dir = provision_tiny(args.python)
        server = VllmServer(tiny_cpu_config(model_dir, python=python, port=_free_port()))
        server.start()
        with console.status("starting vLLM ..."):
            asyncio.run(server.wait_healthy(900))
        base_url = server.base_url
    try:
        rows = asyncio.run(bench(base_url, args.model, args.requests, args.concurrency, args.max_tokens,
                                 args.rounds))
    finally:
        if server is not None:
            server.stop()
    summary = summarize(rows)

    table = Table(title=f"agentflow vs raw client on vLLM ({args.requests} tasks x {args.rounds} rounds, "
                        f"concurrency {args.concurrency}, max_tokens {args.max_tokens})")
    for col in ("path", "req/s", "gen tok/s", "req ratio", "tok ratio", "ratio per round (median, range)",
                "prefix hit (metrics)", "prefix hit (usage)", "failed"):
        table.add_column(col, justify="right" if col != "path" else "left")
    for s in summary:
        table.add_row(s["path"], f"{s['req_per_s']:.1f}", f"{s['gen_tok_per_s']:.0f}", f"{s['req_ratio_vs_raw']:.3f}",
                      f"{s['tok_ratio_vs_raw']:.3f}",
                      f"{s['req_ratio_median_of_rounds']:.3f} ({s['req_ratio_range'][0]:.2f}-{s['req_ratio_range'][1]:.2f})",
                      f"{s['hit_rate_metrics']:.1%}" if s["hit_rate_metrics"] is not None else "-",
                      f"{s['hit_rate_usage']:.1%}" if s["hit_rate_usage"] is not None else "-", str(s["failed"]))
    console.print(table)
    aimd = next((s for s in summary if s["path"] == "aimd"), None)
    if aimd:
        console.print(f"AIMD: final limit {aimd.get('aimd_final_limit')}, peak in flight "
                      f"{aimd.get('aimd_peak_in_flight')}, decreases {aimd.get('aimd_decreases')}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "vllm_throughput", "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "server": base_url if args.base_url else "tiny CPU model (agentflow serve --tiny settings)",
        "settings": {k: getattr(args, k) for k in ("requests", "concurrency", "max_tokens", "rounds", "model")},
        "summary": summary, "runs": rows,
    }, indent=2, default=str))
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
