"""The scheduler and the per-model limiter on their own (no models, no events)."""

from __future__ import annotations

import asyncio

import pytest

from agentflow.workforce.concurrency import PriorityLimiter
from agentflow.workforce.scheduler import CLOSED, QUEUED, RUNNING, WAITING, NodeSpec, Scheduler


def drain(s: Scheduler) -> list[str]:
    out = []
    while (nid := s.pop_ready()) is not None:
        out.append(nid)
    return out


def test_critical_path_first_and_capacity() -> None:
    ready: list[tuple[str, bool]] = []
    s = Scheduler(max_concurrency=2, on_ready=lambda nid, spec: ready.append((nid, spec)))
    s.add_nodes([NodeSpec("short", []), NodeSpec("a", []), NodeSpec("b", ["a"]), NodeSpec("c", ["b"])])
    assert [r[0] for r in ready] == ["short", "a"]
    assert drain(s) == ["a", "short"]  # rank 3 before rank 1; then capacity is full
    assert s.pop_ready() is None and s.running == 2
    s.release("short")
    assert s.running == 1


def test_speculative_start_and_confirmation() -> None:
    s = Scheduler(max_concurrency=10)
    s.add_nodes([NodeSpec("a", []), NodeSpec("fast", ["a"], speculative=True), NodeSpec("safe", ["a"]),
                 NodeSpec("after", ["fast"])])
    assert drain(s) == ["a"]
    s.mark_output("a")
    assert drain(s) == ["fast"]  # "safe" waits for a confirmed input
    s.mark_done("fast")          # accepted, but its input is not confirmed yet
    assert not s.slots["fast"].confirmed and drain(s) == []
    s.mark_done("a")             # confirming a confirms fast too, which releases "after"
    assert s.slots["fast"].confirmed
    assert sorted(drain(s)) == ["after", "safe"]


def test_retract_resets_every_descendant_that_started() -> None:
    s = Scheduler(max_concurrency=10)
    s.add_nodes([NodeSpec("a", []), NodeSpec("b", ["a"], speculative=True), NodeSpec("c", ["b"], speculative=True),
                 NodeSpec("d", ["a"], speculative=True)])
    drain(s)
    s.mark_output("a")
    assert sorted(drain(s)) == ["b", "d"]
    s.mark_output("b")
    assert drain(s) == ["c"]
    reset = s.retract("a")
    assert sorted(reset) == ["b", "c", "d"]
    assert all(s.state_of(n) == WAITING for n in "bcd")
    assert s.running == 1  # only "a" still holds a slot
    assert (s.slots["b"].soft_left, s.slots["c"].soft_left) == (1, 1)
    s.requeue("a")
    assert s.state_of("a") == QUEUED


def test_expand_and_reset_expansion() -> None:
    s = Scheduler(max_concurrency=10)
    s.add_nodes([NodeSpec("src", []), NodeSpec("m", ["src"]), NodeSpec("out", ["m"])])
    drain(s)
    s.mark_done("src")
    s.release("src")
    assert drain(s) == ["m"]
    s.expand("m", [NodeSpec("m[0]", ["src"]), NodeSpec("m[1]", ["src"])], ["m[0]", "m[1]"])
    assert s.state_of("m") == WAITING and s.running == 0
    assert s.slots["m[0]"].rank > s.slots["out"].rank
    assert sorted(drain(s)) == ["m[0]", "m[1]"]
    s.mark_done("m[0]")
    s.mark_done("m[1]")
    assert drain(s) == ["m"]  # the collector runs again
    s.reset_expansion("m", ["m[0]", "m[1]"])
    assert "m[0]" not in s.slots and s.slots["m"].deps == ["src"] and s.state_of("m") == WAITING
    s.requeue("m")
    assert drain(s) == ["m"]


def test_remove_and_descendants() -> None:
    s = Scheduler()
    s.add_nodes([NodeSpec("a", []), NodeSpec("b", ["a"]), NodeSpec("c", ["b"]), NodeSpec("d", [])])
    assert s.descendants("a") == ["b", "c"]
    drain(s)
    s.remove(["b", "c"])
    assert set(s.slots) == {"a", "d"} and s.slots["a"].succs == {}
    s.close("d")
    assert s.state_of("d") == CLOSED and s.state_of("a") == RUNNING


def test_unknown_dependency_is_an_error() -> None:
    with pytest.raises(KeyError):
        Scheduler().add_nodes([NodeSpec("a", ["ghost"])])


async def test_priority_limiter_serves_highest_priority_first() -> None:
    limiter = PriorityLimiter(1)
    order: list[str] = []

    async def job(name: str, priority: float) -> None:
        await limiter.acquire(priority)
        order.append(name)
        await asyncio.sleep(0.001)
        limiter.release()

    await limiter.acquire()  # hold the only slot while the others queue
    tasks = [asyncio.ensure_future(job(n, p)) for n, p in (("low", 1), ("high", 5), ("mid", 3))]
    await asyncio.sleep(0.01)
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == ["high", "mid", "low"]
    assert limiter.active == 0 and limiter.peak == 1


async def test_priority_limiter_survives_cancelled_waiters() -> None:
    limiter = PriorityLimiter(1)
    await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire(1.0))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    limiter.release()
    assert limiter.active == 0
    await asyncio.wait_for(limiter.acquire(), 1.0)
