"""GAIA's final-answer conventions: the rules text given to the answer stage, and a normalizer.

GAIA scores by exact match after light normalization (see ``agentflow.evals.scorer``), so a right
answer in the wrong shape is a wrong answer: ``1,234 km`` fails against ``1234``. Two defences:

* ``GAIA_ANSWER_RULES`` is the instruction the answer stage gives the model, so the model writes
  the answer in GAIA's shape in the first place.
* ``format_gaia_answer`` is a pure function applied to the model's final text afterwards. It is
  conservative: it only removes things the rules forbid unless the question asks for them
  (thousands separators, units and currency symbols after a bare number, "FINAL ANSWER:"
  prefixes, wrapping quotes or markdown, a trailing full stop) and rewrites list separators to
  ", ". It never drops words such as articles, because "The Beatles" vs "Beatles" is a miss in
  both directions and only the model can know which one the question wants.
"""

from __future__ import annotations

import re

GAIA_ANSWER_RULES = """\
Finish with one line of the form
FINAL ANSWER: <answer>
The answer must be one of:
- a number: digits only, no thousands separators (write 1234567, not 1,234,567), no units or
  currency symbols ($, %, km, USD) unless the question explicitly asks for the unit; keep the
  precision or rounding the question asks for;
- a string: as few words as possible, no articles or abbreviations (write the full city name),
  digits written as plain text only if the question asks for it;
- a comma-separated list of numbers and/or strings, each element following the two rules above,
  in the order the question asks for (alphabetical, chronological, ...).
Do not explain the answer on the FINAL ANSWER line."""

_FINAL_MARKER = re.compile(r"final\s+answer\s*[:：]\s*", re.IGNORECASE)
_WRAPPERS = ("**", "__", "`", '"', "'", "“", "”")
#: a number, optionally signed, with optional thousands separators and decimals
_NUMBER = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_CURRENCY = r"(?:[$€£¥]|USD|EUR|GBP)"
#: a number with optional currency before it and optional trailing text (checked by ``_is_unit``)
_QUANTITY = re.compile(rf"^\s*(?:{_CURRENCY}\s*)?(?P<number>{_NUMBER})\s*(?P<unit>\S.*?)?\s*$")
#: capitalised unit symbols; lowercase words are accepted as units by shape alone
_UPPER_UNITS = frozenset(
    "USD EUR GBP JPY CHF K C F KB MB GB TB Hz kHz MHz GHz W kW MW GW V mV A mA J kJ MJ N Pa kPa MPa "
    "L mL ms AU BCE CE AD BC".split()
)


def _is_unit(unit: str) -> bool:
    """Whether the text after a number is a unit the rules tell us to drop.

    Lowercase words ("km", "square metres", "people") and known symbols qualify; capitalised
    words do not, so an address such as "12 Main Street" is left alone.
    """
    if unit in {"%", "°", "°C", "°F", "‰"}:
        return True
    words = unit.split()
    if not words or len(words) > 3:
        return False
    for word in words:
        core = word.rstrip(".")
        if core in _UPPER_UNITS:
            continue
        if not re.fullmatch(r"[a-zµ][a-zµ/²³\-]*", core):
            return False
    return True


#: questions that ask for the unit (or the symbol) to be written out
_UNIT_REQUESTED = re.compile(
    r"\b(?:include|including|with|keep|give|state|write)\b[^.?!]{0,40}\b(?:unit|units|symbol|currency)\b"
    r"|\bunit\s+(?:of\s+measure\s+)?included\b"
    r"|\bpercent(?:age)?\s+(?:sign|symbol)\b|\bin\s+percent\b|\bwhat\s+percent\b",
    re.IGNORECASE,
)
_LIST_SPLIT = re.compile(r"\s*[;,]\s*")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def extract_final_answer(text: str | None) -> str:
    """The text after the last ``FINAL ANSWER:`` marker (or the whole text), first line only.

    Models often reason first and conclude on the marker line; anything after that line is
    commentary the scorer would count as part of the answer.
    """
    if not text:
        return ""
    matches = list(_FINAL_MARKER.finditer(text))
    if matches:
        text = text[matches[-1].end():]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) > 1 and all(_BULLET.match(ln) for ln in lines):
        # an answer written as a bulleted list is a list answer: join its items
        return ", ".join(_BULLET.sub("", ln).strip().rstrip(",;") for ln in lines)
    return lines[0] if lines else ""


def _unwrap(text: str) -> str:
    changed = True
    while changed and text:
        changed = False
        for w in _WRAPPERS:
            if len(text) >= 2 * len(w) and text.startswith(w) and text.endswith(w):
                text = text[len(w):-len(w)].strip()
                changed = True
        if text.endswith(".") and not re.search(r"\d\.$", text) and text.count(".") == 1:
            # a sentence-final full stop; keep dots that belong to abbreviations ("St. Louis")
            text = text[:-1].rstrip()
            changed = True
    return text


def _plain_number(item: str, *, keep_unit: bool) -> str:
    match = _QUANTITY.match(item)
    if match is None:
        return item
    unit = (match.group("unit") or "").strip()
    if unit and not _is_unit(unit):
        return item  # a number followed by words that are not a unit: leave the text alone
    if keep_unit and unit:
        return item.strip()
    return match.group("number").replace(",", "").replace("−", "-")


def format_gaia_answer(answer: str | None, question: str | None = None) -> str:
    """Rewrite a model's final answer into GAIA's shape (see module docstring for what changes).

    ``question`` lets the formatter keep units when the question asks for them.
    """
    text = _unwrap(extract_final_answer(answer))
    if not text:
        return ""
    keep_unit = bool(question and _UNIT_REQUESTED.search(question))

    whole = _plain_number(text, keep_unit=keep_unit)
    if whole != text:
        return whole
    if "," in text or ";" in text:
        items = [_unwrap(i) for i in _LIST_SPLIT.split(text) if i.strip()]
        return ", ".join(_plain_number(i, keep_unit=keep_unit) for i in items)
    return text





class GaiaAnswerRules:
    """GAIA's rules as an answer formatter: ``instructions()`` for the answer prompt, ``normalize()``
    for cleanup. It has the shape of the workforce's ``AnswerFormatter`` protocol (``name``,
    ``instructions()``, ``normalize(answer, *, question="")``), so it plugs into the answer stage."""

    name = "gaia"

    def instructions(self) -> str:
        return GAIA_ANSWER_RULES

    def normalize(self, answer: str, *, question: str = "") -> str:
        return format_gaia_answer(answer, question or None)

__all__ = ["GAIA_ANSWER_RULES", "GaiaAnswerRules", "extract_final_answer", "format_gaia_answer"]
