"""Workforce scheduling efficiency: makespan against the critical-path bound, CPU per call, memory.

Each DAG shape runs through ``Workforce`` with a ``ScriptedModel`` whose every call takes a fixed
simulated latency. The critical-path lower bound is (nodes on the longest chain) x latency; the
figure of merit is makespan / bound with the critic off, with the critic on (one critic call per
node, as slow as a worker call), and with the critic on but speculation off (dependents wait for
the verdict). A hand-written asyncio DAG runner over the same model ("raw asyncio") is measured
side by side, as the floor any orchestrator is compared with. Each configuration runs ``--repeats``
times and the best makespan counts (noise from other processes only ever adds time).

Framework overhead is CPU, not wall time: a zero-latency run of the 1,000-node DAG is timed with
``time.process_time``; the model's own CPU is measured by replaying the recorded requests through
a fresh ScriptedModel, and the difference is divided by the number of model calls (this includes
the Worker's tool-calling loop). A run with a model-free "null" worker isolates the workforce's
own orchestration cost per node (planning checks, scheduling, events, state). Peak memory of the
1,000-node run comes from ``tracemalloc`` in a separate run (tracing slows everything down).

    .venv/bin/python benchmarks/dag_makespan.py [--latency 0.3] [--big-latency 0.1] [--quick]

Prints a table and writes benchmarks/results/dag_makespan.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from agentflow import ScriptedModel, TaskResult, Worker  # noqa: E402
from agentflow.llm.types import CallContext, ChatRequest, Message  # noqa: E402
from agentflow.testing import by_role, reply  # noqa: E402
from agentflow.workforce import LLMCritic, Plan, PlanLimits, PlanNode, Workforce  # noqa: E402

YES = '{"verdict": "yes", "score": 0.95, "feedback": ""}'


# --- shapes ---------------------------------------------------------------------------------------


def chain(n: int) -> Plan:
    return Plan(nodes=[PlanNode(id=f"c{i}", goal=f"step {i}", inputs=[f"c{i - 1}"] if i else []) for i in range(n)])


def fan_out(width: int) -> Plan:
    nodes = [PlanNode(id=f"f{i}", goal=f"part {i}") for i in range(width)]
    nodes.append(PlanNode(id="join", goal="combine the parts", inputs=[n.id for n in nodes]))
    return Plan(nodes=nodes)


def diamond(width: int) -> Plan:
    nodes = [PlanNode(id="src", goal="start")]
    nodes += [PlanNode(id=f"m{i}", goal=f"branch {i}", inputs=["src"]) for i in range(width)]
    nodes.append(PlanNode(id="sink", goal="merge", inputs=[f"m{i}" for i in range(width)]))
    return Plan(nodes=nodes)


def layered(layers: int, width: int, seed: int, max_parents: int = 3) -> Plan:
    """Random layered DAG: every node of layer k>0 uses 1..max_parents nodes of layer k-1."""
    rng = random.Random(seed)
    nodes: list[PlanNode] = []
    prev: list[str] = []
    for k in range(layers):
        cur = []
        for i in range(width):
            nid = f"L{k}_{i}"
            parents = rng.sample(prev, rng.randint(1, min(max_parents, len(prev)))) if prev else []
            nodes.append(PlanNode(id=nid, goal=f"task {nid}", inputs=parents))
            cur.append(nid)
        prev = cur
    return Plan(nodes=nodes)


def longest_chain(plan: Plan) -> int:
    depth: dict[str, int] = {}
    for n in plan.nodes:  # nodes are listed in a topological order by construction
        depth[n.id] = 1 + max((depth[d] for d in n.inputs), default=0)
    return max(depth.values())


# --- runs -----------------------------------------------------------------------------------------


def make_model(latency: float) -> ScriptedModel:
    def worker(req: ChatRequest):
        return reply(f"result of {req.context.node_id}")

    return ScriptedModel(by_role(worker=worker, critic=lambda req: reply(YES)), latency=latency)


def make_workforce(m: ScriptedModel, *, critic: bool, speculate: bool, concurrency: int) -> Workforce:
    return Workforce(
        [Worker("w", "general worker", model=m, max_steps=1)], model=m, planner=None, answer=None,
        critic=LLMCritic(m) if critic else None, speculate=speculate, max_concurrency=concurrency,
        limits=PlanLimits(max_nodes=5000, max_depth=1000),
    )


async def run_workforce(plan: Plan, latency: float, *, critic: bool, speculate: bool = True,
                        concurrency: int = 64) -> tuple[float, ScriptedModel]:
    m = make_model(latency)
    wf = make_workforce(m, critic=critic, speculate=speculate, concurrency=concurrency)
    t0 = time.perf_counter()
    result = await wf.run("benchmark request", plan=plan)
    elapsed = time.perf_counter() - t0
    if not result.ok:
        raise RuntimeError(f"benchmark run failed: {result.error}")
    return elapsed, m


async def run_raw(plan: Plan, latency: float) -> float:
    """The floor: each node awaits its inputs' futures, then makes one model call."""
    m = make_model(latency)
    futures: dict[str, asyncio.Future[str]] = {}
    loop = asyncio.get_running_loop()
    for n in plan.nodes:
        futures[n.id] = loop.create_future()

    async def node(n: PlanNode) -> None:
        inputs = [await futures[d] for d in n.inputs]
        req = ChatRequest(messages=[Message.user(n.goal + "\n" + "\n".join(inputs))],
                          context=CallContext(node_id=n.id, role="worker"))
        resp = await m.complete(req)
        futures[n.id].set_result(resp.text)

    t0 = time.perf_counter()
    await asyncio.gather(*(node(n) for n in plan.nodes))
    return time.perf_counter() - t0


async def model_cpu(m: ScriptedModel) -> float:
    """CPU the fake model itself spends on the recorded requests (replayed through a fresh copy)."""
    fresh = make_model(0.0)
    requests = [c.request for c in m.calls]
    t0 = time.process_time()
    for req in requests:
        await fresh.complete(req)
    return time.process_time() - t0


async def overhead(plan: Plan, *, critic: bool, repeats: int) -> dict[str, float]:
    samples = []
    calls = 0
    for _ in range(repeats):
        gc.collect()
        m = make_model(0.0)
        wf = make_workforce(m, critic=critic, speculate=True, concurrency=64)
        t0 = time.process_time()
        result = await wf.run("benchmark request", plan=plan)
        total = time.process_time() - t0
        assert result.ok, result.error
        own = await model_cpu(m)
        calls = len(m.calls)
        samples.append((total - own) / calls)
    return {"us_per_call": statistics.median(samples) * 1e6, "min_us_per_call": min(samples) * 1e6,
            "model_calls": calls}


class NullWorker:
    """A worker that answers instantly without a model: isolates the orchestration's own CPU."""

    name = "w"
    description = "answers instantly"
    tools: list[Any] = []
    model = None

    async def run(self, task: str, context: str | None = None, **_: Any) -> TaskResult:
        await asyncio.sleep(0)
        return TaskResult(content="x", worker=self.name)


async def orchestration_overhead(plan: Plan, repeats: int) -> dict[str, float]:
    samples = []
    for _ in range(repeats):
        gc.collect()
        wf = Workforce([NullWorker()], planner=None, critic=None, answer=None, max_concurrency=64,
                       limits=PlanLimits(max_nodes=5000, max_depth=1000))
        t0 = time.process_time()
        result = await wf.run("benchmark request", plan=plan)
        samples.append((time.process_time() - t0) / len(plan.nodes))
        assert result.ok, result.error
    return {"us_per_node": statistics.median(samples) * 1e6, "min_us_per_node": min(samples) * 1e6}


async def peak_memory(plan: Plan) -> float:
    gc.collect()
    tracemalloc.start()
    m = make_model(0.0)
    wf = make_workforce(m, critic=False, speculate=True, concurrency=64)
    result = await wf.run("benchmark request", plan=plan)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.ok
    return peak / 2**20


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latency", type=float, default=0.3, help="seconds per simulated model call")
    ap.add_argument("--big-latency", type=float, default=0.1, help="seconds per call in the 1,000-node DAG")
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration; the best makespan counts")
    ap.add_argument("--quick", action="store_true", help="latency 0.05 s, one run per configuration")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "dag_makespan.json")
    args = ap.parse_args()
    latency = 0.05 if args.quick else args.latency
    repeats = 2 if args.quick else 5
    if args.quick:
        args.repeats = 1

    big = layered(20, 50, seed=7)
    shapes: list[tuple[str, Plan, float, int]] = [
        ("chain 8", chain(8), latency, 64),
        ("fan-out 16 + join", fan_out(16), latency, 64),
        ("diamond 1-8-1", diamond(8), latency, 64),
        ("random layered 5x6", layered(5, 6, seed=1), latency, 64),
        ("layered 20x50", big, args.big_latency, 64),
    ]
    console = Console(width=max(Console().width, 130))
    # CPU first, while the heap is small and nothing else is alive
    cpu_off = await overhead(big, critic=False, repeats=repeats)
    cpu_on = await overhead(big, critic=True, repeats=repeats)
    fan_cpu = await overhead(fan_out(16), critic=False, repeats=repeats * 4)
    orchestration = await orchestration_overhead(big, repeats)
    memory_mib = await peak_memory(big)
    rows: list[dict[str, Any]] = []
    for name, plan, lat, conc in shapes:
        bound = longest_chain(plan) * lat
        raw = min([await run_raw(plan, lat) for _ in range(args.repeats)])
        off = min([(await run_workforce(plan, lat, critic=False, concurrency=conc))[0] for _ in range(args.repeats)])
        on_runs = [await run_workforce(plan, lat, critic=True, concurrency=conc) for _ in range(args.repeats)]
        on, m_on = min(on_runs, key=lambda r: r[0])
        calls_on = len(m_on.calls)
        del on_runs, m_on  # recorded requests would inflate later GC passes
        no_spec = min([(await run_workforce(plan, lat, critic=True, speculate=False, concurrency=conc))[0]
                       for _ in range(args.repeats)])
        rows.append({
            "shape": name, "nodes": len(plan.nodes), "latency_s": lat, "max_concurrency": conc,
            "critical_path_bound_s": bound,
            "raw_asyncio_s": raw, "critic_off_s": off, "critic_on_s": on, "critic_on_no_speculation_s": no_spec,
            "raw_ratio": raw / bound, "critic_off_ratio": off / bound, "critic_on_ratio": on / bound,
            "critic_on_no_speculation_ratio": no_spec / bound, "model_calls_critic_on": calls_on,
        })
        console.print(f"[dim]{name}: done[/]")


    table = Table(title="Workforce makespan / critical-path bound (ScriptedModel, simulated latency)")
    for col in ("shape", "nodes", "latency", "bound", "raw asyncio", "critic off", "critic on",
                "critic on, no spec."):
        table.add_column(col, justify="right" if col != "shape" else "left")
    for r in rows:
        table.add_row(r["shape"], str(r["nodes"]), f"{r['latency_s'] * 1000:.0f} ms",
                      f"{r['critical_path_bound_s']:.2f} s", f"{r['raw_ratio']:.3f}x", f"{r['critic_off_ratio']:.3f}x",
                      f"{r['critic_on_ratio']:.3f}x", f"{r['critic_on_no_speculation_ratio']:.3f}x")
    console.print(table)
    cost = Table(title="Framework CPU per model call (process CPU minus the fake model's own) and memory")
    for col in ("run", "model calls", "median µs/call", "min µs/call"):
        cost.add_column(col, justify="right" if col != "run" else "left")
    cost.add_row("1,000 nodes, critic off", str(cpu_off["model_calls"]), f"{cpu_off['us_per_call']:.0f}",
                 f"{cpu_off['min_us_per_call']:.0f}")
    cost.add_row("1,000 nodes, critic on", str(cpu_on["model_calls"]), f"{cpu_on['us_per_call']:.0f}",
                 f"{cpu_on['min_us_per_call']:.0f}")
    cost.add_row("fan-out(16)+join, critic off", str(fan_cpu["model_calls"]), f"{fan_cpu['us_per_call']:.0f}",
                 f"{fan_cpu['min_us_per_call']:.0f}")
    cost.add_row("1,000 nodes, null worker (orchestration only, per node)", "0",
                 f"{orchestration['us_per_node']:.0f}", f"{orchestration['min_us_per_node']:.0f}")
    console.print(cost)
    console.print(f"peak traced memory, 1,000-node run (critic off): [bold]{memory_mib:.1f} MiB[/]")

    out = {
        "benchmark": "dag_makespan",
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "args": {"latency": latency, "big_latency": args.big_latency, "makespan_repeats": args.repeats,
                 "overhead_repeats": repeats},
        "makespan": rows,
        "cpu_overhead": {"big_critic_off": cpu_off, "big_critic_on": cpu_on, "fan_out_critic_off": fan_cpu,
                         "big_orchestration_only": orchestration},
        "peak_memory_mib_big": memory_mib,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    console.print(f"[dim]wrote {args.json}[/]")


if __name__ == "__main__":
    asyncio.run(main())
