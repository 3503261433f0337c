"""The scheduler: readiness, priority and the global concurrency limit for a mutable DAG.

It knows nothing about models; the run asks it which node to start next and tells it what
happened. All bookkeeping is incremental — each node keeps counters of inputs without a result
(``soft_left``) and without a *confirmed* result (``hard_left``) — so an event costs time
proportional to the edges it touches, never to the size of the graph.

Two notions of "finished" make speculative execution safe:

* a node **has output** as soon as its handler returns; a dependent whose ``speculative`` flag is
  set may start right then, while the critic is still judging the input;
* a node is **confirmed** once its own result was accepted *and* all its inputs are confirmed.
  Dependents that must not act on unchecked data (side-effecting tools) wait for this.

If the critic rejects a result, :meth:`Scheduler.retract` withdraws it and resets every
descendant that started on it. Among ready nodes, the one with the longest remaining path to a
sink (critical path first) starts first.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

WAITING, QUEUED, RUNNING, CLOSED = "waiting", "queued", "running", "closed"


@dataclass(eq=False)
class _Slot:
    id: str
    deps: list[str]
    speculative: bool
    weight: float = 1.0
    succs: dict[str, None] = field(default_factory=dict)  # an ordered set, for deterministic order
    soft_left: int = 0
    hard_left: int = 0
    state: str = WAITING
    has_output: bool = False
    done: bool = False
    confirmed: bool = False
    #: counts against the global concurrency limit
    holding: bool = False
    rank: float = 0.0
    queued_version: int = 0


@dataclass
class NodeSpec:
    """What the scheduler needs about a node: its dependencies and whether it may speculate."""

    id: str
    deps: Sequence[str]
    speculative: bool = False
    weight: float = 1.0


class Scheduler:
    """Ready queue (critical path first) plus dependency counters over a graph that may change.

    Args:
        max_concurrency: nodes running at once (a node in its critic phase no longer counts).
        on_ready: called with ``(node_id, speculative)`` whenever a node enters the ready queue.
    """

    def __init__(self, max_concurrency: int = 16, on_ready: Callable[[str, bool], None] | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        self.on_ready = on_ready
        self.slots: dict[str, _Slot] = {}
        self._heap: list[tuple[float, int, int, str]] = []
        self._seq = itertools.count()
        self.running = 0
        self.peak_running = 0

    # --- graph changes ---------------------------------------------------------------------------

    def add_nodes(self, specs: Iterable[NodeSpec], *, floor: float = 0.0) -> None:
        """Add nodes (their dependencies must exist or be among them), rank them, queue the ready ones.

        ``floor`` is the rank below which the new nodes' sinks hang (a collector's rank for its children).
        """
        new = [_Slot(id=s.id, deps=list(dict.fromkeys(s.deps)), speculative=s.speculative, weight=s.weight)
               for s in specs]
        for slot in new:
            if slot.id in self.slots:
                raise ValueError(f"node {slot.id!r} is already scheduled")
            self.slots[slot.id] = slot
        for slot in new:
            for dep in slot.deps:
                d = self.slots.get(dep)
                if d is None:
                    raise KeyError(f"node {slot.id!r} depends on unknown node {dep!r}")
                d.succs[slot.id] = None
                if not d.has_output:
                    slot.soft_left += 1
                if not d.confirmed:
                    slot.hard_left += 1
        self._rank(new, floor)
        for slot in new:
            self._check_ready(slot)

    def _rank(self, new: list[_Slot], floor: float) -> None:
        """Upward rank (longest weighted path to a sink) for new nodes, in reverse topological order.

        Ranks of existing nodes do not change: new nodes only ever hang below finished or running
        nodes, or feed an existing collector.
        """
        ids = {s.id for s in new}
        pending = {s.id: sum(1 for c in s.succs if c in ids) for s in new}
        stack = [s for s in new if pending[s.id] == 0]
        while stack:
            slot = stack.pop()
            slot.rank = slot.weight + max((self.slots[c].rank for c in slot.succs), default=floor)
            for dep in slot.deps:
                if dep in ids:
                    pending[dep] -= 1
                    if pending[dep] == 0:
                        stack.append(self.slots[dep])

    def expand(self, parent: str, children: Iterable[NodeSpec], collect: Sequence[str]) -> None:
        """Turn ``parent`` into a collector that becomes ready again once ``collect`` are finished."""
        p = self.slots[parent]
        self._unhold(p)
        p.state = WAITING
        self.add_nodes(children, floor=p.rank)
        for c in collect:
            cs = self.slots[c]
            if c in p.deps:
                continue
            p.deps.append(c)
            cs.succs[parent] = None
            if not cs.has_output:
                p.soft_left += 1
            if not cs.confirmed:
                p.hard_left += 1
        self._check_ready(p)

    def reset_expansion(self, parent: str, children: Iterable[str]) -> None:
        """Forget an expansion: drop ``children``; the parent then waits only for its own inputs.

        The parent is left waiting but not queued: the caller decides when it runs again (``requeue``).
        """
        p = self.slots[parent]
        self._unhold(p)
        p.state = CLOSED  # keep ``remove`` from queueing it while its dependencies change
        self.remove(children)
        p.state = WAITING

    def remove(self, ids: Iterable[str]) -> None:
        """Delete nodes (a replan replaced them); nodes still in the graph no longer wait for them."""
        gone = {i for i in ids if i in self.slots}
        affected: dict[str, None] = {}
        for nid in gone:
            slot = self.slots[nid]
            self._unhold(slot)
            slot.state = CLOSED
            for dep in slot.deps:
                d = self.slots.get(dep)
                if d is not None and dep not in gone:
                    d.succs.pop(nid, None)
            for succ in slot.succs:
                s = self.slots.get(succ)
                if s is not None and succ not in gone:
                    s.deps.remove(nid)
                    if not slot.has_output:
                        s.soft_left -= 1
                    if not slot.confirmed:
                        s.hard_left -= 1
                    affected[succ] = None
        for nid in gone:
            del self.slots[nid]
        for nid in affected:
            self._check_ready(self.slots[nid])

    def set_speculative(self, node_id: str, speculative: bool) -> None:
        slot = self.slots.get(node_id)
        if slot is not None:
            slot.speculative = speculative

    # --- dispatch --------------------------------------------------------------------------------

    def _check_ready(self, slot: _Slot) -> None:
        if slot.state != WAITING:
            return
        if slot.hard_left == 0 or (slot.speculative and slot.soft_left == 0):
            slot.state = QUEUED
            slot.queued_version += 1
            heapq.heappush(self._heap, (-slot.rank, next(self._seq), slot.queued_version, slot.id))
            if self.on_ready is not None:
                self.on_ready(slot.id, slot.hard_left > 0)

    def pop_ready(self) -> str | None:
        """The highest-priority ready node, marked running, or None (nothing ready or no capacity)."""
        while self.running < self.max_concurrency and self._heap:
            _, _, version, nid = heapq.heappop(self._heap)
            slot = self.slots.get(nid)
            if slot is None or slot.state != QUEUED or slot.queued_version != version:
                continue  # stale entry: the node was reset, removed or re-queued since
            slot.state = RUNNING
            slot.holding = True
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
            return nid
        return None

    def _unhold(self, slot: _Slot) -> None:
        if slot.holding:
            slot.holding = False
            self.running -= 1

    def release(self, node_id: str) -> None:
        """The node stops counting against the concurrency limit (its handler returned or its task ended)."""
        slot = self.slots.get(node_id)
        if slot is not None:
            self._unhold(slot)

    def is_speculative_start(self, node_id: str) -> bool:
        slot = self.slots.get(node_id)
        return slot is not None and slot.hard_left > 0

    # --- results ---------------------------------------------------------------------------------

    def mark_output(self, node_id: str) -> None:
        slot = self.slots[node_id]
        if slot.has_output:
            return
        slot.has_output = True
        for succ in slot.succs:
            s = self.slots[succ]
            s.soft_left -= 1
            self._check_ready(s)

    def mark_done(self, node_id: str) -> None:
        """The result was accepted; confirm it (and dependents waiting only on it) when its inputs are."""
        slot = self.slots[node_id]
        self.mark_output(node_id)
        slot.done = True
        stack = [slot]
        while stack:
            x = stack.pop()
            if x.confirmed or not x.done or x.hard_left > 0:
                continue
            x.confirmed = True
            for succ in x.succs:
                s = self.slots[succ]
                s.hard_left -= 1
                self._check_ready(s)
                if s.done and s.hard_left == 0:
                    stack.append(s)

    def retract(self, node_id: str) -> list[str]:
        """Withdraw the node's result; return the descendants that had started on it (now waiting again)."""
        reset: list[str] = []
        stack = [node_id]
        while stack:
            x = self.slots[stack.pop()]
            if x.has_output:
                for succ in x.succs:
                    self.slots[succ].soft_left += 1
            if x.confirmed:
                for succ in x.succs:
                    self.slots[succ].hard_left += 1
            x.has_output = x.done = x.confirmed = False
            for succ in x.succs:
                s = self.slots[succ]
                if s.state in (QUEUED, RUNNING) or s.has_output:
                    self._unhold(s)
                    s.state = WAITING
                    reset.append(s.id)
                    stack.append(s.id)
        return reset

    def requeue(self, node_id: str) -> None:
        """Run the node again (retry or reassignment); it queues as soon as its inputs allow."""
        slot = self.slots[node_id]
        self._unhold(slot)
        slot.has_output = slot.done = slot.confirmed = False
        slot.state = WAITING
        self._check_ready(slot)

    def close(self, node_id: str) -> None:
        """The node will not run (again): it failed for good, was skipped or cancelled."""
        slot = self.slots.get(node_id)
        if slot is not None:
            self._unhold(slot)
            slot.state = CLOSED

    def descendants(self, node_id: str) -> list[str]:
        """Every node reachable from ``node_id`` (breadth first, deterministic order)."""
        seen: dict[str, None] = {}
        frontier = [node_id]
        while frontier:
            nxt: list[str] = []
            for nid in frontier:
                for succ in self.slots[nid].succs:
                    if succ not in seen:
                        seen[succ] = None
                        nxt.append(succ)
            frontier = nxt
        return list(seen)

    def rank(self, node_id: str | None) -> float:
        slot = self.slots.get(node_id) if node_id else None
        return slot.rank if slot is not None else float("inf")

    def state_of(self, node_id: str) -> str | None:
        slot = self.slots.get(node_id)
        return slot.state if slot is not None else None
