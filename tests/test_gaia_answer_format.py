"""GAIA final-answer formatting: the shape GAIA's scorer accepts, without changing meaning."""

from __future__ import annotations

import pytest

from agentflow.evals.answer_format import (
    GAIA_ANSWER_RULES,
    GaiaAnswerRules,
    extract_final_answer,
    format_gaia_answer,
)
from agentflow.evals.scorer import score_answer


@pytest.mark.parametrize(("raw", "question", "expected"), [
    ("I computed it.\nFINAL ANSWER: 1,234 km\nHope this helps", None, "1234"),
    ("final answer: $1,000", None, "1000"),
    ("**Paris**.", None, "Paris"),
    ('"Oslo"', None, "Oslo"),
    ("b; a", None, "b, a"),
    ("17 km, 3 m", None, "17, 3"),
    ("50%", None, "50"),
    ("-1,000.5", None, "-1000.5"),
    ("12 Main Street", None, "12 Main Street"),
    ("St. Louis", None, "St. Louis"),
    ("3.5 kg", "What is the mass? Include the unit in your answer.", "3.5 kg"),
    ("3.5 kg", "What is the mass in kg?", "3.5"),
    ("", None, ""),
    (None, None, ""),
])
def test_format(raw, question, expected):
    assert format_gaia_answer(raw, question) == expected


def test_formatting_turns_scorer_misses_into_hits():
    assert not score_answer("1,234 km", "1234")
    assert score_answer(format_gaia_answer("FINAL ANSWER: 1,234 km"), "1234")
    assert score_answer(format_gaia_answer("Alder; Birch; Cedar"), "Alder, Birch, Cedar")


def test_extract_takes_the_last_marker_and_first_line():
    assert extract_final_answer("FINAL ANSWER: draft\nmore thought\nFINAL ANSWER: 7\nbye") == "7"
    assert extract_final_answer("just text") == "just text"


def test_rules_object_follows_the_answer_formatter_protocol():
    rules = GaiaAnswerRules()
    assert rules.name == "gaia"
    assert "FINAL ANSWER" in rules.instructions() and rules.instructions() == GAIA_ANSWER_RULES
    assert rules.normalize("FINAL ANSWER: 2,000 people", question="How many?") == "2000"
