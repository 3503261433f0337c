"""GAIA's scoring rules, as an edge-case table (see agentflow/evals/scorer.py for the rules)."""

from __future__ import annotations

import pytest

from agentflow.evals.scorer import score_answer, scoring_path

CASES = [
    # answer, ground truth, correct, why
    ("1,000", "1000", True, "number path strips separators from the answer"),
    ("1000", "1,000", False, "that ground truth is a two-element list"),
    ("b, a", "a, b", False, "lists compare in order"),
    ("a, b", "a, b", True, "same list"),
    ("3.14159", "3.14", False, "floats compare exactly"),
    ("17 km", "17", False, "a unit makes the answer unparsable"),
    ("The Beatles", "Beatles", False, "articles are not removed"),
    ("$1,234.50", "1234.5", True, "$ and , are stripped, 1234.50 == 1234.5"),
    ("50%", "50", True, "% is stripped"),
    (" 42 ", "42", True, "float() accepts surrounding whitespace"),
    ("42.0", "42", True, "compared as floats"),
    ("4.2e1", "42", True, "any float syntax parses"),
    ("forty-two", "42", False, "words are not numbers"),
    ("  st. LOUIS ", "Saint Louis", False, "abbreviations are not expanded"),
    ("St Louis!", "st. louis", True, "string path removes whitespace, case and punctuation"),
    ("New York", "newyork", True, "string path removes inner whitespace too"),
    ("a;b", "a, b", True, "both separators split"),
    ("A, B", "a, b", True, "list string elements are lowercased"),
    ("a., b", "a, b", False, "list string elements keep punctuation"),
    ("1,000, 2", "1000, 2", False, "the answer's thousands separator splits it into three elements"),
    ("$5, 7%", "5, 7", True, "numeric list elements use the number rule"),
    ("5, x", "5, 7", False, "a non-number where a number is expected"),
    ("a, b, c", "a, b", False, "lengths must match"),
    (None, "None", True, "a None answer is the string 'None'"),
    (None, "0", False, "a None answer is not a number"),
    ("", "0", False, "empty is not zero"),
    ("nan", "nan", False, "NaN never equals anything"),
    ("-5", "-5", True, "negative numbers"),
    ("Paris", "Paris", True, "identical strings"),
]


@pytest.mark.parametrize(("answer", "truth", "expected", "why"), CASES, ids=[c[3] for c in CASES])
def test_edge_cases(answer, truth, expected, why):
    assert score_answer(answer, truth) is expected, why


@pytest.mark.parametrize(("truth", "path"), [("17", "number"), ("1e3", "number"), ("1,000", "list"),
                                              ("a; b", "list"), ("Paris", "string"), ("3 km", "string")])
def test_path_is_chosen_from_the_ground_truth_alone(truth, path):
    assert scoring_path(truth) == path


def test_non_string_answers_are_stringified():
    assert score_answer(17, "17") is True  # type: ignore[arg-type]
    assert score_answer(17.5, "17.5") is True  # type: ignore[arg-type]
