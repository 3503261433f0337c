"""Split long text into parts a model can read one at a time.

Parts end on paragraph or line boundaries where possible, so a table row or a sentence is not
cut in half; a single over-long line is cut hard.
"""

from __future__ import annotations


def chunk_text(text: str, size: int) -> list[str]:
    """Consecutive parts of at most ``size`` characters whose concatenation is ``text``."""
    if size <= 0:
        raise ValueError("chunk size must be positive")
    if len(text) <= size:
        return [text]
    parts: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            window = text[start:end]
            # prefer a paragraph break in the second half of the window, then a line break, then a space
            for sep in ("\n\n", "\n", " "):
                cut = window.rfind(sep)
                if cut >= size // 2:
                    end = start + cut + len(sep)
                    break
        parts.append(text[start:end])
        start = end
    return parts


def cap_text(text: str, max_chars: int, *, what: str = "text") -> str:
    """``text`` cut at ``max_chars`` with a note saying how much was left out."""
    if len(text) <= max_chars:
        return text
    dropped = len(text) - max_chars
    return text[:max_chars] + f"\n[... {what} cut here: {dropped:,} more characters not shown]"
