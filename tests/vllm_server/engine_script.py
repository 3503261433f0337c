"""Runs inside the vLLM venv (repository on PYTHONPATH): exercises ``VllmEngineModel`` and prints
one JSON object for tests/vllm_server/test_vllm_engine.py to check. A script, not a test module, because vLLM
lives in its own venv; ``__main__`` guard because vLLM's engine core starts by spawning."""

from __future__ import annotations

import asyncio
import json
import sys


async def main(model_dir: str) -> dict:
    from agentflow.llm.types import (
        ChatRequest,
        Message,
        NamedToolChoice,
        OutputSchema,
        StreamDone,
        TextDelta,
        ToolSpec,
    )
    from agentflow.llm.vllm_engine import VllmEngineModel

    tool = ToolSpec(name="lookup_weather", description="Forecast for a city.", parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["paris", "rome"]},
                       "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "days"], "additionalProperties": False})
    schema = {"type": "object", "properties": {"verdict": {"type": "string", "enum": ["yes", "no"]},
                                               "score": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["verdict", "score"], "additionalProperties": False}
    msgs = [Message.system("You are a weather desk. Use tools for forecasts."), Message.user("Rain in Rome?")]
    out: dict = {}
    async with VllmEngineModel.tiny_cpu(model_dir) as model:
        r = await model.complete(ChatRequest(messages=msgs, n=3, max_tokens=8, logprobs=True, top_logprobs=2,
                                             seed=0))
        out["chat"] = {"n": len(r.choices), "usage": r.usage.model_dump(), "model": r.model,
                       "finish": [c.finish_reason for c in r.choices],
                       "logprobs": [len(c.logprobs or []) for c in r.choices],
                       "top": [len(lp.top) for lp in r.first.logprobs or []]}
        calls = []
        for seed, choice in enumerate(["required", NamedToolChoice(name="lookup_weather")] * 2):
            r = await model.complete(ChatRequest(messages=msgs, tools=[tool], tool_choice=choice, max_tokens=80,
                                                 seed=seed))
            calls.append({"finish": r.first.finish_reason,
                          "calls": [c.model_dump(include={"name", "arguments", "parse_error"})
                                    for c in r.first.tool_calls],
                          "cached": r.usage.cached_tokens, "prompt": r.usage.prompt_tokens})
        out["forced"] = calls
        parsed = []
        for seed in range(2):
            r = await model.complete(ChatRequest(messages=msgs, output_schema=OutputSchema(json_schema=schema),
                                                 max_tokens=40, seed=seed))
            parsed.append({"parsed": r.first.parsed, "error": r.first.parse_error})
        out["json"] = parsed
        events = [e async for e in model.stream(ChatRequest(messages=msgs, max_tokens=10, seed=1))]
        done = events[-1]
        out["stream"] = {"deltas": sum(isinstance(e, TextDelta) for e in events),
                         "done_last": isinstance(done, StreamDone),
                         "joined_matches": isinstance(done, StreamDone) and "".join(
                             e.text for e in events if isinstance(e, TextDelta)) == done.response.text,
                         "completion_tokens": done.response.usage.completion_tokens if isinstance(done, StreamDone) else 0}
        r = await model.complete(ChatRequest(messages=msgs, tools=[tool], tool_choice="auto", max_tokens=16, seed=3))
        out["auto"] = {"finish": r.first.finish_reason, "has_text_or_calls": bool(r.first.text or r.first.tool_calls)}
        try:
            await model.complete(ChatRequest(messages=msgs, max_tokens=10_000))
            out["too_long"] = "no error"
        except Exception as exc:  # the test checks the type name
            out["too_long"] = type(exc).__name__
    return out


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1]))
    print("RESULT " + json.dumps(result))
