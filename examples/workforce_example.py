"""A workforce run: plan a task DAG, run it in parallel, check every result, answer.

The request needs a list (symbolic function), one lookup per element run concurrently (a ``map``
node whose children call a tool), and a symbolic reduction; the live table shows the DAG as it
runs, the critic's verdicts, and the final answer.

Runs offline by default: a ScriptedModel plays planner, workers, critic and answer stage (with
simulated latency, so the parallelism is visible). Point it at any OpenAI-compatible server
(vLLM, llama.cpp, OpenAI) to let a real model plan and work:

    python examples/workforce_example.py
    python examples/workforce_example.py --base-url http://127.0.0.1:8000/v1 [--model NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import re

from rich.console import Console
from rich.live import Live

from agentflow import Worker, tool
from agentflow.llm.types import ChatRequest
from agentflow.testing import ScriptedModel, by_role, call, reply
from agentflow.workforce import Workforce, render_plan, render_run, symbolic

POPULATION = {"Oslo": 709_000, "Lima": 10_092_000, "Pune": 7_166_000, "Quito": 2_011_000}
QUESTION = "Which of Oslo, Lima, Pune and Quito has the most inhabitants, and how many?"


@tool
def population(city: str) -> int:
    """Look up the number of inhabitants of a city.

    Args:
        city: the city name, e.g. Oslo
    """
    if city not in POPULATION:
        raise KeyError(f"unknown city {city!r}; known: {', '.join(POPULATION)}")
    return POPULATION[city]


@symbolic()
def city_list() -> list[str]:
    """The cities the question is about."""
    return list(POPULATION)


@symbolic()
def largest(cities: list[str], counts: list[str]) -> str:
    """Pick the city with the largest count (cities and counts in the same order)."""
    numbers = [int(re.sub(r"[^0-9]", "", c) or 0) for c in counts]
    best = max(range(len(cities)), key=numbers.__getitem__)
    return f"{cities[best]}: {numbers[best]}"


PLAN = {
    "nodes": [
        {"id": "cities", "goal": "List the cities in question", "handler": "function", "function": "city_list"},
        {"id": "counts", "goal": "Find the number of inhabitants of {item} with the population tool",
         "map_over": "cities", "expected_output": "a whole number", "worker": "researcher"},
        {"id": "top", "goal": "Pick the city with the most inhabitants", "handler": "function",
         "function": "largest", "inputs": ["cities", "counts"]},
    ],
    "outputs": ["top"],
}


def offline_model() -> ScriptedModel:
    """What a capable model would do in each role."""

    def worker(req: ChatRequest):
        last = req.messages[-1]
        if last.role == "tool":  # the tool answered: report the number
            return reply(last.content or "")
        city = re.search(r"inhabitants of (\w+)", req.messages[-1].content or "")
        return call("population", city=city.group(1) if city else "Oslo")

    return ScriptedModel(by_role(
        planner=[reply(PLAN)],
        worker=worker,
        critic=lambda req: reply({"verdict": "yes", "score": 0.93, "feedback": ""}),
        answer=lambda req: reply("Lima, with 10092000 inhabitants."),
    ), latency=0.25)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", help="OpenAI-compatible endpoint; offline ScriptedModel when omitted")
    ap.add_argument("--model", help="model name (default: the server's first)")
    ap.add_argument("--api-key", default=None)
    args = ap.parse_args()

    if args.base_url:
        from agentflow.llm import OpenAICompatModel

        model = OpenAICompatModel(args.base_url, model=args.model, api_key=args.api_key)
        await model.probe()
    else:
        model = offline_model()

    researcher = Worker("researcher", "looks up facts about cities with the population tool", model=model,
                        tools=[population], max_steps=4)
    writer = Worker("writer", "reasons over given results and writes short answers; no tools", model=model,
                    max_steps=2)
    workforce = Workforce([researcher, writer], model=model, functions=[city_list, largest])

    console = Console()
    handle = workforce.start(QUESTION)
    with Live(render_run(handle.state), console=console, refresh_per_second=8) as live:
        while not handle.done():
            live.update(render_run(handle.state))
            await asyncio.sleep(0.1)
        result = await handle
        live.update(render_run(result.state))

    console.print()
    console.print(render_plan(result.plan, title="final plan"))
    console.print(f"[bold]answer:[/] {result.answer}   [dim]status: {result.status}, "
                  f"{result.model_calls} model calls, {result.duration_s:.1f}s[/]")
    for role, usage in sorted(result.usage_by_role.items()):
        console.print(f"[dim]  {role:<12} {usage.prompt_tokens:>6} prompt + {usage.completion_tokens:>5} "
                      f"completion tokens[/]")


if __name__ == "__main__":
    asyncio.run(main())
