"""The critic (CLEA's evaluator): does a node's result meet its acceptance criteria?

A verdict carries a probability of success. When the backend returns token logprobs, the
probability comes from the verdict token itself (``P(yes) / (P(yes) + P(no))`` when both are among
the top alternatives) — a calibrated signal that costs nothing extra. Otherwise the critic's own
verbalized score is used. The run compares it with the threshold ``tau``.

A critic must never be the reason a run dies: a malformed reply or a failed call yields the
configurable default verdict, marked ``malformed`` so the log shows what happened.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from agentflow.llm.base import ChatModel
from agentflow.llm.types import CallContext, ChatRequest, Choice, Message, OutputSchema
from agentflow.runs.events import EventSink, discard
from agentflow.workforce.calls import complete_logged, parse_json_object
from agentflow.workforce.context import shorten
from agentflow.workforce.coordinator import WorkerProfile
from agentflow.workforce.plan import PlanNode

VerdictSource = Literal["logprobs", "verbalized", "default", "rule"]

_YES = {"yes", "pass", "passed", "true", "accept", "accepted", "ok", "correct", "feasible"}
_NO = {"no", "fail", "failed", "false", "reject", "rejected", "incorrect", "infeasible"}
_ALNUM = re.compile(r"[^a-z]")


class Verdict(BaseModel):
    passed: bool
    #: probability that the result is correct (check) or the step can be done safely (feasibility)
    probability: float
    feedback: str = ""
    source: VerdictSource = "verbalized"
    #: the critic's reply was unusable and ``passed`` is the configured default
    malformed: bool = False
    raw: str | None = None


@runtime_checkable
class Critic(Protocol):
    threshold: float

    async def check(self, *, request: str, node: PlanNode, output: str, context: str | None = None,
                    model: ChatModel | None = None, call_context: CallContext | None = None,
                    sink: EventSink | None = None) -> Verdict:
        """Judge a finished node's result."""
        ...

    async def feasibility(self, *, request: str, node: PlanNode, worker: WorkerProfile | None,
                          context: str | None = None, model: ChatModel | None = None,
                          call_context: CallContext | None = None, sink: EventSink | None = None) -> Verdict:
        """Judge, before it runs, whether a side-effecting node can be done safely."""
        ...


def verdict_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["yes", "no"]},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "feedback": {"type": "string"},
        },
        "required": ["verdict", "score", "feedback"],
        "additionalProperties": False,
    }


def _norm(token: str) -> str:
    return _ALNUM.sub("", token.lower())


def probability_from_logprobs(choice: Choice) -> float | None:
    """P(yes) from the logprobs of the verdict token, or None when the backend gave none."""
    if not choice.logprobs:
        return None
    seen_key = False
    for tok in choice.logprobs:
        word = _norm(tok.token)
        if "verdict" in word:
            seen_key = True
            continue
        if not seen_key or word not in ("yes", "no"):
            continue
        p_tok = math.exp(tok.logprob)
        alts: dict[str, float] = {}
        for alt, lp in tok.top.items():
            key = _norm(alt)
            if key in ("yes", "no"):
                alts[key] = max(alts.get(key, 0.0), math.exp(lp))
        alts[word] = max(alts.get(word, 0.0), p_tok)
        if "yes" in alts and "no" in alts and alts["yes"] + alts["no"] > 0:
            return alts["yes"] / (alts["yes"] + alts["no"])
        return p_tok if word == "yes" else 1.0 - p_tok
    return None


class LLMCritic:
    """A model-backed critic.

    Args:
        model: the judging model (often a small one).
        threshold: ``tau``; a result passes when its success probability is at least this.
        on_malformed: the verdict used when the critic's reply is unusable or its call fails.
        use_logprobs: ask for token logprobs and prefer them over the verbalized score.
        max_output_chars: how much of the result the critic reads (head and tail beyond that).
    """

    def __init__(self, model: ChatModel | None = None, *, threshold: float = 0.5,
                 on_malformed: Literal["pass", "fail"] = "pass", use_logprobs: bool = True,
                 max_output_chars: int = 6000, max_context_chars: int = 3000,
                 max_tokens: int | None = 400, temperature: float | None = 0.0) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {threshold}")
        self.model = model
        self.threshold = threshold
        self.on_malformed = on_malformed
        self.use_logprobs = use_logprobs
        self.max_output_chars = max_output_chars
        self.max_context_chars = max_context_chars
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def check(self, *, request: str, node: PlanNode, output: str, context: str | None = None,
                    model: ChatModel | None = None, call_context: CallContext | None = None,
                    sink: EventSink | None = None) -> Verdict:
        system = (
            "You are a strict reviewer. Decide whether the result achieves the task and meets its acceptance "
            "criteria. Judge the result; do not redo the work. Reply with JSON: `verdict` \"yes\" or \"no\"; "
            "`score` the probability (0 to 1) that the result is correct and complete; `feedback` what is "
            "wrong and how to fix it (empty when nothing is)."
        )
        parts = [f"Overall request: {request}", f"Task: {node.goal}"]
        if node.expected_output:
            parts.append(f"Expected output: {node.expected_output}")
        if node.acceptance_criteria:
            parts.append(f"Acceptance criteria: {node.acceptance_criteria}")
        if context:
            parts.append("Inputs the task had:\n" + shorten(context, self.max_context_chars, "inputs"))
        parts.append("Result:\n" + (shorten(output, self.max_output_chars, node.id) or "(empty)"))
        return await self._judge(system, "\n\n".join(parts), model, call_context, sink)

    async def feasibility(self, *, request: str, node: PlanNode, worker: WorkerProfile | None,
                          context: str | None = None, model: ChatModel | None = None,
                          call_context: CallContext | None = None, sink: EventSink | None = None) -> Verdict:
        system = (
            "You review a step before it runs; the step has side effects that cannot be undone. Decide whether "
            "it is feasible and safe to perform as stated, with this worker's tools and these inputs. Reply "
            "with JSON: `verdict` \"yes\" or \"no\"; `score` the probability (0 to 1) that running it now is "
            "right; `feedback` what must change otherwise."
        )
        parts = [f"Overall request: {request}", f"Step: {node.goal}"]
        if worker is not None:
            parts.append("Worker:\n" + worker.describe())
        if context:
            parts.append("Inputs:\n" + shorten(context, self.max_context_chars, "inputs"))
        return await self._judge(system, "\n\n".join(parts), model, call_context, sink)

    def _default(self, why: str, raw: str | None) -> Verdict:
        passed = self.on_malformed == "pass"
        return Verdict(passed=passed, probability=self.threshold if passed else 0.0,
                       feedback=f"critic gave no usable verdict ({why})", source="default", malformed=True,
                       raw=raw)

    async def _judge(self, system: str, prompt: str, model: ChatModel | None, ctx: CallContext | None,
                     sink: EventSink | None) -> Verdict:
        chosen = model or self.model
        if chosen is None:
            return self._default("the critic has no model", None)
        request = ChatRequest(
            messages=[Message.system(system), Message.user(prompt)],
            output_schema=OutputSchema(name="verdict", json_schema=verdict_schema()),
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            logprobs=self.use_logprobs,
            top_logprobs=5 if self.use_logprobs else None,
            context=(ctx or CallContext()).model_copy(update={"role": "critic"}),
        )
        response, error = await complete_logged(chosen, request, sink or discard)
        if response is None:
            return self._default(f"call failed: {error}", None)
        return self.interpret(response.first)

    def interpret(self, choice: Choice) -> Verdict:
        """Turn a critic reply into a verdict; unusable replies give the default verdict."""
        raw = choice.text
        data, problem = parse_json_object(choice)
        verdict: str | None = None
        score: float | None = None
        feedback = ""
        malformed = False
        if isinstance(data, dict):
            verdict = self._verdict_word(data.get("verdict", data.get("passed", data.get("ok"))))
            score = self._score(data.get("score", data.get("probability", data.get("confidence"))))
            feedback = str(data.get("feedback") or data.get("reason") or "")[:2000]
            if verdict is None and score is not None:
                verdict = "yes" if score >= self.threshold else "no"
                malformed = True
        if verdict is None:
            text = (raw or "").strip()
            first = _norm(text.split(None, 1)[0]) if text else ""
            if first in ("yes", "no"):  # prose like "Yes, the result is right." — usable, but noted
                verdict, malformed = first, True
                feedback = feedback or text[:2000]
            else:
                return self._default(problem or "no verdict in the reply", raw)
        probability: float | None = None
        source: VerdictSource = "verbalized"
        if self.use_logprobs:
            probability = probability_from_logprobs(choice)
            if probability is not None:
                source = "logprobs"
        if probability is None:
            probability = score if score is not None else (1.0 if verdict == "yes" else 0.0)
        passed = probability >= self.threshold
        return Verdict(passed=passed, probability=round(probability, 6), feedback=feedback, source=source,
                       malformed=malformed, raw=raw if malformed else None)

    @staticmethod
    def _verdict_word(value: Any) -> str | None:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, str):
            word = _norm(value.strip().split(None, 1)[0]) if value.strip() else ""
            if word in _YES:
                return "yes"
            if word in _NO:
                return "no"
        return None

    @staticmethod
    def _score(value: Any) -> float | None:
        if isinstance(value, bool) or value is None:
            return None
        try:
            x = float(value)
        except (TypeError, ValueError):
            return None
        if math.isnan(x):
            return None
        if 1.0 < x <= 100.0:
            x /= 100.0  # a percentage
        return min(1.0, max(0.0, x))
