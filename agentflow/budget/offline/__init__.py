"""Offline allocation search: AgentTTS lookup tables, a synthetic table generator, metrics, and the
benchmark behind ``agentflow bench tts``."""

from agentflow.budget.offline.bench import BenchReport, StrategyRun, run_tts_bench
from agentflow.budget.offline.generator import SyntheticTask, generate_task
from agentflow.budget.offline.metrics import auc, best_so_far, normalized_curve, trials_to
from agentflow.budget.offline.table import LookupEnvironment, TTSTable

__all__ = [
    "BenchReport", "LookupEnvironment", "StrategyRun", "SyntheticTask", "TTSTable", "auc", "best_so_far",
    "generate_task", "normalized_curve", "run_tts_bench", "trials_to",
]
