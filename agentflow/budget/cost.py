"""Cost models: how much budget one model call spends, in the unit the budget is stated in.

The allocator, the search space and the runtime tracker only ever ask one question: "what does a
call to model M with Np prompt tokens and Nc generated tokens (over all samples) cost?". Three
answers ship, behind one interface, so a budget can be stated in whichever unit the user pays in:

* ``FlopsCost`` — AgentTTS's normalized FLOPs,
  ``cost = (M / 3e9) * (Np + S*Nd) / 64 - 2``. The constants normalize the *unit call* (a 3B model,
  128 prompt tokens, 64 generated tokens, one sample) to a cost of exactly 1; the prompt counts
  once because ``n`` samples share one prefill on vLLM.
* ``TokenCost`` — prompt plus generated tokens (what a rate limit counts).
* ``DollarCost`` — tokens times the registry's per-million prices (what an API bill counts).

Generated tokens are always the *total* over the samples (``S * Nd`` when estimating, the
response's ``completion_tokens`` when accounting), so estimates and actuals use the same formula.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from agentflow.budget.registry import ModelSpec
from agentflow.errors import ConfigurationError

#: parameter count, prompt length and generation length of the AgentTTS unit call
UNIT_PARAMS = 3e9
UNIT_PROMPT_TOKENS = 128
UNIT_GENERATED_TOKENS = 64


@runtime_checkable
class CostModel(Protocol):
    """Prices one model call."""

    #: short unit label shown in reports ("flops", "tokens", "usd")
    unit: str

    def cost(self, model: ModelSpec, prompt_tokens: int, completion_tokens: int, *,
             cached_tokens: int = 0) -> float:
        """Cost of one request: ``completion_tokens`` is the total over all its samples."""
        ...


def estimate_call(cost_model: CostModel, model: ModelSpec, prompt_tokens: int,
                  tokens_per_sample: int, samples: int = 1) -> float:
    """Cost of a request with ``samples`` choices of ``tokens_per_sample`` tokens each."""
    if samples < 1:
        raise ConfigurationError(f"samples must be >= 1, got {samples}", hint="ask for at least one sample")
    return cost_model.cost(model, prompt_tokens, samples * tokens_per_sample)


def flops_cost(params: float, prompt_tokens: float, completion_tokens: float, *, clamp: bool = True) -> float:
    """AgentTTS normalized FLOPs: ``(M/3e9) * (Np + Nc) / 64 - 2`` with ``Nc = S*Nd``.

    With ``clamp`` (the default) a result below zero — a call smaller than two thirds of the unit
    call, e.g. a tiny model or a few tokens — counts as free rather than as a refund, which would
    let cheap calls grow the remaining budget. AgentTTS's own accounting clamps the same way.
    """
    value = (params / UNIT_PARAMS) * (prompt_tokens + completion_tokens) / UNIT_GENERATED_TOKENS - 2.0
    return max(0.0, value) if clamp else value


class FlopsCost:
    """AgentTTS normalized FLOPs (see the module docstring)."""

    unit = "flops"

    def __init__(self, *, clamp: bool = True) -> None:
        self.clamp = clamp

    def cost(self, model: ModelSpec, prompt_tokens: int, completion_tokens: int, *,
             cached_tokens: int = 0) -> float:
        # Prefix-cached prompt tokens still cost attention FLOPs in the formula's model; AgentTTS
        # counts the whole prompt, so do we.
        return flops_cost(model.params, prompt_tokens, completion_tokens, clamp=self.clamp)

    def __repr__(self) -> str:
        return f"FlopsCost(clamp={self.clamp})"


class TokenCost:
    """Prompt plus generated tokens; the prompt counts once however many samples are drawn."""

    unit = "tokens"

    def cost(self, model: ModelSpec, prompt_tokens: int, completion_tokens: int, *,
             cached_tokens: int = 0) -> float:
        return float(prompt_tokens + completion_tokens)

    def __repr__(self) -> str:
        return "TokenCost()"


class DollarCost:
    """Dollars from the registry's prices; cached prompt tokens at the cached price when one is set."""

    unit = "usd"

    def __init__(self, *, require_prices: bool = True) -> None:
        self.require_prices = require_prices

    def cost(self, model: ModelSpec, prompt_tokens: int, completion_tokens: int, *,
             cached_tokens: int = 0) -> float:
        p = model.prices
        if self.require_prices and p.input_per_mtok == 0 and p.output_per_mtok == 0:
            raise ConfigurationError(
                f"model {model.name!r} has no prices, so a dollar budget cannot be enforced for it",
                hint="set ModelSpec(prices=ModelPrice(input_per_mtok=..., output_per_mtok=...)) "
                     "or use DollarCost(require_prices=False) to treat it as free",
            )
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = p.cached_input_per_mtok if p.cached_input_per_mtok is not None else p.input_per_mtok
        return ((prompt_tokens - cached) * p.input_per_mtok + cached * cached_price
                + completion_tokens * p.output_per_mtok) / 1e6

    def __repr__(self) -> str:
        return f"DollarCost(require_prices={self.require_prices})"


def cost_model_by_name(name: str) -> CostModel:
    """``"flops"``, ``"tokens"`` or ``"usd"`` (also ``"dollars"``) to a cost model."""
    key = name.strip().lower()
    if key == "flops":
        return FlopsCost()
    if key == "tokens":
        return TokenCost()
    if key in {"usd", "dollars", "dollar"}:
        return DollarCost()
    raise ConfigurationError(f"unknown cost unit {name!r}", hint="use one of: flops, tokens, usd")
