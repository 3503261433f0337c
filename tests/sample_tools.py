"""Small tools shared by several test modules (importable because pytest puts ``tests/`` on the path).

A worker test usually needs one trivial, deterministic tool whose result it can check; keeping it
here means every test that scripts "call add, then answer" exercises the same schema.
"""

from __future__ import annotations

from agentflow.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: first addend
        b: second addend
    """
    return a + b
