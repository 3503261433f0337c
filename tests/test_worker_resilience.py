"""A worker over real HTTP against a server where a quarter of requests fail.

Transport faults (429 with Retry-After, 500, stalls past the timeout, dropped connections) are
injected at random by the fake server; model-output faults (malformed tool arguments, tool calls
leaked into content, empty replies) are produced by the scripted "model" at random too. Every run
must return a TaskResult, and most must still reach the right answer.
"""

from __future__ import annotations

import asyncio
import json
import random

from fake_openai_server import (
    FakeOpenAIServer,
    drop,
    leaked_tool_call,
    rate_limit,
    server_error,
    stall,
    text,
    tool_call,
)
from sample_tools import add

from agentflow import TaskResult, Worker
from agentflow.llm import OpenAICompatModel
from agentflow.llm.transport import RetryPolicy


def flaky_model_brain(seed: int):
    """A model that sums 1..3 with the add tool, and botches a quarter of its turns.

    The right next action is decided first; a botched turn is that same action gone wrong
    (truncated or mistyped arguments, an empty reply, the call leaked into the text), so a
    worker that copes with the mess still ends at 6.
    """
    rng = random.Random(seed)

    def respond(body: dict):
        results = [m for m in body["messages"] if m["role"] == "tool"]
        sums = [m for m in results if m["content"].strip().lstrip("-").isdigit()]
        total = int(sums[-1]["content"]) if sums else 0
        done = len(sums)
        botch = rng.random() < 0.25
        if done < 3:
            if not botch:
                return tool_call("add", {"a": total, "b": done + 1})
            return rng.choice([
                tool_call("add", '{"a": 1, "b": '),                      # truncated JSON
                tool_call("add", {"a": "one", "b": 2}),                  # wrong type
                text(""),                                                # empty reply
                leaked_tool_call("add", {"a": total, "b": done + 1}),    # call leaked into content
            ])
        return text("") if botch else text(f"The total is {total}.")

    return respond


async def test_quarter_of_requests_failing_every_run_returns_a_result():
    server = FakeOpenAIServer(default=flaky_model_brain(seed=7)).start()
    server.fail_randomly(0.25, [rate_limit(retry_after=0.05), server_error(), stall(1.0), drop()], seed=3)
    try:
        model = OpenAICompatModel(
            server.base_url, timeout=0.5,
            retry_policy=RetryPolicy(max_retries=6, backoff_initial=0.01, backoff_max=0.05, jitter=0.01,
                                     connect_retries=2))
        worker = Worker("summer", "adds numbers", model=model, tools=[add], max_steps=12)
        results = await asyncio.gather(*[worker.run("Add 1, 2 and 3 with the add tool.") for _ in range(12)])
        await model.aclose()
    finally:
        server.stop()

    assert all(isinstance(r, TaskResult) for r in results)
    answered = [r for r in results if not r.failed and "6" in r.content]
    assert len(answered) >= 10, [r.reason for r in results]
    assert server.fault_count > 0, "the fault injector must actually have fired"
    # malformed output was fed back as tool results rather than crashing the loop
    errors = [tr for r in results for s in r.steps for tr in s.tool_results if tr.is_error]
    assert errors and all(e.error_kind == "validation" for e in errors)
    json.dumps([r.model_dump(mode="json") for r in results])  # results serialize
