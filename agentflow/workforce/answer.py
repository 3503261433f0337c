"""The answer stage: one synthesis call from the output nodes' results, then format rules.

Kept separate from the workers (as in OWL) because the format an evaluator or a user needs is a
different job from solving the task: the synthesizer sees the request, the results of the plan's
output nodes and the formatter's rules, and nothing else. If its call fails, the run still
answers — with the output node's result, normalized.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from agentflow.llm.base import ChatModel
from agentflow.llm.types import CallContext, ChatRequest, Message
from agentflow.runs.events import EventSink, discard
from agentflow.workforce.answer_format import AnswerFormatter, FreeFormAnswer
from agentflow.workforce.calls import complete_logged
from agentflow.workforce.context import shorten


class AnswerOutcome(BaseModel):
    answer: str
    raw: str = ""
    failed: bool = False
    #: set when the answer did not come from the synthesis call (and why)
    reason: str | None = None


class AnswerStage:
    """Final synthesis with pluggable format rules.

    Args:
        model: the synthesizing model; ``None`` answers with the output results directly.
        formatter: format rules (:class:`FreeFormAnswer` by default, :class:`GaiaAnswerFormat` for GAIA).
        max_result_chars: how much of each result the synthesizer reads.
    """

    def __init__(self, model: ChatModel | None = None, *, formatter: AnswerFormatter | None = None,
                 max_tokens: int | None = None, temperature: float | None = 0.0,
                 max_result_chars: int = 6000) -> None:
        self.model = model
        self.formatter: AnswerFormatter = formatter or FreeFormAnswer()
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_result_chars = max_result_chars

    def messages(self, request: str, results: Sequence[tuple[str, str, str]],
                 missing: Sequence[tuple[str, str, str]] = ()) -> list[Message]:
        system = ("You write the final answer to a request from the results of the tasks that were run for it. "
                  "Base the answer on those results. " + self.formatter.instructions())
        parts = [f"Request:\n{request}", "", "Task results:"]
        for node_id, goal, text in results:
            parts.append(f"## {node_id}: {goal}\n{shorten(text, self.max_result_chars, node_id)}")
        if missing:
            parts += ["", "These tasks failed; their results are missing:"]
            parts += [f"- {node_id}: {goal} ({why})" for node_id, goal, why in missing]
        parts += ["", "Write the final answer."]
        return [Message.system(system), Message.user("\n".join(parts))]

    async def run(
        self,
        *,
        request: str,
        results: Sequence[tuple[str, str, str]],
        missing: Sequence[tuple[str, str, str]] = (),
        model: ChatModel | None = None,
        call_context: CallContext | None = None,
        sink: EventSink | None = None,
    ) -> AnswerOutcome:
        """``results`` and ``missing`` are ``(node_id, goal, text-or-reason)`` triples."""
        fallback_text = "\n\n".join(text for _, _, text in results).strip()
        chosen = model or self.model
        if chosen is None:
            if not results:
                return AnswerOutcome(answer="", failed=True, reason="no task produced a result")
            return AnswerOutcome(answer=self.formatter.normalize(fallback_text, question=request),
                                 raw=fallback_text, reason="no answer model; answered with the output results")
        if not results:
            return AnswerOutcome(answer="", failed=True, reason="no task produced a result to answer from")
        request_obj = ChatRequest(
            messages=self.messages(request, results, missing),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            context=(call_context or CallContext()).model_copy(update={"role": "answer"}),
        )
        response, error = await complete_logged(chosen, request_obj, sink or discard)
        raw = response.text.strip() if response is not None else ""
        if response is None or not raw:
            why = f"answer call failed: {error}" if response is None else "answer model replied with nothing"
            return AnswerOutcome(answer=self.formatter.normalize(fallback_text, question=request),
                                 raw=fallback_text, reason=why + "; answered with the output results")
        return AnswerOutcome(answer=self.formatter.normalize(raw, question=request), raw=raw)
