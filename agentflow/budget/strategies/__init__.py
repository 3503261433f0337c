"""Search strategies over an ``AllocationSpace``, all behind ``SearchStrategy``.

``make_strategy(name, space, seed=..., model=...)`` builds one by name; ``STRATEGIES`` lists them.
The LLM-driven ones (``uses_llm``) need a ``ChatModel``.
"""

from __future__ import annotations

from typing import Any

from agentflow.budget.space import AllocationSpace
from agentflow.budget.strategies.agenttts import AgentTTSStrategy
from agentflow.budget.strategies.base import SearchStrategy
from agentflow.budget.strategies.bayesian import BayesianStrategy
from agentflow.budget.strategies.genetic import GeneticStrategy
from agentflow.budget.strategies.grid import GridStrategy
from agentflow.budget.strategies.insight import InsightGuidedStrategy
from agentflow.budget.strategies.llm_zero_shot import LLMZeroShotStrategy
from agentflow.budget.strategies.probes import Probe, budget_shares, insight_probes
from agentflow.budget.strategies.random_search import RandomStrategy
from agentflow.budget.strategies.uniform import UniformStrategy
from agentflow.errors import ConfigurationError
from agentflow.llm.base import ChatModel

STRATEGIES: dict[str, type[SearchStrategy]] = {
    cls.name: cls
    for cls in (UniformStrategy, RandomStrategy, GridStrategy, BayesianStrategy, GeneticStrategy,
                InsightGuidedStrategy, LLMZeroShotStrategy, AgentTTSStrategy)
}


def make_strategy(name: str, space: AllocationSpace, *, seed: int = 0, model: ChatModel | None = None,
                  **options: Any) -> SearchStrategy:
    """Build the strategy called ``name``; LLM strategies need ``model``."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ConfigurationError(f"unknown strategy {name!r}", hint=f"choose from: {', '.join(STRATEGIES)}")
    if cls.uses_llm:
        if model is None:
            raise ConfigurationError(f"strategy {name!r} needs a model",
                                     hint="pass model=<ChatModel> (on the command line: --base-url/--model)")
        return cls(space, model, seed=seed, **options)  # type: ignore[call-arg]
    return cls(space, seed=seed, **options)


__all__ = [
    "STRATEGIES", "AgentTTSStrategy", "BayesianStrategy", "GeneticStrategy", "GridStrategy",
    "InsightGuidedStrategy", "LLMZeroShotStrategy", "Probe", "RandomStrategy", "SearchStrategy",
    "UniformStrategy", "budget_shares", "insight_probes", "make_strategy",
]
