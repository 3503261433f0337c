"""AgentTTS: an LLM agent searches the allocation, guided by insights it writes from feedback.

The loop follows the AgentTTS paper:

1. **Insight-seeded probes.** One configuration per candidate model per subtask at equal spend
   (``probes.insight_probes``; no LLM needed for this step).
2. **Rounds.** Each round the model first writes *insights* from the search so far — in the first
   round which model each subtask prefers at equal cost; afterwards where more samples stop
   helping, how to rebalance the shared budget between coupled subtasks, and whether to explore
   more widely when recent scores stall. Then it proposes a *batch* of configurations following
   its insights (the first round's insights plus the latest ones).
3. **Validation.** Every proposal is validated against the space and the budget (``llm_common``):
   repaired when it can be, dropped with a recorded reason when it cannot. Repeats are dropped.
   When a batch has too few usable proposals, the rest are small variations of the best
   configuration so far, and the shortfall is recorded; a failed model call is recorded the same
   way and never ends the search.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentflow.budget.search import Trial
from agentflow.budget.space import AllocationSpace, Config
from agentflow.budget.strategies.base import SearchStrategy
from agentflow.budget.strategies.llm_common import (
    INSIGHTS_SCHEMA,
    ask_json,
    candidates_schema,
    describe_problem,
    format_history,
    take_candidates,
    validate_candidates,
)
from agentflow.budget.strategies.probes import insight_probes
from agentflow.llm.base import ChatModel

FIRST_ROUND_GUIDE = (
    "The evaluations so far are probes: for each subtask, every candidate model was tried at the same "
    "cost, so smaller models drew more samples and larger ones fewer, while the other subtasks stayed "
    "fixed. For each subtask, say which model to explore further. Prefer a larger model only when it is "
    "clearly better than a smaller one at equal cost; if it is similar or only slightly better, prefer "
    "the smaller one."
)
LATER_ROUND_GUIDE = (
    "1. Scores rise with more samples and then level off. For each subtask, say in which direction to "
    "search its sample count, and where more samples stop improving the score.\n"
    "2. The subtasks share one budget and depend on each other: a stronger earlier subtask can change "
    "how many samples a later one needs. Say which subtask should receive more budget and which can give "
    "some up; when not every subtask can have its best model and sample count, prioritise and balance.\n"
    "3. If the recent scores vary little, recommend exploring other models or allocations rather than "
    "small changes to the current best."
)


class AgentTTSStrategy(SearchStrategy):
    name = "agenttts"
    uses_llm = True

    def __init__(self, space: AllocationSpace, model: ChatModel, *, seed: int = 0, batch_size: int = 5,
                 objective: str = "score", task_description: str = "", temperature: float | None = 0.7,
                 max_tokens: int | None = 1536) -> None:
        super().__init__(space, seed=seed, batch_size=batch_size, objective=objective)
        self.model = model
        self.task_description = task_description
        self.temperature = temperature
        self.max_tokens = max_tokens
        probes, notes = insight_probes(space)
        for n in notes:
            self.note(n)
        self._probes: list[Config] = []
        for p in probes:
            if p.config not in self._probes:
                self._probes.append(p.config)
        self._queue: list[Config] = []
        #: insights written per round, oldest first
        self.insights: list[list[str]] = []
        #: how many trials the previous round's insights had seen
        self._seen_until = 0
        #: the prompts of the latest round (for inspection and tests)
        self.last_prompts: dict[str, str] = {}

    # --- prompts ----------------------------------------------------------------------------

    def insight_prompt(self, history: Sequence[Trial]) -> str:
        first = not self.insights
        older, recent = history[: self._seen_until], history[self._seen_until:]
        parts = [describe_problem(self.space, self.task_description), ""]
        if first:
            parts += ["Search history (probes):", format_history(self.space, recent, objective=self.objective), "",
                      FIRST_ROUND_GUIDE]
        else:
            parts += ["Earlier search history:", format_history(self.space, older, objective=self.objective), "",
                      "Recent search history:", format_history(self.space, recent, objective=self.objective), "",
                      "Summarise insights from the recent history in these respects:", LATER_ROUND_GUIDE]
        parts += ["", 'Be concise. Return {"insights": ["...", ...]}.']
        return "\n".join(parts)

    def candidates_prompt(self, history: Sequence[Trial], k: int) -> str:
        rounds = self.insights[:1] + self.insights[1:][-2:] if self.insights else []
        insight_lines = [f"- {line}" for r in rounds for line in r] or ["- (none yet)"]
        return "\n".join([
            describe_problem(self.space, self.task_description), "",
            "Search history (configuration -> score, cost):",
            format_history(self.space, history, objective=self.objective), "",
            "Insights from earlier rounds:", *insight_lines, "",
            f"Propose {k} new configurations that follow the insights, differ from every configuration "
            "in the history, and keep the total cost within the budget. Return "
            '{"candidates": [{"<subtask>": {"model": "<name>", "samples": <int>}, ...}, ...]} '
            "with every subtask in every candidate.",
        ])

    # --- search -----------------------------------------------------------------------------

    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        out: list[Config] = []
        while self._probes and len(out) < k:
            cfg = self.take(self._probes.pop(0))
            if cfg is not None:
                out.append(cfg)
        if out:
            return out
        if not self._queue:
            await self._round(history, max(k, self.batch_size))
        out, self._queue = self._queue[:k], self._queue[k:]
        return out

    async def _round(self, history: Sequence[Trial], want: int) -> None:
        round_no = len(self.insights) + 1
        self.count("rounds")

        prompt = self.insight_prompt(history)
        self.last_prompts["insights"] = prompt
        reply = await ask_json(self.model, prompt, INSIGHTS_SCHEMA, "tts_insights", temperature=self.temperature,
                               max_tokens=self.max_tokens, seed=self.seed + round_no)
        self.count("llm_calls")
        insights: list[str] = []
        if reply.error:
            self.count("llm_failures")
            self.note(f"round {round_no} insights: {reply.error}")
        elif isinstance(reply.data, dict) and isinstance(reply.data.get("insights"), list):
            insights = [str(x).strip()[:400] for x in reply.data["insights"] if str(x).strip()][:8]
        if not insights and reply.text.strip():
            # not the requested shape, but still the model's reasoning: keep it as one insight
            insights = [reply.text.strip()[:800]]
        self.insights.append(insights)
        self._seen_until = len(history)

        prompt = self.candidates_prompt(history, want)
        self.last_prompts["candidates"] = prompt
        reply = await ask_json(self.model, prompt, candidates_schema(self.space, want), "tts_candidates",
                               temperature=self.temperature, max_tokens=self.max_tokens,
                               seed=self.seed + 1000 + round_no)
        self.count("llm_calls")
        if reply.error:
            self.count("llm_failures")
            self.note(f"round {round_no} candidates: {reply.error}")
        raw, extra = take_candidates(reply.data, want)
        if extra:
            self.count("dropped", extra)
            self.note(f"round {round_no}: {extra} candidates beyond the {want} asked for were ignored")
        checked = validate_candidates(self.space, raw)
        for reason in checked.dropped:
            self.count("dropped")
            self.note(f"round {round_no}: {reason}")
        for note in checked.repaired:
            self.count("repaired")
            self.note(f"round {round_no}: {note}")
        for cfg in checked.configs:
            if self.take(cfg) is not None:
                self._queue.append(cfg)
            else:
                self.count("dropped")
                self.note(f"round {round_no}: repeat of an evaluated configuration dropped: "
                          f"{self.space.format_config(cfg)}")
        self.count("llm_proposals", len(self._queue))
        shortfall = want - len(self._queue)
        if shortfall > 0:
            found = self.best()
            for _ in range(shortfall):
                cfg = self.fresh_neighbour(found[0]) if found else self.fresh_random()
                if cfg is None:
                    break
                self._queue.append(cfg)
            self.count("filled", shortfall)
            self.note(f"round {round_no}: {shortfall} of {want} candidates were variations of the best "
                      "configuration (the model's batch had too few usable ones)")
