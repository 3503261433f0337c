"""EndpointPool: least-outstanding routing, failover with cooldown, probing back, accounting."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from fake_openai_server import FakeOpenAIServer, completion, http_error, server_error, text

from agentflow.errors import BadRequestError, ConfigurationError, EndpointUnreachableError, ServerError
from agentflow.llm import UsageLedger
from agentflow.llm.base import collect_stream
from agentflow.llm.openai_compat import OpenAICompatModel
from agentflow.llm.pool import EndpointPool
from agentflow.llm.transport import RetryPolicy
from agentflow.llm.types import CallContext, ChatRequest, Message
from agentflow.testing import ScriptedModel, reply

NO_RETRY = RetryPolicy(max_retries=0, connect_retries=0)

Factory = Callable[..., FakeOpenAIServer]


def ask(context: CallContext | None = None) -> ChatRequest:
    return ChatRequest(messages=[Message.user("hi")], context=context or CallContext())


def member(server: FakeOpenAIServer | str) -> OpenAICompatModel:
    url = server if isinstance(server, str) else server.base_url
    return OpenAICompatModel(url, model="fake-model", retry_policy=NO_RETRY, timeout=5.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


async def test_concurrent_requests_go_to_the_least_busy_endpoint(fake_openai_factory: Factory) -> None:
    a, b = fake_openai_factory(), fake_openai_factory()
    for server in (a, b):
        server.default = completion(text("slow"), delay=0.1)
    pool = EndpointPool([member(a), member(b)])
    responses = await asyncio.gather(*(pool.complete(ask()) for _ in range(6)))
    await pool.aclose()
    assert len(a.requests) == 3 and len(b.requests) == 3
    assert {r.endpoint for r in responses} == {a.base_url, b.base_url}
    assert all(e.outstanding == 0 for e in pool.endpoints)


async def test_a_busy_endpoint_is_avoided(fake_openai_factory: Factory) -> None:
    a, b = fake_openai_factory(), fake_openai_factory()
    a.default = completion(text("slow"), delay=0.3)
    pool = EndpointPool([member(a), member(b)])
    slow = asyncio.create_task(pool.complete(ask()))  # occupies one endpoint
    await asyncio.sleep(0.05)
    busy = next(e for e in pool.endpoints if e.outstanding == 1)
    quick = [await pool.complete(ask()) for _ in range(3)]
    await slow
    await pool.aclose()
    assert all(r.endpoint != busy.label for r in quick)


async def test_sequential_requests_rotate(fake_openai_factory: Factory) -> None:
    servers = [fake_openai_factory() for _ in range(3)]
    pool = EndpointPool([member(s) for s in servers])
    endpoints = [(await pool.complete(ask())).endpoint for _ in range(6)]
    await pool.aclose()
    assert endpoints[:3] == [s.base_url for s in servers] and endpoints[3:] == endpoints[:3]


async def test_failover_marks_the_failing_endpoint_and_avoids_it(fake_openai_factory: Factory) -> None:
    a, b = fake_openai_factory(), fake_openai_factory()
    a.default = server_error(500)
    clock = Clock()
    pool = EndpointPool([member(a), member(b)], cooldown_s=30, clock=clock)
    first = await pool.complete(ask())
    assert first.endpoint == b.base_url and first.attempts == 2
    sick = pool.endpoints[0]
    assert sick.failures == 1 and sick.unhealthy_until == clock.now + 30 and "500" in (sick.last_error or "")
    for _ in range(4):
        assert (await pool.complete(ask())).endpoint == b.base_url
    assert len(a.requests) == 1  # not contacted during its cooldown
    await pool.aclose()


async def test_failover_from_an_unreachable_endpoint(fake_openai: FakeOpenAIServer) -> None:
    pool = EndpointPool([member(closed_url()), member(fake_openai)])
    response = await pool.complete(ask())
    await pool.aclose()
    assert response.endpoint == fake_openai.base_url and response.text == "OK"
    assert pool.endpoints[0].failures == 1


async def test_endpoint_is_probed_back_after_cooldown(fake_openai_factory: Factory) -> None:
    a, b = fake_openai_factory(), fake_openai_factory()
    a.default = server_error(503)
    clock = Clock()
    pool = EndpointPool([member(a), member(b)], cooldown_s=10, max_cooldown_s=15, clock=clock)
    await pool.complete(ask())
    clock.now += 11  # cooldown over: a takes traffic again, still fails, and its cooldown doubles (capped)
    assert [(await pool.complete(ask())).endpoint for _ in range(2)] == [b.base_url, b.base_url]
    assert len(a.requests) == 2
    assert pool.endpoints[0].failures == 2 and pool.endpoints[0].unhealthy_until == clock.now + 15
    a.default = text("back")  # a recovers
    clock.now += 16
    served = {(await pool.complete(ask())).endpoint for _ in range(2)}
    await pool.aclose()
    assert a.base_url in served
    assert pool.endpoints[0].failures == 0 and pool.endpoints[0].unhealthy_until == 0.0


async def test_non_retryable_errors_are_not_failed_over(fake_openai_factory: Factory) -> None:
    a, b = fake_openai_factory(), fake_openai_factory()
    for server in (a, b):
        server.default = http_error(400, "invalid message role")
    pool = EndpointPool([member(a), member(b)])
    with pytest.raises(BadRequestError):
        await pool.complete(ask())
    await pool.aclose()
    assert len(a.requests) + len(b.requests) == 1
    assert all(e.failures == 0 for e in pool.endpoints)


async def test_all_endpoints_failing_raises_the_last_error(fake_openai_factory: Factory) -> None:
    a = fake_openai_factory()
    a.default = server_error(500)
    pool = EndpointPool([member(a), member(closed_url())])
    with pytest.raises((ServerError, EndpointUnreachableError)) as info:
        await pool.complete(ask())
    await pool.aclose()
    assert info.value.attempts == 2  # type: ignore[union-attr]
    assert all(e.failures == 1 for e in pool.endpoints)


async def test_pool_ledger_attributes_calls(fake_openai_factory: Factory) -> None:
    a, b = fake_openai_factory(), fake_openai_factory()
    ledger = UsageLedger()
    pool = EndpointPool([member(a), member(b)], ledger=ledger)
    await pool.complete(ask(CallContext(run_id="r", node_id="x")))
    await pool.complete(ask(CallContext(run_id="r", node_id="y")))
    await pool.aclose()
    assert [r.context.node_id for r in ledger.records] == ["x", "y"]
    assert {r.endpoint for r in ledger.records} == {a.base_url, b.base_url}


async def test_stream_fails_over_before_the_first_event(fake_openai_factory: Factory) -> None:
    a, b = fake_openai_factory(), fake_openai_factory()
    a.default = server_error(500)
    b.default = text("streamed from b")
    pool = EndpointPool([member(a), member(b)])
    response = await collect_stream(pool.stream(ask()))
    await pool.aclose()
    assert response.text == "streamed from b" and response.endpoint == b.base_url
    assert pool.endpoints[0].failures == 1 and all(e.outstanding == 0 for e in pool.endpoints)


async def test_pool_of_scripted_models() -> None:
    flaky = ScriptedModel([reply("never")], name="m", fail_first=1)
    steady = ScriptedModel([reply("from steady")], name="m")
    pool = EndpointPool([flaky, steady])
    response = await pool.complete(ask())
    assert response.text == "from steady" and response.endpoint == "m#1"
    assert pool.name == "m"


def test_pool_needs_members() -> None:
    with pytest.raises(ConfigurationError):
        EndpointPool([])
