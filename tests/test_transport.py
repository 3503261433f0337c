"""Transport reliability: retries with backoff, Retry-After, timeouts, error messages that say what to do."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import time

import pytest
from fake_openai_server import (
    FakeOpenAIServer,
    completion,
    drop,
    http_error,
    rate_limit,
    server_error,
    stall,
    text,
)

from agentflow.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    EndpointUnreachableError,
    ModelNotFoundError,
    ModelTimeoutError,
    RateLimitedError,
    ServerError,
)
from agentflow.llm.openai_compat import OpenAICompatModel
from agentflow.llm.transport import RetryNotice, RetryPolicy, parse_context_length_error, parse_retry_after
from agentflow.llm.types import ChatRequest, Message

FAST = RetryPolicy(max_retries=3, backoff_initial=0.01, backoff_max=0.05, jitter=0.01, retry_after_max=1.0,
                   connect_retries=1)


def ask(text_: str = "hi") -> ChatRequest:
    return ChatRequest(messages=[Message.user(text_)])


def make(server: FakeOpenAIServer, notices: list[RetryNotice] | None = None, **kw: object) -> OpenAICompatModel:
    kw.setdefault("timeout", 5.0)
    kw.setdefault("retry_policy", FAST)
    return OpenAICompatModel(server.base_url, on_retry=notices.append if notices is not None else None, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- header and message parsing ------------------------------------------------------------------


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after({"retry-after": date}) or 0) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("message", "body", "expected"),
    [
        # vLLM (current wording, renderer check)
        ("This model's maximum context length is 2048 tokens. However, you requested 100 output tokens and your "
         "prompt contains at least 2001 input tokens, for a total of at least 2101 tokens.", None, (2048, 2001, 100)),
        ("This model's maximum context length is 4096 tokens. However, your prompt contains at least 4097 input "
         "tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input "
         "prompt. (parameter=input_tokens, value=4097)", None, (4096, 4097, None)),
        ("max_tokens=5000 cannot be greater than max_model_len=4096. Please request fewer output tokens. "
         "(parameter=max_tokens, value=5000)", None, (4096, None, 5000)),
        # vLLM (older wording)
        ("This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the "
         "messages, 1000 in the completion).", None, (4096, 4000, 1000)),
        ("'max_tokens' or 'max_completion_tokens' is too large: 8000. This model's maximum context length is 4096 "
         "tokens and your request has 2778 input tokens (8000 > 4096 - 2778).", None, (4096, 2778, 8000)),
        # vLLM engine check
        ("The decoder prompt (length 5000) is longer than the maximum model length of 4096. Make sure that "
         "`max_model_len` is no smaller than the number of text tokens.", None, (4096, 5000, None)),
        # OpenAI
        ("This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. "
         "Please reduce the length of the messages.", {"code": "context_length_exceeded"}, (8192, 9000, None)),
        # llama.cpp
        ("the request exceeds the available context size, try increasing it",
         {"type": "exceed_context_size_error", "n_ctx": 4096, "n_prompt_tokens": 4500}, (4096, 4500, None)),
    ],
)
def test_context_length_messages_are_understood(message: str, body: dict | None, expected: tuple) -> None:
    assert parse_context_length_error(message, body) == expected


def test_other_400s_are_not_context_errors() -> None:
    assert parse_context_length_error("Unrecognized request argument supplied: seed", None) is None


# --- retries against a live server ----------------------------------------------------------------


async def test_429_is_retried_after_the_servers_retry_after(fake_openai: FakeOpenAIServer) -> None:
    notices: list[RetryNotice] = []
    fake_openai.enqueue(rate_limit(retry_after=0.3), text("done"))
    async with make(fake_openai, notices) as model:
        response = await model.complete(ask())
    assert response.text == "done"
    assert response.attempts == 2
    assert len(notices) == 1
    assert isinstance(notices[0].error, RateLimitedError)
    assert notices[0].error.retry_after == 0.3
    assert notices[0].wait_s == pytest.approx(0.3)


async def test_retry_after_ms_header_and_cap(fake_openai: FakeOpenAIServer) -> None:
    notices: list[RetryNotice] = []
    fake_openai.enqueue(rate_limit(retry_after=0.2, ms=True), rate_limit(retry_after=120), text("ok"))
    policy = RetryPolicy(max_retries=3, backoff_initial=0.01, backoff_max=0.05, jitter=0.01, retry_after_max=0.1)
    async with make(fake_openai, notices, retry_policy=policy) as model:
        response = await model.complete(ask())
    assert response.attempts == 3
    # the ms header is honoured exactly, but a 2-minute hint is capped to the policy's maximum
    assert [n.wait_s for n in notices] == [pytest.approx(0.1), pytest.approx(0.1)]
    assert notices[1].error.retry_after == 120  # type: ignore[attr-defined]


async def test_5xx_is_retried_with_backoff(fake_openai: FakeOpenAIServer) -> None:
    notices: list[RetryNotice] = []
    fake_openai.enqueue(server_error(500), server_error(503), text("recovered"))
    async with make(fake_openai, notices) as model:
        response = await model.complete(ask())
    assert response.text == "recovered"
    assert response.attempts == 3
    assert all(isinstance(n.error, ServerError) for n in notices)
    assert all(0 < n.wait_s <= FAST.backoff_max + FAST.jitter for n in notices)
    assert len(fake_openai.requests) == 3


async def test_a_stall_times_out_and_is_retried(fake_openai: FakeOpenAIServer) -> None:
    notices: list[RetryNotice] = []
    fake_openai.enqueue(stall(10), text("second try"))
    async with make(fake_openai, notices, timeout=0.3) as model:
        response = await model.complete(ask())
    assert response.text == "second try"
    assert response.attempts == 2
    assert isinstance(notices[0].error, ModelTimeoutError)
    assert "0.3s" in notices[0].error.message


async def test_a_dropped_connection_is_retried(fake_openai: FakeOpenAIServer) -> None:
    notices: list[RetryNotice] = []
    fake_openai.enqueue(drop(), text("after drop"))
    async with make(fake_openai, notices) as model:
        response = await model.complete(ask())
    assert response.text == "after drop"
    assert response.attempts == 2
    assert isinstance(notices[0].error, EndpointUnreachableError)
    assert "dropped" in notices[0].error.message


async def test_a_400_is_not_retried(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.enqueue(http_error(400, "messages: role 'robot' is not valid"), text("never sent"))
    async with make(fake_openai) as model:
        with pytest.raises(BadRequestError) as info:
            await model.complete(ask())
    assert "role 'robot' is not valid" in str(info.value)
    assert len(fake_openai.requests) == 1
    assert fake_openai.pending == 1


async def test_exhausted_retries_raise_the_mapped_error_with_attempts(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.default = server_error(502, "bad gateway")
    async with make(fake_openai) as model:
        with pytest.raises(ServerError) as info:
            await model.complete(ask())
    assert info.value.attempts == FAST.max_retries + 1  # type: ignore[attr-defined]
    assert fake_openai.base_url in str(info.value) and "502" in str(info.value)
    assert len(fake_openai.requests) == FAST.max_retries + 1


async def test_openai_client_retries_are_disabled(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.default = server_error(500)
    async with make(fake_openai, retry_policy=RetryPolicy(max_retries=0)) as model:
        with pytest.raises(ServerError):
            await model.complete(ask())
    assert len(fake_openai.requests) == 1


async def test_nothing_listening_gives_instructions_to_start_vllm() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    async with OpenAICompatModel(url, model="qwen-tiny", retry_policy=FAST) as model:
        with pytest.raises(EndpointUnreachableError) as info:
            await model.complete(ask())
    message = str(info.value)
    assert url in message
    assert "agentflow serve --model qwen-tiny" in message
    assert "python -m vllm.entrypoints.openai.api_server --model qwen-tiny" in message
    assert "AGENTFLOW_BASE_URL" in message and "--base-url" in message
    # refused connections get the short connect budget, not the full retry budget
    assert info.value.attempts == FAST.connect_retries + 1  # type: ignore[attr-defined]


async def test_context_length_error_reports_limit_and_prompt_size(
        fake_openai_factory) -> None:  # noqa: ANN001 - fixture
    server = fake_openai_factory(max_model_len=64)
    async with make(server) as model:
        with pytest.raises(ContextLengthExceededError) as info:
            await model.complete(ChatRequest(messages=[Message.user("word " * 200)], max_tokens=16))
    err = info.value
    assert err.max_context == 64
    assert err.prompt_tokens is not None and err.prompt_tokens > 64
    assert "64 tokens" in str(err) and f"{err.prompt_tokens} tokens" in str(err)
    assert "max_tokens" in str(err) and "--max-model-len" in str(err)
    assert len(server.requests) == 1  # not retried


async def test_wrong_api_key_is_an_authentication_error_without_the_key(
        fake_openai_factory, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    server = fake_openai_factory(api_key="right-key")
    caplog.set_level(logging.DEBUG)
    async with OpenAICompatModel(server.base_url, api_key="sk-wrong-secret", retry_policy=FAST) as model:
        with pytest.raises(AuthenticationError) as info:
            await model.complete(ask())
        assert "sk-wrong-secret" not in repr(model)
    assert "OPENAI_API_KEY" in str(info.value)
    assert "sk-wrong-secret" not in str(info.value)
    assert "sk-wrong-secret" not in caplog.text


async def test_right_api_key_from_environment(fake_openai_factory, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    server = fake_openai_factory(api_key="env-key")
    monkeypatch.delenv("AGENTFLOW_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    async with OpenAICompatModel(server.base_url, retry_policy=FAST) as model:
        assert (await model.complete(ask())).text == "OK"


async def test_unknown_model_lists_the_served_models(fake_openai_factory) -> None:  # noqa: ANN001
    server = fake_openai_factory(models=["qwen-a", "qwen-b"])
    async with make(server, model="llama-x") as model:
        with pytest.raises(ModelNotFoundError) as info:
            await model.complete(ask())
    assert "'llama-x'" in str(info.value)
    assert "qwen-a, qwen-b" in str(info.value)


async def test_concurrency_is_limited_per_endpoint(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.default = completion(text("slow"), delay=0.05)
    async with make(fake_openai, max_concurrency=2) as model:
        await model.complete(ask())  # discovery out of the way
        fake_openai.max_in_flight = 0
        responses = await asyncio.gather(*(model.complete(ask()) for _ in range(6)))
    assert [r.text for r in responses] == ["slow"] * 6
    assert fake_openai.max_in_flight == 2


async def test_without_a_limit_requests_do_overlap(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.default = completion(text("slow"), delay=0.05)
    async with make(fake_openai, max_concurrency=16) as model:
        await model.complete(ask())
        fake_openai.max_in_flight = 0
        await asyncio.gather(*(model.complete(ask()) for _ in range(6)))
    assert fake_openai.max_in_flight > 2
