"""A Worker runs a forced tool step against the real vLLM server and finishes its task."""

from __future__ import annotations

from typing import Annotated, Literal

import jsonschema
import pytest
from pydantic import Field

from agentflow.agent import Worker
from agentflow.llm.openai_compat import OpenAICompatModel
from agentflow.llm.types import ChatRequest, ChatResponse
from agentflow.tools import tool

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]


class ForceFirstToolStep:
    """Forces ``tool_choice="required"`` on a conversation's first model call.

    A random-weight model never chooses a tool on its own; forcing the first step makes the
    worker go through the whole tool path (call, execution, tool message, next turn) for real.
    """

    def __init__(self, model: OpenAICompatModel) -> None:
        self.model = model
        self.name = model.name
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if request.tools and not any(m.role == "tool" for m in request.messages):
            request = request.model_copy(update={"tool_choice": "required"})
        self.requests.append(request)
        return await self.model.complete(request)

    def stream(self, request: ChatRequest):
        return self.model.stream(request)


async def test_worker_completes_a_forced_tool_step(tiny_server) -> None:
    received: list[dict] = []

    @tool
    def lookup_weather(city: Literal["paris", "rome", "oslo"],
                       days: Annotated[int, Field(ge=1, le=7)]) -> str:
        """Forecast for a city over the next days."""
        received.append({"city": city, "days": days})
        return f"{city}: sunny for {days} days"

    async with OpenAICompatModel(tiny_server.base_url, tiny_server.model, timeout=120) as base:
        model = ForceFirstToolStep(base)
        worker = Worker("forecaster", "answers weather questions", model=model, tools=[lookup_weather],
                        max_steps=3, max_tokens=48)
        result = await worker.run("What is the weather in Rome for the next three days?")

    assert not result.failed, result.reason
    assert result.tool_calls >= 1 and received, "the forced tool call never reached the tool"
    for args in received:
        jsonschema.validate(args, lookup_weather.parameters)
    first = result.steps[0]
    assert first.tool_calls and first.tool_results and not first.tool_results[0].is_error
    assert result.model_calls >= 2 and result.content
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    # the second call carries the tool result and repeats the first call's prefix
    second = model.requests[1]
    assert [m.role for m in second.messages][:4] == ["system", "user", "assistant", "tool"]
