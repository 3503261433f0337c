"""AgentTTS budget allocation: which model and how many samples each node gets, under one budget.

Offline, a search strategy explores an ``AllocationSpace`` against an ``Evaluator`` (a lookup
table or your pipeline on a development set) and returns the best configuration, which a
``BudgetAllocator`` maps onto nodes. At run time a ``BudgetTracker`` plans every model call
against the remaining budget (degrading to fewer samples or a smaller model when needed) and
``sample_and_aggregate`` / ``BudgetedModel`` draw the samples in one request and combine them.
See docs/budget.md.
"""

from agentflow.budget.aggregate import (
    Selection,
    Vote,
    best_of_n,
    choice_key,
    critic_select,
    llm_fuse,
    majority_vote,
    normalize_answer,
    vote_texts,
)
from agentflow.budget.allocator import Aggregation, Allocation, BudgetAllocator
from agentflow.budget.cost import CostModel, DollarCost, FlopsCost, TokenCost, cost_model_by_name, flops_cost
from agentflow.budget.events import BudgetDegradedEvent, BudgetExhaustedEvent, BudgetSpentEvent
from agentflow.budget.policy import BudgetPolicy
from agentflow.budget.registry import ModelPrice, ModelRegistry, ModelSpec, guess_params
from agentflow.budget.runtime import AggregationDetails, BudgetedModel, sample_and_aggregate
from agentflow.budget.search import Evaluation, Evaluator, SearchResult, Trial, run_search
from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice, SubtaskSpace, default_sample_ladder
from agentflow.budget.strategies import STRATEGIES, SearchStrategy, make_strategy
from agentflow.budget.tracker import BudgetSummary, BudgetTracker, CallPlan, Degradation, Reservation

__all__ = [
    "STRATEGIES", "Aggregation", "AggregationDetails", "Allocation", "AllocationSpace", "BudgetAllocator",
    "BudgetDegradedEvent", "BudgetExhaustedEvent", "BudgetPolicy", "BudgetSpentEvent", "BudgetSummary", "BudgetTracker",
    "BudgetedModel", "CallPlan", "Config", "CostModel", "Degradation", "DollarCost", "Evaluation", "Evaluator",
    "FlopsCost", "ModelPrice", "ModelRegistry", "ModelSpec", "Reservation", "SearchResult", "SearchStrategy",
    "Selection", "SubtaskChoice", "SubtaskSpace", "TokenCost", "Trial", "Vote", "best_of_n", "choice_key",
    "cost_model_by_name", "critic_select", "default_sample_ladder", "flops_cost", "guess_params", "llm_fuse",
    "majority_vote", "make_strategy", "normalize_answer", "run_search", "sample_and_aggregate", "vote_texts",
]
