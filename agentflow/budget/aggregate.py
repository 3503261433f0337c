"""Turning S samples into one answer: majority vote, best-of-N by a critic, or an LLM fuse step.

Sampling only pays if the samples are combined well. Three ways ship:

* **Majority vote** over *normalized* answers — "The answer is 1,000." and "1000" are the same
  vote. Normalization extracts a ``FINAL ANSWER:`` line when there is one, lowercases, drops
  articles and punctuation, and canonicalizes numbers. Samples that carry tool calls or
  structured output vote by their canonical JSON instead.
* **Best of N** — a scoring callable (sync or async) or a critic ``ChatModel`` rates each sample;
  the highest wins.
* **LLM fuse** — a model reads all samples and writes one answer combining them.

The model-based methods can fail (a transport error, unparseable scores); they then fall back to
majority vote and say why, so aggregation never aborts a node.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import json_repair
from pydantic import BaseModel, Field

from agentflow.llm.base import ChatModel
from agentflow.llm.types import CallContext, ChatRequest, ChatResponse, Choice, Message, OutputSchema

log = logging.getLogger(__name__)

_FINAL = re.compile(r"(?im)^\s*(?:\*\*)?\s*final\s+answer\s*(?:\*\*)?\s*[:：]\s*(.+?)\s*$")
_ANSWER_IS = re.compile(r"(?i)\bthe\s+(?:final\s+)?answer\s+is\s*[:：]?\s*(.+?)\s*$")
_NUMBER = re.compile(r"^[-+]?\d[\d,]*(?:\.\d+)?$")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s.\-]")
_THOUSANDS = re.compile(r"(\d),(?=\d{3}(?!\d))")


def _canonical_number(token: str) -> str:
    if not _NUMBER.match(token):
        return token
    plain = token.replace(",", "")
    try:
        value = float(plain)
    except ValueError:
        return token
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def extract_final_answer(text: str) -> str:
    """The part of ``text`` that is the answer: the last ``FINAL ANSWER:`` line, else a trailing
    "the answer is X", else the whole text."""
    finals = _FINAL.findall(text)
    if finals:
        return finals[-1]
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if lines:
        m = _ANSWER_IS.search(lines[-1])
        if m:
            return m.group(1)
    return text


def normalize_answer(text: str | None) -> str:
    """Canonical form for voting (see the module docstring)."""
    if not text:
        return ""
    s = unicodedata.normalize("NFKC", extract_final_answer(text))
    s = s.replace("**", "").replace("`", "").strip().lower()
    s = _THOUSANDS.sub(r"\1", s)  # "1,000" -> "1000" before commas become separators
    s = _PUNCT.sub(" ", s)
    # drop articles, unless the answer is nothing but one (multiple choice "A")
    s = _ARTICLES.sub(" ", s) if _ARTICLES.sub(" ", s).strip(" .-") else s
    tokens = [t.strip(".") if _NUMBER.match(t.strip(".")) else t.strip(".-") for t in s.split()]
    tokens = [_canonical_number(t) for t in tokens if t]
    return " ".join(tokens)


def choice_key(choice: Choice, normalize: Callable[[str | None], str] = normalize_answer) -> str:
    """What a sample votes for: its tool calls, else its structured output, else its answer."""
    if choice.tool_calls:
        calls = [{"name": c.name, "arguments": c.arguments if c.arguments is not None else c.raw_arguments}
                 for c in choice.tool_calls]
        return "tool:" + json.dumps(calls, sort_keys=True, ensure_ascii=False)
    if choice.parsed is not None:
        return "json:" + json.dumps(choice.parsed, sort_keys=True, ensure_ascii=False)
    return normalize(choice.text)


class Vote(BaseModel):
    chosen_index: int
    key: str
    counts: dict[str, int]
    #: share of the counted samples that voted for the winner
    agreement: float
    tie: bool = False


def majority_vote(keys: Sequence[str]) -> Vote:
    """Most frequent key; empty keys (blank answers) only count when every key is empty.

    Ties go to the key that appeared first, so the result is deterministic and, on vLLM, favours
    the earliest sample.
    """
    if not keys:
        raise ValueError("majority_vote needs at least one sample")
    counted = [k for k in keys if k] or list(keys)
    counts = Counter(counted)
    top = max(counts.values())
    winners = [k for k in dict.fromkeys(counted) if counts[k] == top]
    key = winners[0]
    return Vote(chosen_index=list(keys).index(key), key=key, counts=dict(counts),
                agreement=top / len(counted), tie=len(winners) > 1)


def vote_texts(texts: Sequence[str | None], normalize: Callable[[str | None], str] = normalize_answer) -> Vote:
    """Majority vote over raw texts, normalized first."""
    return majority_vote([normalize(t) for t in texts])


Scorer = Callable[[str], float | Awaitable[float]]


class Selection(BaseModel):
    chosen_index: int
    scores: list[float | None]
    #: why a score is missing, per index (scorer exceptions, unparseable critic output)
    errors: dict[int, str] = Field(default_factory=dict)


async def best_of_n(candidates: Sequence[str], scorer: Scorer) -> Selection:
    """Highest-scoring candidate; a scorer that raises for one candidate just leaves it unscored.

    Raises ``ValueError`` when no candidate could be scored (callers fall back to voting).
    """
    scores: list[float | None] = []
    errors: dict[int, str] = {}
    for i, text in enumerate(candidates):
        try:
            value = scorer(text)
            if inspect.isawaitable(value):
                value = await value
            scores.append(float(value))
        except Exception as exc:  # a user scorer's bug must not end the run
            scores.append(None)
            errors[i] = f"{type(exc).__name__}: {exc}"
    scored = [(s, i) for i, s in enumerate(scores) if s is not None and math.isfinite(s)]
    if not scored:
        raise ValueError("no candidate could be scored: " + "; ".join(errors.values()))
    best = max(scored, key=lambda si: (si[0], -si[1]))[1]
    return Selection(chosen_index=best, scores=scores, errors=errors)


CRITIC_INSTRUCTIONS = (
    "You are a strict reviewer. Rate how likely each candidate answer is to be a correct and complete "
    "answer to the task, from 0 (certainly wrong) to 1 (certainly right). Judge each candidate on its own "
    'merits. Return {"scores": [one number per candidate, in order]}.'
)
FUSE_INSTRUCTIONS = (
    "Several candidate answers to the same task follow. Write the single best final answer: keep what the "
    "candidates agree on, resolve their disagreements by reasoning about the task, and drop anything "
    "unsupported. Reply with the final answer only."
)


def _task_text(messages: Sequence[Message]) -> str:
    parts = []
    for m in messages:
        if m.role in ("system", "user") and m.content:
            parts.append(f"[{m.role}] {m.content}")
    return "\n".join(parts)[-6000:]


def _candidates_text(candidates: Sequence[str]) -> str:
    return "\n\n".join(f"Candidate {i + 1}:\n{c}" for i, c in enumerate(candidates))


def critic_request(task: Sequence[Message], candidates: Sequence[str], *, max_tokens: int | None = 256,
                   context: CallContext | None = None) -> ChatRequest:
    schema = {
        "type": "object",
        # no count or range keywords: strict structured output rejects them on some servers; the
        # count is checked and the range clamped when parsing
        "properties": {"scores": {"type": "array", "items": {"type": "number"},
                                  "description": f"exactly {len(candidates)} numbers from 0 to 1"}},
        "required": ["scores"],
        "additionalProperties": False,
    }
    ctx = (context or CallContext()).model_copy(update={"role": "critic"})
    return ChatRequest(
        messages=[Message.system(CRITIC_INSTRUCTIONS),
                  Message.user(f"Task:\n{_task_text(task)}\n\n{_candidates_text(candidates)}")],
        output_schema=OutputSchema(name="candidate_scores", json_schema=schema),
        temperature=0.0, max_tokens=max_tokens, context=ctx,
    )


def parse_critic_scores(response: ChatResponse, n: int) -> list[float]:
    """Scores from a critic response; raises ``ValueError`` saying what was wrong."""
    if not response.choices:
        raise ValueError("critic returned no choices")
    choice = response.choices[0]
    data: Any = choice.parsed
    if data is None:
        text = (choice.text or "").strip()
        if not text:
            raise ValueError("critic returned empty content")
        data = json_repair.loads(text)
    raw = data.get("scores") if isinstance(data, dict) else data
    if not isinstance(raw, list) or len(raw) != n:
        raise ValueError(f"critic gave {len(raw) if isinstance(raw, list) else 'no'} scores for {n} candidates")
    out = []
    for v in raw:
        try:
            out.append(min(1.0, max(0.0, float(v))))
        except (TypeError, ValueError):
            raise ValueError(f"critic score {v!r} is not a number") from None
    return out


async def critic_select(critic: ChatModel, task: Sequence[Message], candidates: Sequence[str], *,
                        context: CallContext | None = None) -> tuple[Selection, ChatResponse]:
    """Best of N judged by a critic model in one call; raises ``ModelError``/``ValueError``."""
    response = await critic.complete(critic_request(task, candidates, context=context))
    scores = parse_critic_scores(response, len(candidates))
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return Selection(chosen_index=best, scores=list(scores)), response


def fuse_request(task: Sequence[Message], candidates: Sequence[str], *, max_tokens: int | None = None,
                 context: CallContext | None = None) -> ChatRequest:
    ctx = (context or CallContext()).model_copy(update={"role": "fuse"})
    return ChatRequest(
        messages=[Message.system(FUSE_INSTRUCTIONS),
                  Message.user(f"Task:\n{_task_text(task)}\n\n{_candidates_text(candidates)}")],
        temperature=0.0, max_tokens=max_tokens, context=ctx,
    )


async def llm_fuse(model: ChatModel, task: Sequence[Message], candidates: Sequence[str], *,
                   max_tokens: int | None = None, context: CallContext | None = None) -> tuple[str, ChatResponse]:
    """One fused answer; raises ``ModelError`` or ``ValueError`` (empty output)."""
    response = await model.complete(fuse_request(task, candidates, max_tokens=max_tokens, context=context))
    text = response.text.strip()
    if not text:
        raise ValueError("fuse step returned empty content")
    return text, response


__all__ = [
    "Scorer", "Selection", "Vote", "best_of_n", "choice_key", "critic_request", "critic_select",
    "extract_final_answer", "fuse_request", "llm_fuse", "majority_vote", "normalize_answer",
    "parse_critic_scores", "vote_texts",
]
