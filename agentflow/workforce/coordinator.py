"""The coordinator: which worker handles which node.

Two implementations share one interface. :class:`LLMCoordinator` asks the model once for a batch
of nodes (names, descriptions and tools of the workers in the prompt, ids constrained by the
output schema and validated again after), and falls back to rules for anything it leaves out or
gets wrong. :class:`RuleBasedCoordinator` needs no model: an explicit worker hint wins, then word
overlap between the node and each worker's name, description and tools, then a default worker.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from agentflow.llm.base import ChatModel
from agentflow.llm.types import CallContext, ChatRequest, Message, OutputSchema
from agentflow.runs.events import EventSink, discard
from agentflow.workforce.calls import complete_logged, parse_json_object
from agentflow.workforce.plan import PlanNode

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by do for from has have in into is it its of on or over that the this to "
    "with what which who how when where why use using find get give make task result results".split()
)


class ToolInfo(BaseModel):
    name: str
    description: str = ""
    side_effects: bool = False


class WorkerProfile(BaseModel):
    """What the planner and coordinator know about a worker."""

    name: str
    description: str = ""
    tools: list[ToolInfo] = Field(default_factory=list)
    model: str | None = None

    @property
    def side_effects(self) -> bool:
        return any(t.side_effects for t in self.tools)

    @classmethod
    def of(cls, worker: Any) -> WorkerProfile:
        """Profile of a ``Worker`` (or anything with ``name``, ``description`` and ``tools``)."""
        tools = [ToolInfo(name=t.name, description=(t.description or "").split("\n")[0][:200],
                          side_effects=bool(getattr(t, "side_effects", False)))
                 for t in getattr(worker, "tools", []) or []]
        model = getattr(worker, "model", None)
        return cls(name=worker.name, description=getattr(worker, "description", "") or "", tools=tools,
                   model=getattr(model, "name", None) if model is not None else None)

    def describe(self) -> str:
        tools = ", ".join(t.name for t in self.tools) or "none"
        return f"- {self.name}: {self.description or '(no description)'} [tools: {tools}]"


class Assignment(BaseModel):
    node_id: str
    worker: str
    #: hint, llm, rules, fallback, only
    source: str
    reason: str = ""


@runtime_checkable
class Coordinator(Protocol):
    async def assign(
        self,
        nodes: Sequence[PlanNode],
        workers: Sequence[WorkerProfile],
        *,
        request: str = "",
        exclude: Mapping[str, Collection[str]] | None = None,
        model: ChatModel | None = None,
        call_context: CallContext | None = None,
        sink: EventSink | None = None,
    ) -> dict[str, Assignment]:
        """A worker for every node whose id is in ``nodes`` (never one listed in ``exclude[id]``)."""
        ...


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _candidates(workers: Sequence[WorkerProfile], banned: Collection[str]) -> list[WorkerProfile]:
    return [w for w in workers if w.name not in banned]


class RuleBasedCoordinator:
    """Assignment without a model: hint, then word/tool overlap, then the default worker.

    Args:
        default: the worker used when nothing matches (default: the first worker).
    """

    def __init__(self, default: str | None = None) -> None:
        self.default = default
        self._profile_words: dict[tuple[str, str], tuple[set[str], set[str]]] = {}

    def _vocab(self, w: WorkerProfile) -> tuple[set[str], set[str]]:
        key = (w.name, w.description)
        cached = self._profile_words.get(key)
        if cached is None:
            tool_words: set[str] = set()
            for t in w.tools:
                tool_words |= _words(t.name.replace("_", " ")) | _words(t.description)
            cached = (_words(w.name.replace("_", " ") + " " + w.description), tool_words)
            self._profile_words[key] = cached
        return cached

    def choose(self, node: PlanNode, workers: Sequence[WorkerProfile], banned: Collection[str] = ()) -> Assignment | None:
        pool = _candidates(workers, banned)
        if not pool:
            return None
        if len(workers) == 1:
            return Assignment(node_id=node.id, worker=pool[0].name, source="only")
        if node.worker:
            hint = node.worker.strip().lower()
            for w in pool:
                if w.name.lower() == hint:
                    return Assignment(node_id=node.id, worker=w.name, source="hint")
            for w in pool:
                if hint and (hint in w.name.lower() or w.name.lower() in hint):
                    return Assignment(node_id=node.id, worker=w.name, source="hint", reason=f"hint {node.worker!r}")
        words = _words(" ".join([node.goal, node.expected_output, node.worker or ""]))
        best: tuple[float, WorkerProfile] | None = None
        for w in pool:
            own, tools = self._vocab(w)
            score = len(words & own) + 1.5 * len(words & tools)
            if score > 0 and (best is None or score > best[0]):
                best = (score, w)
        if best is not None:
            return Assignment(node_id=node.id, worker=best[1].name, source="rules",
                              reason=f"keyword/tool overlap score {best[0]:g}")
        default = next((w for w in pool if w.name == self.default), pool[0])
        return Assignment(node_id=node.id, worker=default.name, source="fallback", reason="no keyword overlap")

    async def assign(
        self,
        nodes: Sequence[PlanNode],
        workers: Sequence[WorkerProfile],
        *,
        request: str = "",
        exclude: Mapping[str, Collection[str]] | None = None,
        model: ChatModel | None = None,
        call_context: CallContext | None = None,
        sink: EventSink | None = None,
    ) -> dict[str, Assignment]:
        out: dict[str, Assignment] = {}
        for node in nodes:
            choice = self.choose(node, workers, (exclude or {}).get(node.id, ()))
            if choice is not None:
                out[node.id] = choice
        return out


_SYSTEM = (
    "You are the coordinator of a team of AI workers. Assign every task to the one worker best able to do "
    "it, judging by the workers' descriptions and tools. Reply with JSON only."
)


class LLMCoordinator:
    """One model call assigns a whole batch of nodes; rules cover whatever the reply leaves out.

    Args:
        model: the model that decides.
        fallback: rules used for nodes the model skips, misnames, or when its reply is malformed.
        respect_hints: nodes whose worker hint names a worker exactly are not sent to the model.
    """

    def __init__(self, model: ChatModel | None = None, *, fallback: RuleBasedCoordinator | None = None,
                 respect_hints: bool = True, max_tokens: int | None = None) -> None:
        self.model = model
        self.fallback = fallback or RuleBasedCoordinator()
        self.respect_hints = respect_hints
        self.max_tokens = max_tokens

    @staticmethod
    def schema(node_ids: list[str], worker_names: list[str]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "assignments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "node": {"type": "string", "enum": node_ids},
                            "worker": {"type": "string", "enum": worker_names},
                        },
                        "required": ["node", "worker"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["assignments"],
            "additionalProperties": False,
        }

    async def assign(
        self,
        nodes: Sequence[PlanNode],
        workers: Sequence[WorkerProfile],
        *,
        request: str = "",
        exclude: Mapping[str, Collection[str]] | None = None,
        model: ChatModel | None = None,
        call_context: CallContext | None = None,
        sink: EventSink | None = None,
    ) -> dict[str, Assignment]:
        exclude = exclude or {}
        out: dict[str, Assignment] = {}
        ask: list[PlanNode] = []
        for node in nodes:
            pool = _candidates(workers, exclude.get(node.id, ()))
            if len(pool) <= 1:
                if pool:
                    out[node.id] = Assignment(node_id=node.id, worker=pool[0].name, source="only")
                continue
            if self.respect_hints and node.worker and any(w.name == node.worker for w in pool):
                out[node.id] = Assignment(node_id=node.id, worker=node.worker, source="hint")
                continue
            ask.append(node)
        chosen = model or self.model
        if ask and chosen is not None:
            out.update(await self._ask(chosen, ask, workers, request, exclude, call_context, sink or discard))
        for node in ask:
            if node.id not in out:
                choice = self.fallback.choose(node, workers, exclude.get(node.id, ()))
                if choice is not None:
                    out[node.id] = choice.model_copy(update={"source": "fallback",
                                                             "reason": choice.reason or choice.source})
        return out

    async def _ask(self, model: ChatModel, nodes: list[PlanNode], workers: Sequence[WorkerProfile], request: str,
                   exclude: Mapping[str, Collection[str]], ctx: CallContext | None, sink: EventSink) -> dict[str, Assignment]:
        names = [w.name for w in workers]
        lines = []
        for n in nodes:
            banned = exclude.get(n.id)
            extra = f" (not: {', '.join(sorted(banned))})" if banned else ""
            lines.append(f"- {n.id}: {n.goal}" + (f" [hint: {n.worker}]" if n.worker else "") + extra)
        prompt = (
            (f"Overall request: {request}\n\n" if request else "")
            + "Workers:\n" + "\n".join(w.describe() for w in workers)
            + "\n\nTasks:\n" + "\n".join(lines)
            + '\n\nReply as {"assignments": [{"node": <task id>, "worker": <worker name>}, ...]} with one entry per task.'
        )
        req = ChatRequest(
            messages=[Message.system(_SYSTEM), Message.user(prompt)],
            output_schema=OutputSchema(name="assignments", json_schema=self.schema([n.id for n in nodes], names)),
            temperature=0.0,
            max_tokens=self.max_tokens,
            context=(ctx or CallContext()).model_copy(update={"role": "coordinator"}),
        )
        response, _error = await complete_logged(model, req, sink)
        if response is None:
            return {}
        data, _problem = parse_json_object(response.first)
        items = data.get("assignments") if isinstance(data, dict) else data
        if not isinstance(items, list):
            return {}
        wanted = {n.id for n in nodes}
        out: dict[str, Assignment] = {}
        for item in items:
            if not isinstance(item, dict):
                continue
            node_id = str(item.get("node", item.get("id", ""))).strip()
            worker = str(item.get("worker", "")).strip()
            if node_id not in wanted or node_id in out:
                continue  # invented or duplicate ids are ignored; rules cover the node
            if worker not in names or worker in exclude.get(node_id, ()):
                continue
            out[node_id] = Assignment(node_id=node_id, worker=worker, source="llm",
                                      reason=str(item.get("reason", ""))[:200])
        return out


def describe_workers(workers: Sequence[WorkerProfile]) -> str:
    return "\n".join(w.describe() for w in workers)
