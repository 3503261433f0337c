"""GAIA-style evaluation: load tasks, run a solver over them, score with GAIA's rules, report.

    from agentflow.evals import load_gaia_tasks, run_gaia, score_answer
    tasks = load_gaia_tasks("~/data/GAIA", "validation", levels=[1], limit=10)
    report = await run_gaia(tasks, solver, "runs/gaia-l1", concurrency=4, timeout=600)
"""

from agentflow.evals.answer_format import GAIA_ANSWER_RULES, extract_final_answer, format_gaia_answer
from agentflow.evals.loader import (
    GAIA_DATA_DIR_ENV,
    GaiaTask,
    find_split_dir,
    load_gaia_tasks,
    resolve_data_dir,
)
from agentflow.evals.report import (
    BenchReport,
    LevelSummary,
    report_table,
    submission_rows,
    summarize,
    write_outputs,
)
from agentflow.evals.results import RunManifest, TaskRecord, load_records
from agentflow.evals.runner import (
    BenchTaskFinished,
    BenchTaskStarted,
    GaiaRunner,
    Progress,
    RunOptions,
    run_gaia,
)
from agentflow.evals.scorer import normalize_text, score_answer, scoring_path
from agentflow.evals.solver import (
    ChatModelSolver,
    SolveContext,
    Solver,
    SolverOutput,
    coerce_output,
    task_prompt,
)

__all__ = [
    "GAIA_ANSWER_RULES", "GAIA_DATA_DIR_ENV", "BenchReport", "BenchTaskFinished", "BenchTaskStarted", "ChatModelSolver",
    "GaiaRunner", "GaiaTask", "LevelSummary", "Progress", "RunManifest", "RunOptions", "SolveContext", "Solver",
    "SolverOutput", "TaskRecord", "coerce_output", "extract_final_answer", "find_split_dir", "format_gaia_answer",
    "load_gaia_tasks", "load_records", "normalize_text", "report_table", "resolve_data_dir", "run_gaia",
    "score_answer", "scoring_path", "submission_rows", "summarize", "task_prompt", "write_outputs",
]
