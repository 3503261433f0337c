"""Rich renderings of a plan and of a run's live state, for the CLI and notebooks.

Both functions return renderables and print nothing: the caller decides where they go (a
``Console``, a ``Live`` display, a file).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from agentflow.workforce.plan import Plan
from agentflow.workforce.state import NodeRecord, RunState

_STATUS_STYLE: dict[str, tuple[str, str]] = {
    "pending": ("○", "dim"),
    "ready": ("◌", "cyan"),
    "running": ("▶", "bold yellow"),
    "checking": ("?", "yellow"),
    "expanded": ("⤷", "blue"),
    "done": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "skipped": ("–", "dim red"),
    "replaced": ("↺", "magenta"),
    "cancelled": ("⊘", "dim"),
}
_RUN_STYLE = {"succeeded": "green", "partial": "yellow", "failed": "red", "cancelled": "dim",
              "running": "yellow", "planning": "cyan"}


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_plan(plan: Plan, *, title: str = "plan") -> RenderableType:
    """A plan as a tree: each node under the nodes it depends on (shared nodes shown once, then referenced)."""
    tree = Tree(Text(title, style="bold"))
    children: dict[str, list[str]] = {n.id: [] for n in plan.nodes}
    for n in plan.nodes:
        for dep in n.inputs:
            if dep in children:
                children[dep].append(n.id)
    by_id = {n.id: n for n in plan.nodes}
    outputs = set(plan.output_ids())
    shown: set[str] = set()

    def label(nid: str) -> Text:
        n = by_id[nid]
        t = Text()
        t.append(nid, style="bold")
        tags = [n.handler if n.handler != "worker" else (n.worker or "worker")]
        if n.function:
            tags.append(n.function)
        if n.map:
            tags.append(f"{n.map.mode} over {n.map.over}")
        if nid in outputs:
            tags.append("output")
        t.append(f" [{', '.join(tags)}] ", style="cyan")
        t.append(_clip(n.goal, 90))
        return t

    def add(parent: Tree, nid: str) -> None:
        if nid in shown:
            parent.add(Text(f"→ {nid}", style="dim"))
            return
        shown.add(nid)
        branch = parent.add(label(nid))
        for c in children[nid]:
            add(branch, c)

    for n in plan.nodes:
        if not any(d in by_id for d in n.inputs):
            add(tree, n.id)
    return tree


def _order(state: RunState) -> list[tuple[int, NodeRecord]]:
    """Nodes in plan order with children right under their parent, and their indentation level."""
    out: list[tuple[int, NodeRecord]] = []
    placed: set[str] = set()

    def place(rec: NodeRecord, level: int) -> None:
        if rec.spec.id in placed:
            return
        placed.add(rec.spec.id)
        out.append((level, rec))
        for c in rec.children:
            child = state.nodes.get(c)
            if child is not None:
                place(child, level + 1)

    for rec in state.nodes.values():
        if rec.parent is None:
            place(rec, 0)
    for rec in state.nodes.values():  # children of replaced expansions
        place(rec, 1)
    return out


def render_run(state: RunState, *, show_replaced: bool = False, max_rows: int = 60,
               goal_width: int = 60) -> RenderableType:
    """The run's nodes with status, worker, tries, critic probability, tokens and time."""
    counts = state.counts()
    header = Text()
    header.append(f"run {state.run_id or '?'} ", style="bold")
    header.append(state.status, style=_RUN_STYLE.get(state.status, ""))
    summary = "  ".join(f"{_STATUS_STYLE.get(k, ('', ''))[0]} {k} {v}" for k, v in sorted(counts.items()))
    header.append(f"   {summary}", style="dim")
    header.append(f"   {state.model_calls} model calls, "
                  f"{state.usage.prompt_tokens}+{state.usage.completion_tokens} tokens", style="dim")

    table = Table(show_lines=False, expand=True, pad_edge=False, box=None, header_style="bold")
    table.add_column("", width=1)
    table.add_column("node", no_wrap=True, min_width=10)
    table.add_column("worker", no_wrap=True, min_width=6, max_width=12, overflow="ellipsis")
    table.add_column("goal / result", no_wrap=True, overflow="ellipsis", min_width=20, ratio=1)
    table.add_column("inputs", no_wrap=True, style="dim", max_width=10, overflow="ellipsis")
    table.add_column("try", justify="right")
    table.add_column("p", justify="right")
    table.add_column("tokens", justify="right", style="dim")
    table.add_column("s", justify="right", style="dim")

    rows = [(lvl, r) for lvl, r in _order(state) if show_replaced or r.status != "replaced"]
    hidden = max(0, len(rows) - max_rows)
    if hidden:
        # keep the rows that matter most while a big run is live: active and failed ones first
        rank = {"running": 0, "checking": 0, "failed": 1, "ready": 2, "expanded": 2}
        keep = sorted(range(len(rows)), key=lambda i: (rank.get(rows[i][1].status, 3), i))[:max_rows]
        rows = [rows[i] for i in sorted(keep)]
    for level, rec in rows:
        icon, style = _STATUS_STYLE.get(rec.status, ("?", ""))
        spec = rec.spec
        who = rec.worker or (f"fn:{spec.function}" if spec.handler == "function" else spec.handler)
        goal = spec.goal
        if rec.item is not None:
            item = _clip(str(rec.item), 40)
            goal = goal.replace("{item}", item) if "{item}" in goal else f"{goal} [{item}]"
        detail = Text(_clip(goal, goal_width))
        if rec.output and rec.status in ("done", "checking"):
            detail.append("\n→ " + _clip(rec.output, goal_width), style="green" if rec.status == "done" else "yellow")
        elif rec.error and rec.status in ("failed", "skipped", "cancelled", "pending"):
            detail.append("\n! " + _clip(rec.error, goal_width), style="red" if rec.status == "failed" else "dim")
        inputs = ", ".join(i for i in spec.inputs)
        p = f"{rec.verdict.probability:.2f}" if rec.verdict else ""
        tokens = str(rec.usage.total_tokens) if rec.model_calls else ""
        secs = f"{rec.duration_s:.1f}" if rec.duration_s is not None else ""
        table.add_row(Text(icon, style=style), Text("  " * level + spec.id, style=style), who, detail,
                      _clip(inputs, 24), str(rec.attempts or ""), p, tokens, secs)
    parts: list[RenderableType] = [header, table]
    if hidden:
        parts.append(Text(f"... {hidden} more nodes not shown", style="dim"))
    if state.answer is not None:
        parts.append(Panel(state.answer or "(empty)", title="answer",
                           border_style=_RUN_STYLE.get(state.status, "green")))
    if state.error:
        parts.append(Text(f"error: {state.error}", style="red"))
    return Group(*parts)
