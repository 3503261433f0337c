"""What the LLM-driven strategies share: the problem statement, the output schema, the call, and
the validation that turns whatever the model wrote into feasible configurations.

A model's output is never trusted and never fatal. Each proposed candidate is parsed (structured
output when the server honours the schema, ``json_repair`` otherwise), then checked: an unknown
model or a missing subtask drops the candidate, a sample count off the ladder is snapped to the
nearest allowed one, an over-budget candidate is repaired by lowering sample counts or dropped
when even that fails. Every repair and every drop is recorded with its reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import json_repair

from agentflow.budget.search import Trial
from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice
from agentflow.errors import ModelError
from agentflow.llm.base import ChatModel
from agentflow.llm.types import CallContext, ChatRequest, ChatResponse, Message, OutputSchema

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are an expert in test-time compute allocation for multi-stage LLM pipelines. You choose, for "
    "every subtask, which model runs it and how many samples it draws, so that the end-to-end score is "
    "as high as possible while the total cost stays within the budget. Answer with JSON only."
)


def cost_formula(space: AllocationSpace) -> str:
    unit = space.cost_model.unit
    if unit == "flops":
        return ("cost(subtask) = (params / 3e9) * (prompt_tokens + samples * tokens_per_sample) / 64 - 2 "
                "(never below 0); the prompt is processed once however many samples are drawn; the total "
                "cost is the sum over subtasks")
    if unit == "tokens":
        return "cost(subtask) = prompt_tokens + samples * tokens_per_sample; the total is the sum over subtasks"
    return ("cost(subtask) = prompt_tokens * input_price + samples * tokens_per_sample * output_price "
            "(dollars per token); the total is the sum over subtasks")


def describe_problem(space: AllocationSpace, task_description: str = "") -> str:
    """The search problem in words and numbers, including each choice's cost so the model need
    not do arithmetic to stay within the budget."""
    lines = []
    if task_description:
        lines.append(f"Task: {task_description}")
    lines.append(f"Total budget: {space.budget:.4g} ({space.cost_model.unit}). {cost_formula(space)}.")
    lines.append("Subtasks, in pipeline order (each one's output feeds the next):")
    for i, s in enumerate(space.subtasks):
        desc = f" - {s.description}" if s.description else ""
        lines.append(f"* {s.name}{desc}; prompt_tokens={s.prompt_tokens}, tokens_per_sample={s.tokens_per_sample}; "
                     f"allowed samples: {space.levels(i)}")
        for m in space.models_by_size(i):
            one = space.choice_cost(i, SubtaskChoice(model=m, samples=space.levels(i)[0]))
            top = space.levels(i)[-1]
            most = space.choice_cost(i, SubtaskChoice(model=m, samples=top))
            lines.append(f"    model {m} ({space.registry.get(m).params / 1e9:.3g}B params): "
                         f"1 sample costs {one:.4g}, {top} samples cost {most:.4g}")
    return "\n".join(lines)


def format_config(space: AllocationSpace, config: Config) -> str:
    return json.dumps(space.config_to_dict(config), separators=(",", ":"))


def format_history(space: AllocationSpace, history: Sequence[Trial], *, objective: str = "score",
                   limit: int = 60) -> str:
    """Evaluated configurations, best first when the history is long (the model needs the best
    ones and the recent ones more than the whole record)."""
    rows = [t for t in history if t.config is not None]
    if len(rows) > limit:
        best = sorted(rows, key=lambda t: -(t.score if t.score is not None else -1.0))[: limit // 2]
        recent = rows[-(limit - len(best)):]
        keep = {id(t) for t in best} | {id(t) for t in recent}
        rows = [t for t in rows if id(t) in keep]
    if not rows:
        return "(no evaluations yet)"
    out = []
    for t in rows:
        score = "rejected" if t.score is None else f"{t.score:.4f}"
        out.append(f"{format_config(space, t.config)} -> {objective}={score}, cost={t.cost:.4g}")  # type: ignore[arg-type]
    return "\n".join(out)


def candidates_schema(space: AllocationSpace, max_items: int) -> dict[str, Any]:
    """JSON schema of ``{"candidates": [{subtask: {"model", "samples"}}]}``, with enums, so a
    server with structured output can only produce well-formed candidates.

    It stays inside the subset every strict structured-output implementation accepts (all
    properties required, no additional properties, no length or count limits); the count is
    stated in the description and enforced after parsing (``take_candidates``)."""
    props = {
        s.name: {
            "type": "object",
            "properties": {
                "model": {"type": "string", "enum": list(s.models)},
                "samples": {"type": "integer", "enum": space.levels(i)},
            },
            "required": ["model", "samples"],
            "additionalProperties": False,
        }
        for i, s in enumerate(space.subtasks)
    }
    return {
        "type": "object",
        "properties": {
            "candidates": {
                "type": "array",
                "description": f"at most {max_items} configurations",
                "items": {"type": "object", "properties": props, "required": list(props),
                          "additionalProperties": False},
            }
        },
        "required": ["candidates"],
        "additionalProperties": False,
    }


INSIGHTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"insights": {"type": "array", "items": {"type": "string"}}},
    "required": ["insights"],
    "additionalProperties": False,
}


@dataclass
class LLMReply:
    """A parsed model answer, or why there is none."""

    data: Any = None
    text: str = ""
    error: str | None = None
    repaired: bool = False


@dataclass
class Validated:
    configs: list[Config] = field(default_factory=list)
    #: human-readable reasons for each dropped candidate
    dropped: list[str] = field(default_factory=list)
    #: human-readable notes on each repaired candidate
    repaired: list[str] = field(default_factory=list)


async def ask_json(model: ChatModel, prompt: str, schema: dict[str, Any], schema_name: str, *,
                   temperature: float | None, max_tokens: int | None, seed: int | None = None,
                   role: str = "budget_search") -> LLMReply:
    """One structured-output call; transport failures and unparseable output become ``error``."""
    request = ChatRequest(
        messages=[Message.system(SYSTEM_PROMPT), Message.user(prompt)],
        output_schema=OutputSchema(name=schema_name, json_schema=schema, strict=True),
        temperature=temperature, max_tokens=max_tokens, seed=seed,
        context=CallContext(role=role),
    )
    try:
        response: ChatResponse = await model.complete(request)
    except ModelError as exc:
        log.warning("budget search model call failed: %s", exc)
        return LLMReply(error=f"model call failed: {type(exc).__name__}: {exc.message}")
    if not response.choices:
        return LLMReply(error="the model returned no choices")
    choice = response.choices[0]
    text = choice.text or ""
    if choice.parsed is not None:
        return LLMReply(data=choice.parsed, text=text)
    if not text.strip():
        return LLMReply(text=text, error="the model returned empty content")
    try:
        data = json_repair.loads(text)
    except Exception as exc:  # json_repair is lenient, but never let a parser bug end a search
        return LLMReply(text=text, error=f"unparseable output: {exc!r}")
    if data in ("", None, [], {}):
        return LLMReply(text=text, error="no JSON found in the output")
    return LLMReply(data=data, text=text, repaired=True)


def extract_candidates(data: Any) -> list[Any]:
    """The candidate list from ``{"candidates": [...]}``, a bare list, or one candidate object."""
    if isinstance(data, Mapping):
        for key in ("candidates", "configurations", "configs", "proposals"):
            value = data.get(key)
            if isinstance(value, list):
                return value
        return [data]
    if isinstance(data, list):
        return data
    return []


def take_candidates(data: Any, limit: int) -> tuple[list[Any], int]:
    """At most ``limit`` raw candidates from a reply, and how many more it held."""
    found = extract_candidates(data)
    return found[:limit], max(0, len(found) - limit)


def _match_model(name: Any, models: Sequence[str]) -> str | None:
    if not isinstance(name, str):
        return None
    if name in models:
        return name
    lowered = name.strip().lower()
    for m in models:
        if m.lower() == lowered:
            return m
    tail = [m for m in models if m.lower().endswith(lowered) or lowered.endswith(m.lower())]
    return tail[0] if len(tail) == 1 else None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return None
    return None


def validate_candidates(space: AllocationSpace, raw: Sequence[Any]) -> Validated:
    """Turn raw candidates into feasible configurations (see the module docstring)."""
    out = Validated()
    for n, cand in enumerate(raw, start=1):
        label = f"candidate {n}"
        entries: list[Any]
        if isinstance(cand, Mapping):
            entries = [cand.get(s.name) for s in space.subtasks]
        elif isinstance(cand, list) and len(cand) == len(space):
            entries = list(cand)
        else:
            out.dropped.append(f"{label}: not an object keyed by subtask")
            continue
        picks: list[SubtaskChoice] = []
        notes: list[str] = []
        for i, (s, entry) in enumerate(zip(space.subtasks, entries, strict=True)):
            if not isinstance(entry, Mapping):
                out.dropped.append(f"{label}: subtask {s.name!r} missing")
                break
            model = _match_model(entry.get("model"), s.models)
            if model is None:
                out.dropped.append(f"{label}: {s.name}: model {entry.get('model')!r} is not a candidate "
                                   f"({', '.join(s.models)})")
                break
            samples = _as_int(entry.get("samples"))
            if samples is None or samples < 1:
                out.dropped.append(f"{label}: {s.name}: samples {entry.get('samples')!r} is not a positive integer")
                break
            snapped = space.snap(i, samples)
            if snapped != samples:
                notes.append(f"{s.name}: {samples} samples snapped to {snapped}")
            picks.append(SubtaskChoice(model=model, samples=snapped))
        else:
            config = tuple(picks)
            cost = space.cost(config)
            if cost > space.budget + 1e-9:
                fixed = space.repair(config)
                if fixed is None:
                    out.dropped.append(f"{label}: cost {cost:.4g} exceeds the budget {space.budget:.4g} "
                                       "even with one sample per subtask")
                    continue
                notes.append(f"cost {cost:.4g} over the budget {space.budget:.4g}; samples lowered to "
                             f"{space.format_config(fixed)}")
                config = fixed
            if notes:
                out.repaired.append(f"{label}: " + "; ".join(notes))
            out.configs.append(config)
    return out
