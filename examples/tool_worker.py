"""A tool-calling worker: a custom tool plus the built-in calculator.

Runs offline by default against a ScriptedModel that plays the model's part, so you can see the
loop (model -> tool calls -> results -> final answer) without a server:

    python examples/tool_worker.py

Point it at any OpenAI-compatible server (vLLM, llama.cpp, OpenAI) to use a real model:

    python examples/tool_worker.py --base-url http://127.0.0.1:8000/v1 [--model NAME]
"""

from __future__ import annotations

import argparse
import asyncio

from agentflow import Worker, tool
from agentflow.runs.events import Event, ToolCallEvent
from agentflow.testing import ScriptedModel, call, calls, reply
from agentflow.tools.builtin import calculator

PRICES = {"apple": 0.5, "pear": 0.75, "melon": 3.0}


@tool
def unit_price(fruit: str) -> float:
    """Look up the price of one piece of fruit in euros.

    Args:
        fruit: one of apple, pear, melon
    """
    if fruit not in PRICES:
        raise KeyError(f"unknown fruit {fruit!r}; known: {', '.join(PRICES)}")
    return PRICES[fruit]


def offline_model() -> ScriptedModel:
    # What a capable model would do: look up both prices in one turn, compute, answer.
    return ScriptedModel([
        calls(call("unit_price", fruit="apple"), call("unit_price", fruit="melon")),
        call("calculator", expression="12 * 0.5 + 2 * 3.0"),
        reply("12 apples and 2 melons cost 12 euros."),
    ])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint; omit to run offline")
    parser.add_argument("--model", help="model name (default: the server's first)")
    args = parser.parse_args()

    if args.base_url:
        from agentflow.llm import OpenAICompatModel

        model = OpenAICompatModel(args.base_url, model=args.model)
    else:
        model = offline_model()

    async def show(event: Event) -> None:
        if isinstance(event, ToolCallEvent):
            print(f"  tool {event.tool}({event.raw_arguments}) -> {event.result}")

    worker = Worker("shopper", "prices fruit baskets", model=model, tools=[unit_price, calculator])
    result = await worker.run("How much do 12 apples and 2 melons cost?", sink=show)
    print(f"answer: {result.content}" if not result.failed else f"failed: {result.reason}")
    print(f"{result.model_calls} model calls, {result.tool_calls} tool calls, {result.usage.total_tokens} tokens")


if __name__ == "__main__":
    asyncio.run(main())
