"""GAIA's answer scorer, written from the benchmark's published rules.

The rules, as stated in the GAIA issue this module implements:

    The path is chosen from the ground truth alone.
    Numeric ground truth (parses as a float): strip ``$``, ``%`` and ``,`` from the answer and
    compare as floats, exactly.
    Otherwise, ground truth containing ``,`` or ``;``: split both on ``,``/``;``, lengths must
    match, compare in order, numeric elements by the number rule, other elements with whitespace
    removed and lowercased (punctuation kept).
    Otherwise a string: remove whitespace, lowercase, delete ASCII punctuation, compare.
    A ``None`` answer is scored as the string "None".

Consequences worth knowing (each one is a test):

=====================  ==============  =======  =================================================
answer                 ground truth    correct  why
=====================  ==============  =======  =================================================
``1,000``              ``1000``        yes      number path strips the separator from the answer
``1000``               ``1,000``       no       that ground truth is a list of two elements
``b, a``               ``a, b``        no       lists compare in order
``3.14159``            ``3.14``        no       floats compare exactly, no tolerance
``17 km``              ``17``          no       units make the answer unparsable as a number
``The Beatles``        ``Beatles``     no       articles are not removed
=====================  ==============  =======  =================================================

One deliberate detail: an answer that does not parse as a number under the number path is simply
wrong. (The reference implementation maps it to ``inf``, which would make it "equal" to a ground
truth of ``inf``; no GAIA ground truth is infinite, so the outcome on real data is identical.)
"""

from __future__ import annotations

import math
import re
import string

_NUMBER_NOISE = str.maketrans("", "", "$%,")
_SEPARATORS = re.compile(r"[,;]")
_WHITESPACE = re.compile(r"\s")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _as_float(text: str) -> float | None:
    """Python's own float parsing, which is what "parses as a float" means in the rules."""
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def _number_matches(answer: str, truth: float) -> bool:
    value = _as_float(answer.translate(_NUMBER_NOISE))
    if value is None or math.isnan(value):
        return False
    return value == truth


def normalize_text(text: str, *, remove_punctuation: bool = True) -> str:
    """Whitespace removed, lowercased and (by default) ASCII punctuation deleted."""
    squeezed = _WHITESPACE.sub("", text).lower()
    return squeezed.translate(_PUNCTUATION) if remove_punctuation else squeezed


def score_answer(answer: str | None, ground_truth: str) -> bool:
    """Whether ``answer`` is correct for ``ground_truth`` under GAIA's exact-match rules."""
    if answer is None:
        answer = "None"
    answer = str(answer)
    ground_truth = str(ground_truth)

    truth_number = _as_float(ground_truth)
    if truth_number is not None:
        return _number_matches(answer, truth_number)

    if _SEPARATORS.search(ground_truth):
        truth_items = _SEPARATORS.split(ground_truth)
        answer_items = _SEPARATORS.split(answer)
        if len(truth_items) != len(answer_items):
            return False
        for got, want in zip(answer_items, truth_items, strict=True):
            want_number = _as_float(want)
            if want_number is not None:
                if not _number_matches(got, want_number):
                    return False
            elif normalize_text(got, remove_punctuation=False) != normalize_text(want, remove_punctuation=False):
                return False
        return True

    return normalize_text(answer) == normalize_text(ground_truth)


def scoring_path(ground_truth: str) -> str:
    """Which rule ``score_answer`` applies to this ground truth: ``number``, ``list`` or ``string``.

    Reports use it to explain a miss ("the ground truth is a list, your answer had 1 element").
    """
    if _as_float(str(ground_truth)) is not None:
        return "number"
    if _SEPARATORS.search(str(ground_truth)):
        return "list"
    return "string"


__all__ = ["normalize_text", "score_answer", "scoring_path"]
