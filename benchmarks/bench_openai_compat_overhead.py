"""Client-side cost of ``OpenAICompatModel`` on top of the raw ``openai.AsyncOpenAI`` client.

Both clients call the same zero-latency local OpenAI-compatible server (tests/fake_openai_server.py,
run in a separate process so its CPU is not billed to the client) with the same requests: a
plain chat turn, and a tool-calling turn (a worker's typical call). The figure of merit is client
CPU time per call (``time.process_time`` of this process), which is what limits a 2-core machine
running many agents; wall time is shown too. Runs alternate between the two clients in blocks so
machine noise hits both alike.

    .venv/bin/python benchmarks/bench_openai_compat_overhead.py [--calls 400] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from agentflow.llm.openai_compat import OpenAICompatModel  # noqa: E402
from agentflow.llm.transport import RetryPolicy  # noqa: E402
from agentflow.llm.types import ChatRequest, Message, ToolSpec  # noqa: E402
from benchmarks._fake_server_process import start_server  # noqa: E402

# the fake server's reply to every chat request (served from a separate process)
ANSWER = """
def answer(body):
    if body.get("tools"):
        return tool_call("add", {"a": 1, "b": 2})
    return text("The answer is 3.")
"""

ADD = ToolSpec(name="add", description="Add two integers.", parameters={
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})
MESSAGES = [Message.system("You are a careful assistant. Use tools when they help."),
            Message.user("What is 1 + 2? Think briefly, then answer.")]


async def raw_calls(client: openai.AsyncOpenAI, model: str, n: int, tools: bool) -> None:
    messages = [m.to_openai() for m in MESSAGES]
    kwargs: dict[str, Any] = {"tools": [ADD.to_openai()], "tool_choice": "auto"} if tools else {}
    for _ in range(n):
        completion = await client.chat.completions.create(model=model, messages=messages, max_tokens=64, **kwargs)
        msg = completion.choices[0].message
        if tools:
            json.loads(msg.tool_calls[0].function.arguments)


async def agentflow_calls(model: OpenAICompatModel, n: int, tools: bool) -> None:
    request = ChatRequest(messages=MESSAGES, max_tokens=64, tools=[ADD] if tools else [],
                          tool_choice="auto" if tools else None)
    for _ in range(n):
        response = await model.complete(request)
        if tools:
            assert response.tool_calls[0].arguments == {"a": 1, "b": 2}


async def measure(fn: Any, *args: Any) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    await fn(*args)
    return time.process_time() - cpu, time.perf_counter() - wall


async def main(calls: int, blocks: int) -> dict[str, Any]:
    proc, base_url = start_server(ANSWER)
    try:
        raw = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
        ours = OpenAICompatModel(base_url, timeout=30, retry_policy=RetryPolicy(max_retries=0))
        await ours.complete(ChatRequest(messages=MESSAGES))  # discovery and warm-up
        await raw.chat.completions.create(model=ours.name, messages=[{"role": "user", "content": "hi"}])
        results: dict[str, Any] = {}
        per_block = max(1, calls // blocks)
        for label, tools in (("chat turn", False), ("tool-call turn", True)):
            samples: dict[str, list[tuple[float, float]]] = {"raw openai client": [], "OpenAICompatModel": []}
            for _ in range(blocks):
                samples["raw openai client"].append(await measure(raw_calls, raw, ours.name, per_block, tools))
                samples["OpenAICompatModel"].append(await measure(agentflow_calls, ours, per_block, tools))
            results[label] = {
                name: {
                    "cpu_ms_per_call": 1000 * statistics.median(c for c, _ in s) / per_block,
                    "wall_ms_per_call": 1000 * statistics.median(w for _, w in s) / per_block,
                }
                for name, s in samples.items()
            }
            r = results[label]
            r["overhead_cpu_ms_per_call"] = (r["OpenAICompatModel"]["cpu_ms_per_call"]
                                             - r["raw openai client"]["cpu_ms_per_call"])
        await raw.close()
        await ours.aclose()
        return {"calls_per_block": per_block, "blocks": blocks, "results": results}
    finally:
        proc.kill()
        proc.wait()


def print_table(report: dict[str, Any]) -> None:
    print(f"{'turn':<16} {'client':<20} {'CPU ms/call':>12} {'wall ms/call':>13}")
    for label, r in report["results"].items():
        for name in ("raw openai client", "OpenAICompatModel"):
            print(f"{label:<16} {name:<20} {r[name]['cpu_ms_per_call']:>12.3f} {r[name]['wall_ms_per_call']:>13.3f}")
        print(f"{label:<16} {'overhead':<20} {r['overhead_cpu_ms_per_call']:>12.3f}")
    print(f"(median of {report['blocks']} blocks of {report['calls_per_block']} sequential calls)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per client and turn kind")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "openai_compat_overhead.json")
    args = parser.parse_args()
    report = asyncio.run(main(args.calls, args.blocks))
    print_table(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
