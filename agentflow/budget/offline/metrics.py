"""Search-efficiency metrics: best-so-far curves, their area, and trials to a target.

All curves are *normalized* by the table's optimum within the budget, so that seeds with
different score scales average meaningfully: 1.0 means the search has found the best row.
"""

from __future__ import annotations

from collections.abc import Sequence


def best_so_far(scores: Sequence[float | None], *, floor: float = 0.0) -> list[float]:
    """Running maximum of the scores; rejected trials (``None``) carry the previous best.

    Before the first successful trial the curve sits at ``floor``.
    """
    out: list[float] = []
    best = floor
    seen = False
    for s in scores:
        if s is not None and (not seen or s > best):
            best, seen = s, True
        out.append(best)
    return out


def normalized_curve(scores: Sequence[float | None], optimum: float, length: int) -> list[float]:
    """Best-so-far divided by ``optimum``, padded to ``length`` trials by holding the last value
    (a search that stopped early keeps what it found)."""
    if optimum <= 0:
        raise ValueError("optimum must be positive to normalize")
    curve = [v / optimum for v in best_so_far(scores)]
    if not curve:
        curve = [0.0]
    if len(curve) < length:
        curve += [curve[-1]] * (length - len(curve))
    return curve[:length]


def auc(curve: Sequence[float]) -> float:
    """Mean of a normalized best-so-far curve: 1.0 would be the optimum found at the first trial."""
    return sum(curve) / len(curve) if curve else 0.0


def trials_to(curve: Sequence[float], fraction: float) -> int | None:
    """1-based trial at which a normalized curve first reaches ``fraction`` (None: never)."""
    for n, value in enumerate(curve, start=1):
        if value >= fraction - 1e-12:
            return n
    return None
