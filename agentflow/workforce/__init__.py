"""The workforce: planner -> typed task DAG -> coordinator -> parallel scheduler -> critic -> answer.

Modules, in the order data flows through them:

- ``plan`` / ``validation``: the plan IR and its DAG checks
- ``planner``: one structured-output call emitting the whole DAG, with a repair loop
- ``coordinator``: which worker takes which node (batched LLM call or rules)
- ``scheduler``: readiness, critical-path priority, concurrency (``concurrency`` for per-model limits)
- ``context`` / ``functions`` / ``mapping``: what a node sees, symbolic handlers, map over lists
- ``critic`` / ``policy`` / ``splice``: checking results and recovering from failures
- ``answer`` / ``answer_format``: final synthesis and format rules
- ``events`` / ``state``: the event log and the state folded from it
- ``runner`` / ``workforce``: one run, and the public entry point
- ``render``: rich views for the CLI
"""

from agentflow.workforce import answer_format
from agentflow.workforce.answer import AnswerOutcome, AnswerStage
from agentflow.workforce.answer_format import AnswerFormatter, FreeFormAnswer
from agentflow.workforce.coordinator import (
    Assignment,
    Coordinator,
    LLMCoordinator,
    RuleBasedCoordinator,
    WorkerProfile,
)
from agentflow.workforce.critic import Critic, LLMCritic, Verdict
from agentflow.workforce.events import (
    AnswerEvent,
    CriticVerdictEvent,
    NodeAssignedEvent,
    NodeCancelledEvent,
    NodeExpandedEvent,
    NodeFailedEvent,
    NodeFinishedEvent,
    NodeInvalidatedEvent,
    NodeOutputEvent,
    NodeReadyEvent,
    NodeReassignedEvent,
    NodeReplannedEvent,
    NodeRetriedEvent,
    NodeSkippedEvent,
    NodeStartedEvent,
    PlanCreatedEvent,
    PlanFailedEvent,
    PlanInvalidEvent,
    PlanRepairedEvent,
    RunFinishedEvent,
    RunStartedEvent,
)
from agentflow.workforce.functions import FunctionHandler, FunctionRegistry, symbolic
from agentflow.workforce.plan import MapSpec, Plan, PlanNode
from agentflow.workforce.planner import LLMPlanner, Planner, PlanningTask, PlanOutcome, StaticPlanner
from agentflow.workforce.policy import FailurePolicy
from agentflow.workforce.render import render_plan, render_run
from agentflow.workforce.scheduler import Scheduler
from agentflow.workforce.state import NodeRecord, RunState, rebuild_state
from agentflow.workforce.validation import PlanCheck, PlanIssue, PlanLimits, check_plan, ensure_valid
from agentflow.workforce.workforce import (
    NodeResult,
    RunHandle,
    RunResult,
    Workforce,
    WorkforceConfig,
    build_default_workforce,
    run_sync,
)

__all__ = [
    "AnswerEvent", "AnswerFormatter", "AnswerOutcome", "AnswerStage", "Assignment", "Coordinator", "Critic",
    "CriticVerdictEvent", "FailurePolicy", "FreeFormAnswer", "FunctionHandler", "FunctionRegistry",
    "LLMCoordinator", "LLMCritic", "LLMPlanner", "MapSpec", "NodeAssignedEvent",
    "NodeCancelledEvent", "NodeExpandedEvent", "NodeFailedEvent", "NodeFinishedEvent", "NodeInvalidatedEvent",
    "NodeOutputEvent", "NodeReadyEvent", "NodeReassignedEvent", "NodeRecord", "NodeReplannedEvent", "NodeResult",
    "NodeRetriedEvent", "NodeSkippedEvent", "NodeStartedEvent", "Plan", "PlanCheck", "PlanCreatedEvent",
    "PlanFailedEvent", "PlanInvalidEvent", "PlanIssue", "PlanLimits", "PlanNode", "PlanOutcome",
    "PlanRepairedEvent", "Planner", "PlanningTask", "RuleBasedCoordinator", "RunFinishedEvent", "RunHandle",
    "RunResult", "RunStartedEvent", "RunState", "Scheduler", "StaticPlanner", "Verdict", "WorkerProfile",
    "Workforce", "WorkforceConfig", "build_default_workforce", "check_plan", "ensure_valid", "rebuild_state",
    "render_plan", "render_run", "run_sync", "symbolic",
]



def __getattr__(name: str) -> object:
    # GaiaAnswerFormat is loaded lazily by answer_format (it lives in agentflow.evals)
    return getattr(answer_format, name)
