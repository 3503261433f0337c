"""LLM zero-shot: the model proposes configurations from the problem statement alone.

No scores are shown and no insights are given: the model sees the subtasks, candidates, costs and
budget, plus the configurations already proposed (so it does not repeat them), and returns a
batch of candidates. It measures what an LLM's prior knowledge alone is worth; AgentTTS adds
feedback and insights on top. Candidates are validated like every LLM output (see
``llm_common``); when a batch yields fewer usable candidates than asked for, the shortfall is
filled with random feasible configurations and the reason is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentflow.budget.search import Trial
from agentflow.budget.space import AllocationSpace, Config
from agentflow.budget.strategies.base import SearchStrategy
from agentflow.budget.strategies.llm_common import (
    ask_json,
    candidates_schema,
    describe_problem,
    format_config,
    take_candidates,
    validate_candidates,
)
from agentflow.llm.base import ChatModel


class LLMZeroShotStrategy(SearchStrategy):
    name = "llm-zero-shot"
    uses_llm = True

    def __init__(self, space: AllocationSpace, model: ChatModel, *, seed: int = 0, batch_size: int = 5,
                 objective: str = "score", task_description: str = "", temperature: float | None = 0.7,
                 max_tokens: int | None = 1024) -> None:
        super().__init__(space, seed=seed, batch_size=batch_size, objective=objective)
        self.model = model
        self.task_description = task_description
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._queue: list[Config] = []

    def prompt(self, k: int) -> str:
        tried = "\n".join(format_config(self.space, c) for c in sorted(self.proposed, key=str)) or "(none)"
        return (
            f"{describe_problem(self.space, self.task_description)}\n\n"
            f"Already proposed (do not repeat):\n{tried}\n\n"
            f"Propose {k} different configurations that you expect to score best within the budget. "
            'Return {"candidates": [{"<subtask>": {"model": "<name>", "samples": <int>}, ...}, ...]} '
            "with every subtask in every candidate."
        )

    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        if not self._queue:
            want = max(k, self.batch_size)
            reply = await ask_json(self.model, self.prompt(want), candidates_schema(self.space, want),
                                   "tts_candidates", temperature=self.temperature,
                                   max_tokens=self.max_tokens, seed=self.seed + self._counters.get("llm_calls", 0))
            self.count("llm_calls")
            if reply.error:
                self.count("llm_failures")
                self.note(reply.error)
            raw, extra = take_candidates(reply.data, want)
            if extra:
                self.count("dropped", extra)
                self.note(f"{extra} candidates beyond the {want} asked for were ignored")
            checked = validate_candidates(self.space, raw)
            for reason in checked.dropped:
                self.count("dropped")
                self.note(reason)
            for note in checked.repaired:
                self.count("repaired")
                self.note(note)
            for cfg in checked.configs:
                if self.take(cfg) is not None:
                    self._queue.append(cfg)
                else:
                    self.count("dropped")
                    self.note(f"repeat of an earlier proposal dropped: {self.space.format_config(cfg)}")
            filled = 0
            while len(self._queue) < want:
                cfg = self.fresh_random()
                if cfg is None:
                    break
                filled += 1
                self._queue.append(cfg)
            if filled:
                self.count("random_fill", filled)
                self.note(f"{filled} of {want} candidates filled at random "
                          "(the model's batch had too few usable ones)")
        out, self._queue = self._queue[:k], self._queue[k:]
        return out
