"""A run's budget settings, and the two operations a workforce needs from them.

A workforce may run many requests; each run gets its own ``BudgetTracker`` (the budget is per
run) from ``BudgetPolicy.tracker``, and every model the run calls is wrapped by
``BudgetPolicy.wrap``: worker nodes with their allocation (model, samples, aggregation), the
planner, coordinator and critic with plain accounting, so the whole run shares one budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from agentflow.budget.allocator import Allocation, BudgetAllocator
from agentflow.budget.cost import CostModel, FlopsCost, cost_model_by_name
from agentflow.budget.registry import ModelRegistry, guess_params
from agentflow.budget.runtime import BudgetedModel
from agentflow.budget.tracker import BudgetTracker
from agentflow.errors import ConfigurationError
from agentflow.llm.base import ChatModel
from agentflow.runs.events import EventSink


class BudgetPolicy:
    """Budget, registry, cost model and allocator for the runs of one workforce."""

    def __init__(self, budget: float, registry: ModelRegistry, *, cost_model: CostModel | None = None,
                 allocator: BudgetAllocator | None = None, resolve: Callable[[str], ChatModel | None] | None = None,
                 candidates: Sequence[str] | None = None, default_max_tokens: int = 1024) -> None:
        if not budget > 0:
            raise ConfigurationError(f"budget must be positive, got {budget}", hint="pass --budget > 0")
        self.budget = float(budget)
        self.registry = registry
        self.cost_model = cost_model or FlopsCost()
        self.allocator = allocator or BudgetAllocator()
        self.resolve = resolve
        self.candidates = candidates
        self.default_max_tokens = default_max_tokens
        for alloc in [self.allocator.default, *self.allocator.by_kind.values(), *self.allocator.by_node.values()]:
            if alloc is not None:
                registry.get(alloc.model)  # an allocation to an unknown model fails now, not mid-run

    @classmethod
    def for_models(cls, budget: float, models: Iterable[str], *, unit: str = "tokens",
                   registry: ModelRegistry | None = None, samples: int = 1, **options) -> BudgetPolicy:
        """A policy for models known only by name (the ``agentflow run --budget`` case).

        Missing models are registered with the size their name tells ("Qwen2.5-7B-Instruct" ->
        7e9); under a token or dollar budget the size does not matter, under FLOPs it must be
        known. Every node gets ``samples`` samples of the first model unless an allocator is given.
        """
        cost_model = cost_model_by_name(unit)
        registry = registry if registry is not None else ModelRegistry()
        names = list(models)
        if not names:
            raise ConfigurationError("a budget policy needs at least one model", hint="pass the served model name")
        for name in names:
            if name in registry:
                continue
            if cost_model.unit == "flops" or guess_params(name) is not None:
                registry.ensure(name)
            else:
                registry.ensure(name, params=1.0)  # the size plays no part in token or dollar costs
        options.setdefault("allocator", BudgetAllocator(default=Allocation(model=names[0], samples=samples)))
        return cls(budget, registry, cost_model=cost_model, **options)

    def tracker(self, *, run_id: str | None = None, sink: EventSink | None = None) -> BudgetTracker:
        """A fresh tracker for one run."""
        return BudgetTracker(self.budget, self.registry, self.cost_model, default_max_tokens=self.default_max_tokens,
                             sink=sink, run_id=run_id)

    def wrap(self, model: ChatModel, tracker: BudgetTracker, *, node_id: str | None = None,
             kind: str | None = None) -> ChatModel:
        """``model`` under ``tracker``: with the node's allocation when ``node_id``/``kind`` has
        one, else plain accounting (one sample per call, planned and booked)."""
        allocation = self.allocator.for_node(node_id, kind) if (node_id or kind) else None
        if allocation is None and model.name not in self.registry:
            raise ConfigurationError(f"model {model.name!r} is not in the budget registry",
                                     hint="register it, or build the policy with BudgetPolicy.for_models")
        return BudgetedModel(model, allocation=allocation, tracker=tracker, resolve=self.resolve,
                             candidates=self.candidates)
