"""Solvers built from agentflow's own agents, and the GAIA toolkit they use.

Each attempt works in its own scratch folder (``SolveContext.scratch``): the attachment and the
document collection are copied there, so the python tool can write files without touching the
dataset and without one task seeing another task's leftovers.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentflow.evals.answer_format import GAIA_ANSWER_RULES
from agentflow.evals.loader import GaiaTask
from agentflow.evals.solver import SolveContext, SolverOutput, task_prompt
from agentflow.llm.base import ChatModel
from agentflow.llm.types import CallContext
from agentflow.tools.base import Tool
from agentflow.tools.readers.limits import DEFAULT_LIMITS, ReadLimits

logger = logging.getLogger(__name__)

CORPUS_DIR = "corpus"


def gaia_tools(workspace: str | os.PathLike[str], *, corpus: str | os.PathLike[str] | None = None,
               search_provider: Any = None, limits: ReadLimits = DEFAULT_LIMITS,
               python_timeout_s: float = 30.0) -> list[Tool]:
    """The GAIA worker kit: list_files, read_document, python, calculator; search_documents when a
    corpus is given; web_search and fetch_page when a search provider is given.

    ``corpus`` should lie inside ``workspace`` so that search hits can be opened with read_document.
    """
    from agentflow.tools.builtin import calculator, file_tools, python_tool
    from agentflow.tools.readers.tools import reader_tools
    from agentflow.tools.search.tools import local_search_tool, web_tools

    root = Path(workspace)
    tools: list[Tool] = [t for t in file_tools(root) if t.name == "list_files"]
    tools += reader_tools(root, limits=limits)
    tools += [python_tool(root, timeout_s=python_timeout_s), calculator]
    if corpus is not None:
        corpus_path = Path(corpus)
        prefix = ""
        if corpus_path.resolve().is_relative_to(root.resolve()):
            prefix = corpus_path.resolve().relative_to(root.resolve()).as_posix() + "/"
        tools.append(local_search_tool(corpus_path, limits=limits, path_prefix=prefix))
    if search_provider is not None:
        tools += web_tools(search_provider, limits=limits)
    return tools


def prepare_workspace(task: GaiaTask, context: SolveContext) -> tuple[Path, Path | None]:
    """Copy the task's attachment (and the corpus) into the attempt's scratch folder.

    Returns the workspace root and the corpus folder inside it (``None`` without a corpus).
    """
    if context.scratch is None:
        raise ValueError("this solver needs SolveContext.scratch; run it through GaiaRunner")
    root = context.scratch
    root.mkdir(parents=True, exist_ok=True)
    if task.file_path is not None:
        shutil.copy2(task.file_path, root / task.file_path.name)
    corpus = None
    if context.corpus is not None and context.corpus.is_dir():
        corpus = root / CORPUS_DIR
        if not corpus.exists():
            shutil.copytree(context.corpus, corpus, symlinks=False)
    return root, corpus


def render_steps(steps: Sequence[Any]) -> str:
    """A worker's steps as a readable reasoning trace (tool calls, short results, text)."""
    lines = []
    for step in steps:
        for call, result in zip(step.tool_calls, step.tool_results, strict=False):
            snippet = result.content if len(result.content) <= 300 else result.content[:300] + " ..."
            lines.append(f"[{step.index}] {call.name}({call.raw_arguments}) -> {snippet}")
        if step.text:
            lines.append(f"[{step.index}] {step.text.strip()}")
    return "\n".join(lines)


class WorkerSolver:
    """One tool-calling ``Worker`` per task with the GAIA toolkit, working in the attempt's scratch folder.

    Args:
        model: the model the worker uses.
        max_steps: model turns before the worker must answer.
        tools_factory: ``(workspace, corpus) -> tools``; ``gaia_tools`` by default.
    """

    def __init__(self, model: ChatModel, *, max_steps: int = 12, max_tokens: int | None = None,
                 temperature: float | None = None, instructions: str | None = None,
                 tools_factory: Callable[[Path, Path | None], list[Tool]] | None = None) -> None:
        self.model = model
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.instructions = instructions
        self.tools_factory = tools_factory or (lambda root, corpus: gaia_tools(root, corpus=corpus))

    async def __call__(self, task: GaiaTask, context: SolveContext) -> SolverOutput:
        import asyncio

        from agentflow.agent import Worker

        root, corpus = await asyncio.to_thread(prepare_workspace, task, context)
        worker = Worker("gaia_solver", "answers benchmark questions using files, search and code",
                        model=self.model, tools=self.tools_factory(root, corpus), instructions=self.instructions,
                        max_steps=self.max_steps, temperature=self.temperature, max_tokens=self.max_tokens)
        local = task
        if task.file_path is not None:  # point the prompt at the copy inside the workspace
            local = task.model_copy(update={"file_path": root / task.file_path.name})
        prompt = task_prompt(local, workspace=root, corpus=corpus, rules=GAIA_ANSWER_RULES)
        result = await worker.run(prompt, sink=context.sink,
                                  call_context=CallContext(run_id=context.run_id, role="worker"))
        trace = render_steps(result.steps)
        if result.failed:
            trace += f"\n[worker failed: {result.reason}]"
        return SolverOutput(answer=result.content or None, trace=trace, usage=result.usage,
                            model_calls=result.model_calls)


class WorkforceSolver:
    """Adapter for a Workforce: ``factory(tools, task) -> workforce`` builds one per attempt (its tools
    rooted in the attempt's scratch folder), then ``await workforce.run(request)`` is awaited.

    The run result is read duck-typed: ``answer`` (required), and ``usage``, ``events``, ``cost`` and
    ``trace`` when present; ``sink``/``run_id`` keywords are passed when ``run`` accepts them, so
    events stream into the attempt's events file as they happen.
    """

    def __init__(self, factory: Callable[[list[Tool], GaiaTask], Any], *,
                 tools_factory: Callable[[Path, Path | None], list[Tool]] | None = None) -> None:
        self.factory = factory
        self.tools_factory = tools_factory or (lambda root, corpus: gaia_tools(root, corpus=corpus))

    async def __call__(self, task: GaiaTask, context: SolveContext) -> SolverOutput:
        import asyncio
        import inspect

        from agentflow.llm.types import Usage

        root, corpus = await asyncio.to_thread(prepare_workspace, task, context)
        local = task.model_copy(update={"file_path": root / task.file_path.name}) if task.file_path else task
        workforce = self.factory(self.tools_factory(root, corpus), local)
        prompt = task_prompt(local, workspace=root, corpus=corpus, rules=GAIA_ANSWER_RULES)
        accepted = inspect.signature(workforce.run).parameters
        kwargs = {k: v for k, v in (("sink", context.sink), ("run_id", context.run_id)) if k in accepted}
        result = await workforce.run(prompt, **kwargs)
        events = list(getattr(result, "events", None) or [])
        trace = getattr(result, "trace", None) or "\n".join(
            f"[{e.type}] {getattr(e, 'node_id', '') or ''}" for e in events)
        usage = getattr(result, "usage", None)
        return SolverOutput(answer=getattr(result, "answer", None), trace=str(trace),
                            usage=usage if isinstance(usage, Usage) else Usage(), events=events,
                            cost=getattr(result, "cost", None),
                            model_calls=int(getattr(result, "model_calls", 0) or 0))


__all__ = ["CORPUS_DIR", "WorkerSolver", "WorkforceSolver", "gaia_tools", "prepare_workspace", "render_steps"]
