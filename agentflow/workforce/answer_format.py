"""Answer-format rules: how the final answer must look, as prompt text plus deterministic cleanup.

A formatter has two halves because models follow format rules only most of the time: the
``instructions`` go into the answer prompt, and ``normalize`` fixes what a model still gets wrong
(a "FINAL ANSWER:" prefix, thousands separators, a stray unit). Benchmarks plug in their own;
:class:`GaiaAnswerFormat` implements GAIA's rules.
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
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")


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


_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_CURRENCY = "$€£¥"


class GaiaAnswerFormat:
    """GAIA's answer rules: a number, as few words as possible, or a comma-separated list.

    Numbers carry no thousands separators and no units ($, %, unit words) unless the question asks
    for them; strings avoid articles and abbreviations; lists are comma-separated with the same
    rules per element.
    """

    name = "gaia"

    RULES = (
        "Reply with the final answer only: a number, OR as few words as possible, OR a comma separated list "
        "of numbers and/or strings. For a number, do not use commas as thousands separators and do not add "
        "units such as $ or a percent sign unless the request asks for them. For a string, use no articles "
        "and no abbreviations (e.g. for cities), and write digits in plain text unless asked otherwise. For "
        "a comma separated list, apply these rules to each element."
    )

    def instructions(self) -> str:
        return self.RULES

    def normalize(self, answer: str, *, question: str = "") -> str:
        text = strip_final_answer_prefix(answer).strip()
        text = text.replace("**", "").strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) > 1:
            text = ", ".join(_BULLET.sub("", ln).strip().rstrip(",;") for ln in lines)
        elif lines:
            text = lines[0].strip()
        text = self._unquote(text)
        q = question.lower()
        wants_units = any(k in q for k in ("unit", "percent", "%", "dollar", "$", "currency"))
        if _THOUSANDS.match(text.rstrip(".")):
            return self._number(text, wants_units)
        if ", " in text or ";" in text:
            parts = [self._element(p, wants_units) for p in re.split(r"\s*[;,]\s+|\s*;\s*", text) if p.strip()]
            return ", ".join(parts)
        return self._element(text, wants_units)

    @staticmethod
    def _unquote(text: str) -> str:
        text = text.strip()
        while len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
            text = text[1:-1].strip()
        return text

    def _element(self, text: str, wants_units: bool) -> str:
        text = self._unquote(text)
        if text.endswith(".") and not _NUMBER.match(text):
            text = text[:-1].rstrip()
        return self._number(text, wants_units)

    @staticmethod
    def _number(text: str, wants_units: bool) -> str:
        """Strip separators, currency, percent and a trailing unit word from a lone number."""
        candidate = text.strip().rstrip(".")
        if wants_units:
            return candidate.replace(",", "") if _THOUSANDS.match(candidate) else text
        core = candidate.lstrip(_CURRENCY).strip()
        core = core[:-1].strip() if core.endswith("%") else core
        match = re.match(r"^(-?[\d,]*\d(?:\.\d+)?)(?:\s+[A-Za-z][A-Za-z./²³-]*)?$", core)
        if not match:
            return text
        number = match.group(1)
        if "," in number and not _THOUSANDS.match(number):
            return text  # "1,2" is not a thousands-separated number; leave it alone
        return number.replace(",", "")
