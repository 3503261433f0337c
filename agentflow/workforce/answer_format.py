"""Answer-format rules: how the final answer must look, as prompt text plus deterministic cleanup.

A formatter has two halves because models follow format rules only most of the time: the
``instructions`` go into the answer prompt, and ``normalize`` fixes what a model still gets wrong
(a "FINAL ANSWER:" prefix, thousands separators, a stray unit). Benchmarks plug in their own;
:class:`GaiaAnswerFormat` (``agentflow.evals.answer_format.GaiaAnswerRules``) implements GAIA's rules.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable


@runtime_checkable
class AnswerFormatter(Protocol):
    name: str

    def instructions(self) -> str:
        """Format rules, phrased for the answering model."""
        ...

    def normalize(self, answer: str, *, question: str = "") -> str:
        """Deterministic cleanup of the model's answer."""
        ...


_FINAL = re.compile(r"final\s+answer\s*[:：]\s*", re.IGNORECASE)


def strip_final_answer_prefix(text: str) -> str:
    """The text after the last "FINAL ANSWER:" marker (the whole text when there is none)."""
    matches = list(_FINAL.finditer(text))
    return text[matches[-1].end():] if matches else text


class FreeFormAnswer:
    """No format constraints: a complete, direct answer."""

    name = "free"

    def instructions(self) -> str:
        return "Answer the request directly and completely; do not describe how the work was done."

    def normalize(self, answer: str, *, question: str = "") -> str:
        return strip_final_answer_prefix(answer).strip()


def __getattr__(name: str) -> object:
    # GAIA's rules live with the GAIA tooling (agentflow.evals.answer_format); loaded on first use so
    # the workforce does not import the evaluation package.
    if name == "GaiaAnswerFormat":
        from agentflow.evals.answer_format import GaiaAnswerRules

        return GaiaAnswerRules
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
