"""Client CPU per model call of ``agentflow.Worker`` against a hand-written ``openai`` tool loop.

DESIGN.md's target: at most 1.3 ms of client CPU per model call on top of the raw
``openai.AsyncOpenAI`` client *in a tool-calling worker loop*. This script measures exactly that.

Method
------
Both sides solve the same tasks against the same zero-latency OpenAI-compatible server
(tests/fake_openai_server.py). The server runs in a separate process (see
``_fake_server_process``), so its request parsing and JSON encoding are not billed to the client.
It is stateless: a request whose transcript holds fewer than ``--steps`` tool results gets a call
of the ``add`` tool, any other request the final answer. Every task therefore costs exactly
``steps`` tool turns plus one final turn, i.e. ``steps + 1`` model calls, on both sides.

* **raw**: the loop a user writes with the SDK: ``chat.completions.create`` with the tools,
  read ``message.tool_calls``, ``json.loads`` the arguments, call the Python function, append
  the assistant message and one tool message per call (plain dicts), call again, until a reply
  has no tool calls.
* **agentflow**: ``Worker`` with the same function as an ``@tool`` and ``OpenAICompatModel``,
  no event sink. Everything the worker does per turn is included: request building, tool
  argument validation, running the sync tool in a worker thread under its time limit, step
  records and (discarded) events.
* **model layer** (a decomposition, not part of the target): the raw loop written against
  ``OpenAICompatModel.complete`` with agentflow's ``ChatRequest``/``Message`` types and a direct
  function call. ``agentflow - model layer`` is what the ``Worker`` itself costs per call;
  ``model layer - raw`` is what the model backend costs (or saves) against the SDK.

Both send the same system prompt, task, tool schema (the raw side sends the ``@tool``'s own
spec) and ``max_tokens``, so their request bodies are the same JSON on every turn (checked when
this script was written); transport retries are off on both. Note that the SDK's cost grows with
the transcript (``chat.completions.create`` runs its typed-parameter transform over every message
on every call), so a loop costs it more per call than a single turn does. The figure of merit is client CPU
(``time.process_time`` of this process, all threads) divided by the number of model calls; wall
time is reported too. A run is ``--blocks`` blocks; each block runs ``--tasks`` tasks one after
another on each side, the order of the sides rotating from block to block so that machine noise
and warm-up hit all alike, with a ``gc.collect()`` before each side. Reported: the median over
blocks with min-max, and the per-block paired difference (agentflow - raw) and ratio.

    .venv/bin/python benchmarks/worker_loop_overhead.py [--tasks 25] [--steps 3] [--blocks 18]
        [--json benchmarks/results/worker_loop_overhead.json] [--profile]

``--profile`` additionally runs one block of the agentflow side under cProfile after the
measurement and prints the functions with the most own and cumulative time (the profiler's own
cost inflates absolute figures; use it to rank hot spots, not to measure).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import agentflow  # noqa: E402
from agentflow import Worker, tool  # noqa: E402
from agentflow.llm.openai_compat import OpenAICompatModel  # noqa: E402
from agentflow.llm.transport import RetryPolicy  # noqa: E402
from agentflow.llm.types import ChatRequest, Message  # noqa: E402
from benchmarks._fake_server_process import fake_server  # noqa: E402

TARGET_MS = 1.3
MAX_TOKENS = 256
SYSTEM = "You are a careful assistant. Use the tools when they help; reply with the final answer only."

#: the server's reply: ``add`` while fewer than STEPS tool results are in the transcript, then the answer
ANSWER = """
STEPS = {steps}

def answer(body):
    done = sum(1 for m in body.get("messages") or [] if m.get("role") == "tool")
    if body.get("tools") and done < STEPS:
        return tool_call("add", {{"a": done, "b": 1}})
    return text(f"The answer is {{done}}.")
"""


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


FUNCTIONS: dict[str, Callable[..., Any]] = {"add": add.fn}
TOOLS = [add.spec().to_openai()]


def task_text(i: int) -> str:
    return f"Task {i}: starting from 0, add 1 repeatedly with the add tool, then report the total."


# --- the two sides ---------------------------------------------------------------------------------


async def raw_task(client: openai.AsyncOpenAI, model: str, task: str) -> tuple[str, int]:
    """The minimal SDK tool loop; returns the final text and the number of model calls."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}]
    calls = 0
    while True:
        completion = await client.chat.completions.create(
            model=model, messages=messages, tools=TOOLS, tool_choice="auto", max_tokens=MAX_TOKENS)
        calls += 1
        message = completion.choices[0].message
        if not message.tool_calls:
            return message.content or "", calls
        messages.append({
            "role": "assistant", "content": message.content,
            "tool_calls": [{"id": c.id, "type": "function",
                            "function": {"name": c.function.name, "arguments": c.function.arguments}}
                           for c in message.tool_calls],
        })
        for call in message.tool_calls:
            result = FUNCTIONS[call.function.name](**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})


async def raw_side(client: openai.AsyncOpenAI, model: str, tasks: int, steps: int) -> int:
    calls = 0
    for i in range(tasks):
        text, n = await raw_task(client, model, task_text(i))
        _check(text, n, steps, "raw")
        calls += n
    return calls


async def model_layer_task(model: OpenAICompatModel, task: str) -> tuple[str, int]:
    """The same minimal loop over agentflow's model layer, without the Worker."""
    messages = [Message.system(SYSTEM), Message.user(task)]
    specs = [add.spec()]
    calls = 0
    while True:
        response = await model.complete(ChatRequest(messages=messages, tools=specs, tool_choice="auto",
                                                    max_tokens=MAX_TOKENS))
        calls += 1
        choice = response.first
        if not choice.tool_calls:
            return choice.text or "", calls
        messages.append(Message.assistant(choice.text, choice.tool_calls))
        for call in choice.tool_calls:
            result = FUNCTIONS[call.name](**(call.arguments or {}))
            messages.append(Message.tool(call.id, json.dumps(result), name=call.name))


async def model_layer_side(model: OpenAICompatModel, tasks: int, steps: int) -> int:
    calls = 0
    for i in range(tasks):
        text, n = await model_layer_task(model, task_text(i))
        _check(text, n, steps, "model layer")
        calls += n
    return calls


async def agentflow_side(worker: Worker, tasks: int, steps: int) -> int:
    calls = 0
    for i in range(tasks):
        result = await worker.run(task_text(i))
        if result.failed:
            raise RuntimeError(f"agentflow worker failed: {result.reason}")
        _check(result.content, result.model_calls, steps, "agentflow")
        calls += result.model_calls
    return calls


def _check(text: str, calls: int, steps: int, side: str) -> None:
    # guards the comparison: both sides must do the same work
    if calls != steps + 1 or text != f"The answer is {steps}.":
        raise RuntimeError(f"{side}: expected {steps + 1} calls ending in 'The answer is {steps}.', "
                           f"got {calls} calls ending in {text!r}")


async def measure(fn: Callable[[], Awaitable[int]]) -> dict[str, float]:
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    calls = await fn()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms": 1000 * cpu / calls, "wall_ms": 1000 * wall / calls, "calls": calls}


# --- the run -----------------------------------------------------------------------------------------


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def run(tasks: int, steps: int, blocks: int, profile: bool) -> dict[str, Any]:
    with fake_server(ANSWER.format(steps=steps)) as base_url:
        raw_client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
        model = OpenAICompatModel(base_url, timeout=30, retry_policy=RetryPolicy(max_retries=0))
        worker = Worker("bench", model=model, tools=[add], instructions=SYSTEM, max_steps=steps + 2,
                        max_tokens=MAX_TOKENS)
        try:
            # warm-up: endpoint discovery, connection pools, lazy imports, the tool thread pool
            await agentflow_side(worker, 3, steps)
            await raw_side(raw_client, model.name, 3, steps)
            await model_layer_side(model, 3, steps)

            sides: dict[str, Callable[[], Awaitable[int]]] = {
                "raw": lambda: raw_side(raw_client, model.name, tasks, steps),
                "model_layer": lambda: model_layer_side(model, tasks, steps),
                "agentflow": lambda: agentflow_side(worker, tasks, steps),
            }
            names = list(sides)
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            for block in range(blocks):
                # rotate, and reverse every other block: each side runs first, middle and last alike
                order = names[block % len(names):] + names[:block % len(names)]
                for side in order if (block // len(names)) % 2 == 0 else reversed(order):
                    samples[side].append(await measure(sides[side]))

            hot_spots = await profile_agentflow(worker, tasks, steps) if profile else None
        finally:
            await raw_client.close()
            await model.aclose()

    report: dict[str, Any] = {
        "params": {"tasks": tasks, "steps": steps, "blocks": blocks, "calls_per_task": steps + 1,
                   "calls_per_block_and_side": tasks * (steps + 1), "max_tokens": MAX_TOKENS},
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": _cpu_count(), "openai": openai.__version__, "agentflow": agentflow.__version__},
        "target_overhead_cpu_ms_per_call": TARGET_MS,
    }
    for side, blocks_ in samples.items():
        report[side] = {"cpu_ms_per_call": _summary([b["cpu_ms"] for b in blocks_]),
                        "wall_ms_per_call": _summary([b["wall_ms"] for b in blocks_])}
    pairs = list(zip(samples["raw"], samples["agentflow"], strict=True))
    report["overhead_cpu_ms_per_call"] = _summary([a["cpu_ms"] - r["cpu_ms"] for r, a in pairs])
    report["overhead_wall_ms_per_call"] = _summary([a["wall_ms"] - r["wall_ms"] for r, a in pairs])
    report["ratio_cpu"] = _summary([a["cpu_ms"] / r["cpu_ms"] for r, a in pairs])
    report["ratio_wall"] = _summary([a["wall_ms"] / r["wall_ms"] for r, a in pairs])
    # decomposition: the Worker on top of the model layer, the model layer on top of the SDK
    worker_pairs = list(zip(samples["model_layer"], samples["agentflow"], strict=True))
    layer_pairs = list(zip(samples["raw"], samples["model_layer"], strict=True))
    report["worker_cost_cpu_ms_per_call"] = _summary([a["cpu_ms"] - m["cpu_ms"] for m, a in worker_pairs])
    report["model_layer_overhead_cpu_ms_per_call"] = _summary([m["cpu_ms"] - r["cpu_ms"] for r, m in layer_pairs])
    report["meets_target"] = report["overhead_cpu_ms_per_call"]["median"] <= TARGET_MS
    report["per_block"] = samples
    if hot_spots is not None:
        report["profile"] = hot_spots
    return report


async def profile_agentflow(worker: Worker, tasks: int, steps: int, top: int = 20) -> dict[str, Any]:
    """cProfile over one block of the agentflow side: hot spots overall and inside agentflow.

    Only the event-loop thread is profiled (the sync tool runs in a worker thread, which cProfile
    does not see; its hand-off shows up as ``to_thread`` and loop wake-ups). Times are per model
    call, in microseconds, and inflated by the profiler: compare them with each other only. For
    coroutines cProfile counts every resumption as a call, so their call counts exceed the awaits.
    """
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    calls = await agentflow_side(worker, tasks, steps)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": func, "where": f"{_short(filename)}:{line}", "ncalls_per_model_call": ncalls / calls,
                     "own_us_per_model_call": 1e6 * tottime / calls, "cum_us_per_model_call": 1e6 * cumtime / calls})
    ours = [r for r in rows if r["where"].startswith("agentflow/")]
    return {
        "top_own_time": sorted(rows, key=lambda r: r["own_us_per_model_call"], reverse=True)[:top],
        "agentflow_own_time": sorted(ours, key=lambda r: r["own_us_per_model_call"], reverse=True)[:top],
        "agentflow_cumulative_time": sorted(ours, key=lambda r: r["cum_us_per_model_call"], reverse=True)[:top],
    }


def _short(filename: str) -> str:
    for marker in ("/site-packages/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _cpu_count() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# --- output ------------------------------------------------------------------------------------------


def _fmt(s: dict[str, float], digits: int = 3) -> str:
    return f"{s['median']:.{digits}f}  ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def print_report(report: dict[str, Any], console: Console) -> None:
    p = report["params"]
    table = Table(title=f"Tool-calling worker loop: client cost per model call "
                        f"({p['tasks']} tasks × {p['calls_per_task']} calls per block, {p['blocks']} blocks)")
    table.add_column("")
    table.add_column("CPU ms/call  median (min–max)", justify="right")
    table.add_column("wall ms/call  median (min–max)", justify="right")
    table.add_row("raw AsyncOpenAI loop", _fmt(report["raw"]["cpu_ms_per_call"]),
                  _fmt(report["raw"]["wall_ms_per_call"]))
    table.add_row("same loop, OpenAICompatModel", _fmt(report["model_layer"]["cpu_ms_per_call"]),
                  _fmt(report["model_layer"]["wall_ms_per_call"]), style="dim")
    table.add_row("agentflow Worker", _fmt(report["agentflow"]["cpu_ms_per_call"]),
                  _fmt(report["agentflow"]["wall_ms_per_call"]))
    table.add_row("agentflow − raw (paired)", _fmt(report["overhead_cpu_ms_per_call"]),
                  _fmt(report["overhead_wall_ms_per_call"]), style="bold")
    table.add_row("agentflow / raw (paired)", _fmt(report["ratio_cpu"]), _fmt(report["ratio_wall"]))
    console.print(table)
    console.print(f"decomposition (paired, CPU ms/call): Worker on top of OpenAICompatModel "
                  f"{_fmt(report['worker_cost_cpu_ms_per_call'])}; OpenAICompatModel on top of the raw client "
                  f"{_fmt(report['model_layer_overhead_cpu_ms_per_call'])}")
    verdict = "[green]meets[/green]" if report["meets_target"] else "[red]misses[/red]"
    console.print(f"CPU overhead {report['overhead_cpu_ms_per_call']['median']:.3f} ms/call {verdict} the target "
                  f"of ≤ {report['target_overhead_cpu_ms_per_call']} ms/call (DESIGN.md).")
    if "profile" in report:
        titles = {"top_own_time": "most own time, all code",
                  "agentflow_own_time": "most own time inside agentflow",
                  "agentflow_cumulative_time": "most cumulative time inside agentflow"}
        console.print("\nagentflow side under cProfile, µs per model call (inflated by the profiler; for ranking)")
        for key, title in titles.items():
            console.print(f"\n{title}\n{'own':>7} {'cum':>7} {'calls':>6}  where", markup=False, highlight=False)
            for row in report["profile"][key]:
                console.print(f"{row['own_us_per_model_call']:7.0f} {row['cum_us_per_model_call']:7.0f} "
                              f"{row['ncalls_per_model_call']:6.1f}  {row['where']} {row['function']}",
                              markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=25, help="tasks per block and side (run one after another)")
    parser.add_argument("--steps", type=int, default=3, help="tool turns per task (each task makes steps + 1 calls)")
    parser.add_argument("--blocks", type=int, default=18, help="alternating measurement blocks")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "worker_loop_overhead.json")
    parser.add_argument("--profile", action="store_true", help="also rank the agentflow side's hot spots (cProfile)")
    args = parser.parse_args()
    if args.tasks < 1 or args.steps < 0 or args.blocks < 1:
        parser.error("--tasks and --blocks must be at least 1, --steps at least 0")
    report = asyncio.run(run(args.tasks, args.steps, args.blocks, args.profile))
    console = Console()
    print_report(report, console)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
