"""vLLM server metrics and the in-flight limit that adapts to them.

A vLLM server batches whatever requests it holds. Sending too few leaves the batch half empty;
sending too many only lengthens its waiting queue (every queued request adds latency and none adds
throughput) and, once the KV cache is full, forces preemption. The server says which of the two is
happening on ``/metrics``: ``vllm:num_requests_running``, ``vllm:num_requests_waiting`` and
``vllm:kv_cache_usage_perc``. ``AimdLimiter`` turns those figures into an in-flight request limit
with additive increase / multiplicative decrease, the rule TCP uses for the same problem: grow by
one while the server runs everything it is given and our callers want more, shrink by a factor as
soon as a queue forms or the cache fills.

The same endpoint exposes prefix-cache counters (hits and queries, in tokens); the difference of
two snapshots gives the hit rate of everything that ran between them, which is how a run reports
how much of its prompts vLLM served from cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from pydantic import BaseModel, Field

from agentflow.errors import EndpointUnreachableError, UnsupportedFeatureError
from agentflow.llm.base import ChatModel
from agentflow.llm.types import ChatRequest, ChatResponse, StreamEvent

logger = logging.getLogger(__name__)

# --- Prometheus text parsing --------------------------------------------------------------------

_SAMPLE_RE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>.*)\})?"
    r"\s+(?P<value>\S+)"
    r"(?:\s+(?P<ts>-?\d+))?\s*$"
)
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass(frozen=True)
class Sample:
    """One Prometheus sample: a metric name, its labels and a value."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0


def _unescape(value: str) -> str:
    return value.replace(r"\\", "\x00").replace(r"\"", '"').replace(r"\n", "\n").replace("\x00", "\\")


def _parse_value(raw: str) -> float | None:
    lowered = raw.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    if lowered == "nan":
        return math.nan
    try:
        return float(raw)
    except ValueError:
        return None


def parse_prometheus(text: str) -> dict[str, list[Sample]]:
    """Parse the Prometheus text exposition format into samples grouped by metric name.

    Comment lines (``# HELP``/``# TYPE``) and lines that are not valid samples are ignored rather
    than raised on: a metrics endpoint that adds an odd line must not break a run.
    """
    out: dict[str, list[Sample]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            logger.debug("ignoring unparsable metrics line: %r", line)
            continue
        value = _parse_value(m.group("value"))
        if value is None:
            logger.debug("ignoring metrics line with a non-numeric value: %r", line)
            continue
        labels = {k: _unescape(v) for k, v in _LABEL_RE.findall(m.group("labels") or "")}
        out.setdefault(m.group("name"), []).append(Sample(m.group("name"), labels, value))
    return out


# --- vLLM metrics snapshot ----------------------------------------------------------------------

#: metric name candidates, newest first (vLLM renamed several between V0 and V1)
_NAMES = {
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:cpu_cache_usage_perc"),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits",
                          "vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits"),
    "prefix_cache_queries": ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_queries",
                             "vllm:gpu_prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries"),
    "prompt_tokens": ("vllm:prompt_tokens_total", "vllm:prompt_tokens"),
    "generation_tokens": ("vllm:generation_tokens_total", "vllm:generation_tokens"),
    "preemptions": ("vllm:num_preemptions_total", "vllm:num_preemptions"),
}


class VllmMetrics(BaseModel):
    """One snapshot of the figures agentflow reads from a vLLM server's ``/metrics``.

    Gauges (running, waiting, KV-cache usage) describe the moment; counters (prefix-cache hits and
    queries, tokens) only make sense as differences, see ``MetricsDelta``. A field is ``None``
    when the server does not export it.
    """

    running: float | None = None
    waiting: float | None = None
    #: fraction of the KV cache in use, 0..1
    kv_cache_usage: float | None = None
    prefix_cache_hits: float | None = None
    prefix_cache_queries: float | None = None
    prompt_tokens: float | None = None
    generation_tokens: float | None = None
    preemptions: float | None = None
    #: the ``model_name`` labels seen, i.e. the models this server serves
    models: list[str] = Field(default_factory=list)
    taken_at: float = Field(default_factory=time.time)

    @classmethod
    def from_text(cls, text: str) -> VllmMetrics:
        """Build a snapshot from ``/metrics`` text, summing each metric over its label sets.

        Summing is what a client wants when one server runs several engines (data parallel) or
        models: the load it should adapt to is the total.
        """
        samples = parse_prometheus(text)
        values: dict[str, float | None] = {}
        for key, names in _NAMES.items():
            values[key] = None
            for name in names:
                if name in samples:
                    values[key] = sum(s.value for s in samples[name])
                    break
        models = sorted({s.labels["model_name"] for group in samples.values() for s in group
                         if s.name.startswith("vllm:") and "model_name" in s.labels})
        return cls(**values, models=models)

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        """Hit rate since the server started (hits / queries), or None without queries."""
        if not self.prefix_cache_queries or self.prefix_cache_hits is None:
            return None
        return self.prefix_cache_hits / self.prefix_cache_queries

    @property
    def is_vllm(self) -> bool:
        return self.running is not None or self.waiting is not None


class MetricsDelta(BaseModel):
    """What happened on the server between two snapshots (counter differences)."""

    seconds: float
    prefix_cache_hits: float = 0.0
    prefix_cache_queries: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    preemptions: float = 0.0

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        """Share of prompt tokens served from the prefix cache in this interval."""
        if self.prefix_cache_queries <= 0:
            return None
        return self.prefix_cache_hits / self.prefix_cache_queries


def metrics_delta(before: VllmMetrics, after: VllmMetrics) -> MetricsDelta:
    """Counter differences between two snapshots; a counter that went down means a restart."""

    def diff(name: str) -> float:
        a, b = getattr(before, name), getattr(after, name)
        if a is None or b is None:
            return 0.0
        return b - a if b >= a else b  # server restarted: the counter began again from zero

    return MetricsDelta(
        seconds=max(0.0, after.taken_at - before.taken_at),
        prefix_cache_hits=diff("prefix_cache_hits"),
        prefix_cache_queries=diff("prefix_cache_queries"),
        prompt_tokens=diff("prompt_tokens"),
        generation_tokens=diff("generation_tokens"),
        preemptions=diff("preemptions"),
    )


def metrics_url(base_url: str) -> str:
    """``/metrics`` sits at the server root, beside ``/v1``."""
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/metrics"


async def fetch_metrics(base_url: str, *, client: httpx.AsyncClient | None = None,
                        timeout: float = 5.0) -> VllmMetrics:
    """Read one snapshot from a vLLM server (``base_url`` with or without ``/v1``).

    Raises ``EndpointUnreachableError`` when nothing answers and ``UnsupportedFeatureError`` when
    the server has no vLLM metrics (another OpenAI-compatible server).
    """
    url = metrics_url(base_url)
    owns = client is None
    client = client or httpx.AsyncClient(timeout=timeout)
    try:
        try:
            resp = await client.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            raise EndpointUnreachableError(
                f"could not read metrics from {url}: {exc!r}",
                hint="start the server (agentflow serve --model M) or check the base URL",
            ) from exc
    finally:
        if owns:
            await client.aclose()
    if resp.status_code != 200:
        raise UnsupportedFeatureError(
            f"{url} answered HTTP {resp.status_code}; this server exposes no Prometheus metrics",
            hint="metrics-aware concurrency needs a vLLM server; use a fixed concurrency limit elsewhere",
        )
    snapshot = VllmMetrics.from_text(resp.text)
    if not snapshot.is_vllm:
        raise UnsupportedFeatureError(
            f"{url} has no vllm:num_requests_* metrics; the server is not vLLM",
            hint="metrics-aware concurrency needs a vLLM server; use a fixed concurrency limit elsewhere",
        )
    return snapshot


# --- AIMD in-flight limiter ---------------------------------------------------------------------


class LimiterState(BaseModel):
    """What the limiter decided last and why (for logs, events and the benchmark)."""

    limit: float
    in_flight: int
    action: str = "start"
    reason: str = ""


class AimdLimiter:
    """An in-flight request limit that follows the server's queue and KV-cache figures.

    * increase ``limit`` by ``increase`` when the server has no waiting requests, its KV cache is
      below ``kv_high`` and our callers are using the whole limit (growing an unused limit would
      only let a later burst overshoot);
    * multiply it by ``decrease`` when more than ``max_waiting`` requests wait or the KV cache is
      above ``kv_high`` — at most once per ``cooldown_s``, because a queue takes a moment to drain
      after a cut and reacting to the same congestion twice would halve the limit for nothing;
    * never leave ``[min_limit, max_limit]``.

    ``acquire()`` is an async context manager that admits a request when fewer than ``limit`` are
    in flight. Observations come from ``observe()`` (call it with each snapshot) or from
    ``run_poller(base_url)``.
    """

    def __init__(self, *, initial: float = 4, min_limit: float = 1, max_limit: float = 256,
                 increase: float = 1.0, decrease: float = 0.7, max_waiting: float = 0,
                 kv_high: float = 0.9, cooldown_s: float = 1.0) -> None:
        if not (0 < decrease < 1):
            raise ValueError("decrease must be between 0 and 1 (a multiplicative factor)")
        if not (1 <= min_limit <= initial <= max_limit):
            raise ValueError("need 1 <= min_limit <= initial <= max_limit")
        self.limit = float(initial)
        self.min_limit = float(min_limit)
        self.max_limit = float(max_limit)
        self.increase = increase
        self.decrease = decrease
        self.max_waiting = max_waiting
        self.kv_high = kv_high
        self.cooldown_s = cooldown_s
        self.in_flight = 0
        self.peak_in_flight = 0
        self.history: list[LimiterState] = []
        self._last_decrease = -math.inf
        self._cond = asyncio.Condition()

    @property
    def capacity(self) -> int:
        """The whole number of requests admitted at once."""
        return max(1, int(self.limit))

    def observe(self, metrics: VllmMetrics, *, now: float | None = None) -> LimiterState:
        """Adapt the limit to one metrics snapshot; returns the decision."""
        now = time.monotonic() if now is None else now
        waiting = metrics.waiting or 0.0
        kv = metrics.kv_cache_usage or 0.0
        old = self.limit
        if waiting > self.max_waiting or kv > self.kv_high:
            reason = f"waiting={waiting:g}" if waiting > self.max_waiting else f"kv_cache={kv:.2f}"
            if now - self._last_decrease >= self.cooldown_s:
                self.limit = max(self.min_limit, self.limit * self.decrease)
                self._last_decrease = now
                action = "decrease"
            else:
                action = "hold"
                reason += " (cooling down after a decrease)"
        elif self.in_flight >= self.capacity:
            self.limit = min(self.max_limit, self.limit + self.increase)
            action, reason = "increase", f"saturated at {self.in_flight} in flight, no queue"
        else:
            action, reason = "hold", f"{self.in_flight} in flight below limit {self.capacity}"
        state = LimiterState(limit=self.limit, in_flight=self.in_flight, action=action, reason=reason)
        self.history.append(state)
        if len(self.history) > 1000:
            del self.history[:500]
        if self.limit != old:
            logger.debug("in-flight limit %.1f -> %.1f (%s)", old, self.limit, reason)
            self._wake()
        return state

    def _wake(self) -> None:
        async def notify() -> None:
            async with self._cond:
                self._cond.notify_all()

        with contextlib.suppress(RuntimeError):  # no running loop: nobody can be waiting
            asyncio.get_running_loop().create_task(notify())

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < self.capacity)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            async with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()

    async def run_poller(self, base_url: str, *, interval_s: float = 0.25,
                         client: httpx.AsyncClient | None = None) -> None:
        """Poll ``/metrics`` and ``observe`` each snapshot until cancelled.

        A failed poll keeps the current limit (the server may be momentarily busy); it is logged,
        not raised, so that a metrics hiccup never fails a run.
        """
        owns = client is None
        client = client or httpx.AsyncClient(timeout=max(1.0, interval_s * 4))
        try:
            while True:
                try:
                    self.observe(await fetch_metrics(base_url, client=client))
                except (EndpointUnreachableError, UnsupportedFeatureError) as exc:
                    logger.debug("metrics poll failed, keeping limit %.1f: %s", self.limit, exc)
                await asyncio.sleep(interval_s)
        finally:
            if owns:
                await client.aclose()


class MetricsAwareModel:
    """A ``ChatModel`` wrapper that admits calls through an ``AimdLimiter`` fed by ``/metrics``.

    Wrapping the model (rather than the scheduler) means every caller — workers, critics, the
    planner, a user's own code — shares one limit per server. ``start()`` launches the metrics
    poller; use ``async with`` to run it for a block.
    """

    def __init__(self, model: ChatModel, base_url: str, *, limiter: AimdLimiter | None = None,
                 poll_interval_s: float = 0.25) -> None:
        self.model = model
        self.name = model.name
        self.base_url = base_url
        self.limiter = limiter or AimdLimiter()
        self.poll_interval_s = poll_interval_s
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(
                self.limiter.run_poller(self.base_url, interval_s=self.poll_interval_s),
                name="agentflow-vllm-metrics-poller")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def __aenter__(self) -> MetricsAwareModel:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        async with self.limiter.acquire():
            return await self.model.complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        async with self.limiter.acquire():
            async for event in self.model.stream(request):
                yield event


class PrefixCacheProbe:
    """Measures the prefix-cache hit rate of a block of work from ``/metrics`` deltas.

    ``async with PrefixCacheProbe(url) as probe: ...`` then ``probe.delta.prefix_cache_hit_rate``.
    The figure covers every request the server ran meanwhile, so it is exact for a run that has
    the server to itself; per-request ``cached_tokens`` in usage cover the shared case.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.before: VllmMetrics | None = None
        self.after: VllmMetrics | None = None

    async def __aenter__(self) -> PrefixCacheProbe:
        self.before = await fetch_metrics(self.base_url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.after = await fetch_metrics(self.base_url)

    @property
    def delta(self) -> MetricsDelta:
        if self.before is None or self.after is None:
            raise RuntimeError("PrefixCacheProbe.delta is available after the async with block")
        return metrics_delta(self.before, self.after)


__all__ = [
    "AimdLimiter", "LimiterState", "MetricsAwareModel", "MetricsDelta", "PrefixCacheProbe", "Sample",
    "VllmMetrics", "fetch_metrics", "metrics_delta", "metrics_url", "parse_prometheus",
]
