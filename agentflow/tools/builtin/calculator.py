"""The ``calculator`` tool: exact, safe arithmetic for models that are bad at it.

Expressions are parsed with ``ast`` and evaluated by walking a whitelist of node types: no
``eval``, no names other than a fixed table of math functions and constants, no attribute access,
no subscripts, no comprehensions. Integers stay exact (Python big ints); ``/`` between exact
numbers gives an exact fraction (shown as a decimal plus the exact value when it is not whole),
so ``10**30 / 7`` does not silently lose digits. Floats appear only when an operand is a float or
a function such as ``sqrt`` needs one.

Results are bounded (``MAX_RESULT_BITS``) and the bound is checked *before* computing a power or
factorial, so ``9**9**9`` is refused instantly instead of hanging the process.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from fractions import Fraction
from typing import Annotated, Any

from pydantic import Field

from agentflow.tools.base import Tool
from agentflow.tools.result import ToolFailure

#: largest exact result allowed (about 30,000 decimal digits)
MAX_RESULT_BITS = 100_000
MAX_EXPRESSION_CHARS = 2000
#: integers with more digits are shown in scientific notation
MAX_SHOWN_DIGITS = 1000
#: fractions whose numerator or denominator has more digits are shown as a decimal only
MAX_EXACT_FRACTION_DIGITS = 60

Number = int | Fraction | float


def _bits(x: Number) -> int:
    if isinstance(x, int):
        return x.bit_length()
    if isinstance(x, Fraction):
        return max(x.numerator.bit_length(), x.denominator.bit_length())
    return 0


def _too_large() -> ToolFailure:
    return ToolFailure(
        f"The result is too large (more than {MAX_RESULT_BITS:,} bits, about "
        f"{int(MAX_RESULT_BITS * math.log10(2)):,} digits). Use floats (e.g. 2.0**n) or logarithms instead.",
        kind="validation",
    )


def _check_size(x: Number) -> Number:
    if _bits(x) > MAX_RESULT_BITS:
        raise _too_large()
    return x


def _power(base: Number, exp: Number) -> Number:
    if isinstance(exp, int) and isinstance(base, (int, Fraction)):
        b = abs(base) if isinstance(base, int) else max(abs(base.numerator), base.denominator)
        if b > 1 and abs(exp) * math.log2(b) > MAX_RESULT_BITS:
            raise ToolFailure(
                f"{_show(base)} ** {exp} would have about {int(abs(exp) * math.log10(b)):,} digits, more than "
                f"this calculator allows. Use a float base (e.g. {float(base)!r} ** {exp}) or logarithms.",
                kind="validation",
            )
        if exp < 0:
            if base == 0:
                raise ZeroDivisionError("0 cannot be raised to a negative power")
            return Fraction(1) / (Fraction(base) ** -exp)
        return base**exp
    result = float(base) ** float(exp)
    if isinstance(result, complex):
        raise ToolFailure(f"{_show(base)} ** {_show(exp)} is not a real number.", kind="validation")
    return result


def _divide(a: Number, b: Number) -> Number:
    if b == 0:
        raise ZeroDivisionError("division by zero")
    if isinstance(a, float) or isinstance(b, float):
        return a / b
    q = Fraction(a) / Fraction(b)
    return q.numerator if q.denominator == 1 else q


def _exact(fn: Callable[..., int], limit: int) -> Callable[..., int]:
    """Wrap integer-only functions (factorial, comb, ...) with an argument bound."""

    def wrapper(*args: Number) -> int:
        ints = []
        for a in args:
            if isinstance(a, Fraction) and a.denominator == 1:
                a = a.numerator
            if isinstance(a, float) and a.is_integer():
                a = int(a)
            if not isinstance(a, int):
                raise ToolFailure(f"{fn.__name__}() needs whole numbers, got {_show(a)}", kind="validation")
            ints.append(a)
        if any(abs(a) > limit for a in ints):
            raise ToolFailure(f"{fn.__name__}() arguments above {limit:,} are not supported", kind="validation")
        return fn(*ints)

    wrapper.__name__ = fn.__name__
    return wrapper


def _float_fn(fn: Callable[..., float]) -> Callable[..., float]:
    def wrapper(*args: Number) -> float:
        return fn(*(float(a) for a in args))

    wrapper.__name__ = fn.__name__
    return wrapper


def _log(x: Number, base: Number | None = None) -> float:
    # math.log handles huge ints exactly-enough; Fractions go through float
    xv = x if isinstance(x, int) else float(x)
    if base is None:
        return math.log(xv)
    return math.log(xv, base if isinstance(base, int) else float(base))


def _round(x: Number, ndigits: int | None = None) -> Number:
    if ndigits is not None and not isinstance(ndigits, int):
        raise ToolFailure("round() takes a whole number of digits", kind="validation")
    return round(x, ndigits) if ndigits is not None else round(x)


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": _float_fn(math.sqrt), "cbrt": lambda x: math.copysign(abs(float(x)) ** (1 / 3), float(x)),
    "exp": _float_fn(math.exp), "log": _log, "ln": _log,
    "log10": lambda x: math.log10(x if isinstance(x, int) else float(x)),
    "log2": lambda x: math.log2(x if isinstance(x, int) else float(x)),
    "sin": _float_fn(math.sin), "cos": _float_fn(math.cos), "tan": _float_fn(math.tan),
    "asin": _float_fn(math.asin), "acos": _float_fn(math.acos), "atan": _float_fn(math.atan),
    "atan2": _float_fn(math.atan2), "sinh": _float_fn(math.sinh), "cosh": _float_fn(math.cosh),
    "tanh": _float_fn(math.tanh), "degrees": _float_fn(math.degrees), "radians": _float_fn(math.radians),
    "hypot": _float_fn(math.hypot),
    "floor": lambda x: math.floor(x), "ceil": lambda x: math.ceil(x), "trunc": lambda x: math.trunc(x),
    "abs": lambda x: abs(x), "round": _round, "min": lambda *a: min(a), "max": lambda *a: max(a),
    "factorial": _exact(math.factorial, 10_000), "comb": _exact(math.comb, 100_000),
    "perm": _exact(math.perm, 100_000), "gcd": _exact(math.gcd, 10**1000), "lcm": _exact(math.lcm, 10**1000),
    "isqrt": _exact(math.isqrt, 10**10000),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _divide,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _reject(what: str) -> ToolFailure:
    return ToolFailure(
        f"{what} is not allowed. The calculator accepts numbers, + - * / // % ** and parentheses, "
        f"the constants {', '.join(CONSTANTS)} and the functions {', '.join(sorted(FUNCTIONS))}.",
        kind="validation",
    )


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _reject(f"The literal {node.value!r}")
        return node.value
    if isinstance(node, ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            if isinstance(node.op, ast.BitXor):
                raise ToolFailure("'^' is not a power operator here; write powers as a ** b.", kind="validation")
            raise _reject(f"The operator {type(node.op).__name__}")
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Mult) and _bits(left) + _bits(right) > MAX_RESULT_BITS + 1:
            raise _too_large()
        value = op(left, right)
        if isinstance(value, float) and math.isinf(value) and not any(
            isinstance(v, float) and math.isinf(v) for v in (left, right)
        ):
            raise OverflowError("the result is too large for a floating-point number")
        return _check_size(value)
    if isinstance(node, ast.UnaryOp):
        op1 = _UNARY.get(type(node.op))
        if op1 is None:
            raise _reject(f"The operator {type(node.op).__name__}")
        return op1(_eval(node.operand))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise ToolFailure(f"{node.id} is a function; call it like {node.id}(x).", kind="validation")
        raise _reject(f"The name {node.id!r}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            target = node.func.id if isinstance(node.func, ast.Name) else "this call"
            raise _reject(f"Calling {target!r}" if isinstance(node.func, ast.Name) else "Calling this expression")
        if node.keywords:
            raise _reject("Keyword arguments")
        args = [_eval(a) for a in node.args]
        try:
            return _check_size(FUNCTIONS[node.func.id](*args))
        except TypeError as exc:
            raise ToolFailure(f"{node.func.id}(): {exc}", kind="validation") from exc
    if isinstance(node, ast.Attribute):
        raise _reject("Attribute access")
    raise _reject(f"The syntax {type(node).__name__}")


def _show(x: Number) -> str:
    text = f"{x.numerator}/{x.denominator}" if isinstance(x, Fraction) else str(x)
    return f"({text})" if isinstance(x, Fraction) or x < 0 else text


def _format_int(n: int) -> str:
    if n.bit_length() * math.log10(2) < MAX_SHOWN_DIGITS:
        return str(n)
    return _scientific(n)


def _scientific(n: int) -> str:
    """``d.dddde+N`` with 15 exact significant digits, for integers too long to show in full."""
    m = abs(n)
    if m < 10**15:
        return str(n)
    exponent = math.floor(math.log10(m))
    # log10 can be off by one next to a power of ten; fix it with exact integer comparisons
    if 10**exponent > m:
        exponent -= 1
    elif 10 ** (exponent + 1) <= m:
        exponent += 1
    lead = str(m // 10 ** (exponent - 14))  # the first 15 digits, exactly
    mantissa = (lead[0] + "." + lead[1:]).rstrip("0").rstrip(".")
    return f"{'-' if n < 0 else ''}{mantissa}e+{exponent} (an integer with {exponent + 1:,} digits)"


def format_number(value: Number) -> str:
    """Integers exactly (or in scientific notation when huge), fractions as decimal plus exact value."""
    if isinstance(value, int):
        return _format_int(value)
    if isinstance(value, Fraction):
        try:
            shown = _format_float(value.numerator / value.denominator)
        except OverflowError:  # beyond float range: show the integer part in scientific notation
            shown = _scientific(value.numerator // value.denominator).split(" (")[0]
        if _bits(value) * math.log10(2) < MAX_EXACT_FRACTION_DIGITS:
            return f"{shown} (exactly {value.numerator}/{value.denominator})"
        return shown
    return _format_float(value)


def _format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    # 15 significant digits hides binary noise such as 0.1 + 0.2 = 0.30000000000000004
    text = repr(float(f"{x:.15g}"))
    return text[:-2] if text.endswith(".0") and abs(x) < 1e15 else text


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression safely and return the formatted result."""
    text = expression.strip()
    if not text:
        raise ToolFailure("The expression is empty.", kind="validation")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolFailure(f"The expression is longer than {MAX_EXPRESSION_CHARS} characters; split it up.",
                          kind="validation")
    try:
        tree = ast.parse(text.replace("\u00d7", "*").replace("\u00f7", "/"), mode="eval")
    except SyntaxError as exc:
        raise ToolFailure(f"Not a valid expression: {exc.msg} (at column {exc.offset}).", kind="validation") from exc
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ToolFailure("The expression is too deeply nested.", kind="validation") from exc
    try:
        value = _eval(tree)
    except ZeroDivisionError as exc:
        raise ToolFailure(f"Math error: {exc}.", kind="exception") from exc
    except OverflowError as exc:
        raise ToolFailure("Math error: the result is too large for a floating-point number; work with "
                          "logarithms or exact integers instead.", kind="exception") from exc
    except ValueError as exc:  # math domain errors, e.g. sqrt(-1), log(0)
        raise ToolFailure(f"Math error: {exc} (the input is outside the function's domain).",
                          kind="exception") from exc
    except RecursionError as exc:
        raise ToolFailure("The expression is too deeply nested.", kind="validation") from exc
    return format_number(value)


async def _calculator(
    expression: Annotated[str, Field(description="Arithmetic expression, e.g. '(3 + 4) * 2**10 / sqrt(2)'.")],
) -> str:
    return calculate(expression)


calculator = Tool(
    _calculator,
    name="calculator",
    description=(
        "Evaluate an arithmetic expression exactly: + - * / // % ** and parentheses, constants pi, e, tau, "
        "and functions " + ", ".join(sorted(FUNCTIONS)) + ". Integers are exact and arbitrarily large; "
        "use it instead of doing arithmetic in your head."
    ),
    timeout=10.0,
    max_output_chars=2000,
)
