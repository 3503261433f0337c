"""Insight-guided allocation search without an LLM.

AgentTTS's three findings, written as an algorithm so allocation works with no model in the loop:

1. **Subtasks prefer different models** -> *probe*. The budget is split into shares (in
   proportion to each subtask's cost per sample of its largest candidate); one probe per
   candidate model per subtask runs that subtask on the model at its share while the other
   subtasks run their smallest model at theirs (``probes.insight_probes``). The probes rank each
   subtask's candidates at equal cost, and the start configuration takes each subtask's winner.
2. **Gains from more samples saturate** -> *greedy ascent by marginal gain*. While budget is
   left, raise (about double) the sample count of the subtask whose last measured raise bought
   the most score per unit of cost; a stale estimate is re-measured before it is trusted (lazy
   greedy). A subtask whose raise stops paying has saturated and stops receiving budget — the
   optimal rule for concave returns.
3. **Subtasks are coupled through one budget** -> *rebalance*. When nothing more fits, move budget
   from the subtask with the lowest marginal value to the one with the highest (the donor steps
   down at most two ladder levels, the receiver up as far as that pays for). Coupling makes
   the estimates approximate, so every move is measured and kept only if the score improves.

Then the models are revisited at the spends the ascent settled on (a large model that lost at
probe spend may win with more budget): one subtask at a time switches model, with a short line
search over the new model's sample count — what its current spend affords, then about twice
that and twice again for a larger model (finding 2: find where it saturates), the other
subtasks paying in proportion, a squeezed one moving to a smaller model — stopping when the
score drops; the ascent reruns from the best point of the line, and a result that beats the
incumbent replaces it. Larger models the probes could afford only once or twice go first (one or
two samples understate a model), then the rest by how close they came to their subtask's winner.
Finally a first-improvement local search over a wider neighbourhood (budget moves of one to four
ladder levels between every pair of subtasks, model switches at equal spend, single raises).

Every replacement strictly improves the measured score, so the plan ends; remaining trials go to
unmeasured neighbours of the best configuration. Proposals never repeat: a move that lands on a
measured configuration is answered from memory, at no trial.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from agentflow.budget.search import Trial
from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice
from agentflow.budget.strategies.base import SearchStrategy
from agentflow.budget.strategies.probes import budget_shares, insight_probes, place

#: a batch of configurations to measure, answered with their scores (None: rejected)
Batch = list[Config]
Plan = Generator[Batch, list[float | None], None]


@dataclass
class _Step:
    """A measured move of one subtask: how much score per unit of cost it bought."""

    ratio: float
    base: Config


class InsightGuidedStrategy(SearchStrategy):
    name = "insight"

    def __init__(self, space: AllocationSpace, *, seed: int = 0, batch_size: int = 1,
                 objective: str = "score", min_gain: float = 0.0) -> None:
        super().__init__(space, seed=seed, batch_size=batch_size, objective=objective)
        #: a move must beat the current score by more than this to be kept
        self.min_gain = min_gain
        self._plan: Plan = self._search()
        self._queue: list[Config] = []
        self._batch: Batch = []
        self._started = False
        self._finished = False
        #: phase currently running (for diagnostics and tests)
        self.phase = "probe"
        self.probe_ranking: list[list[str]] = []

    # --- driver: turn the plan's batches into proposals -------------------------------------

    async def propose(self, history: Sequence[Trial], k: int) -> list[Config]:
        out: list[Config] = []
        while len(out) < k:
            if self._queue:
                out.append(self._queue.pop(0))
                continue
            if any(c not in self.results for c in self._batch):
                break  # wait for the outstanding measurements
            batch = self._advance()
            if batch is None:
                cfg = self._perturb()
                if cfg is None:
                    break
                out.append(cfg)
                continue
            self._batch = batch
            for cfg in batch:
                if cfg not in self.results and cfg not in self.proposed:
                    self.proposed.add(cfg)
                    self._queue.append(cfg)
        return out

    def _advance(self) -> Batch | None:
        """Feed the last batch's results to the plan and get the next batch (None: plan done)."""
        if self._finished:
            return None
        try:
            if not self._started:
                self._started = True
                batch = next(self._plan)
            else:
                batch = self._plan.send([self.results.get(c) for c in self._batch])
            while all(c in self.results for c in batch):
                # everything already measured: answer from memory without spending trials
                batch = self._plan.send([self.results.get(c) for c in batch])
            return batch
        except StopIteration:
            self._finished = True
            self.phase = "polish"
            return None

    # --- the plan ---------------------------------------------------------------------------

    def _search(self) -> Plan:
        space = self.space
        k = len(space)

        # 1. probes: rank each subtask's candidates at equal spend
        probes, notes = insight_probes(space)
        for n in notes:
            self.note(n)
        scores = yield [p.config for p in probes]
        probe_score: list[dict[str, float]] = [{} for _ in range(k)]
        probe_samples: list[dict[str, int]] = [{} for _ in range(k)]
        for p, s in zip(probes, scores, strict=True):
            if s is not None:
                probe_score[p.subtask][p.model] = max(s, probe_score[p.subtask].get(p.model, -math.inf))
                probe_samples[p.subtask][p.model] = p.config[p.subtask].samples
        self.probe_ranking = [
            sorted(space.subtasks[i].models,
                   key=lambda m, i=i: (-(probe_score[i].get(m, -math.inf)), space.registry.get(m).params))
            for i in range(k)
        ]

        # 2. start from the preferred models at their budget shares, and ascend
        shares = budget_shares(space)
        start = self._place(tuple(r[0] for r in self.probe_ranking), shares)
        self.phase = "start"
        (score,) = yield [start]
        best, best_score = yield from self._ascend(start, score if score is not None else -math.inf)

        # 3. revisit models (finding 1 again, now at the spends the ascent settled on): switch one
        #    subtask's model, line-search its sample count, ascend from the best point of that
        #    line, keep the result when it beats the incumbent; when no switch is left, widen
        #    the local search.
        def priority(i: int, model: str) -> tuple[int, float]:
            top = probe_score[i].get(self.probe_ranking[i][0], 0.0)
            deficit = top - probe_score[i].get(model, top - 1.0)
            # a larger model that its probe could afford only once or twice is understated by it
            # (finding 2: one or two samples sit far below the curve's ceiling): revisit it first
            understated = probe_samples[i].get(model, 1) <= 2 and \
                space.registry.get(model).params > space.registry.get(best[i].model).params
            return (0 if understated else 1, deficit)

        tried: set[tuple[Config, int, str]] = set()
        while True:
            options = [(i, m) for i in range(k) for m in space.subtasks[i].models
                       if m != best[i].model and (best, i, m) not in tried]
            if not options:
                yield from self._widen(best, best_score)
                return
            i, model = min(options, key=lambda im: priority(*im))
            tried.add((best, i, model))
            self.phase = "switch"
            line_best, line_score = None, -math.inf
            for cand in self._switch_line(best, i, model):
                (s,) = yield [cand]
                value = s if s is not None else -math.inf
                if value <= line_score:
                    break  # past the best sample count for this model
                line_best, line_score = cand, value
            if line_best is None:
                continue
            found, found_score = yield from self._ascend(line_best, line_score)
            if found_score > best_score + self.min_gain:
                best, best_score = found, found_score

    def _widen(self, best: Config, best_score: float) -> Generator[Batch, list[float | None], tuple[Config, float]]:
        """First-improvement local search over a wider neighbourhood of ``best``: every pairwise
        budget move with the donor one to four levels lower, every model switch at the same
        spend, every single raise that fits. Recentres on each improvement."""
        space = self.space
        k = len(space)
        while True:
            self.phase = "widen"
            neighbours: list[Config] = []
            for i in range(k):
                if (up := self._raise(best, i)) is not None:
                    neighbours.append(up)
                for model in space.subtasks[i].models:
                    if model != best[i].model and (cand := self._switch(best, i, model, 0)) is not None:
                        neighbours.append(cand)
                for j in range(k):
                    if i != j:
                        for levels in range(1, 5):
                            cand = self._exchange_exact(best, receiver=i, donor=j, levels=levels)
                            if cand is not None:
                                neighbours.append(cand)
            fresh = list(dict.fromkeys(c for c in neighbours if c not in self.results))
            self.rng.shuffle(fresh)
            improved = False
            for cand in fresh:
                (s,) = yield [cand]
                if s is not None and s > best_score + self.min_gain:
                    best, best_score, improved = cand, s, True
                    break
            if not improved:
                return best, best_score

    def _ascend(self, best: Config, best_score: float) -> Generator[Batch, list[float | None], tuple[Config, float]]:
        """Local ascent over spends with the models fixed: greedy raises, then rebalancing."""
        space = self.space
        k = len(space)
        up: dict[int, _Step] = {}  # last measured marginal ratio of raising subtask i
        down: dict[int, float] = {}  # marginal value of subtask i's last committed step

        # greedy ascent on the slack, by marginal gain per unit cost (finding 2)
        self.phase = "greedy"
        while True:
            moves = {i: m for i in range(k) if (m := self._raise(best, i)) is not None}
            if not moves:
                break
            committed = False
            while True:
                # lazy greedy: the best estimate (unmeasured = optimistic) is re-measured at the
                # current configuration unless it already was; a fresh winner is taken
                i = max(moves, key=lambda j: up[j].ratio if j in up else math.inf)
                if i in up and up[i].base == best:
                    if up[i].ratio > 0 and self._score(moves[i]) > best_score + self.min_gain:
                        down[i] = up[i].ratio
                        best, best_score = moves[i], self._score(moves[i])
                        committed = True
                    break
                (s,) = yield [moves[i]]
                gain = (s if s is not None else -math.inf) - best_score
                dc = max(space.cost(moves[i]) - space.cost(best), 1e-9)
                up[i] = _Step(ratio=gain / dc, base=best)
            if not committed:
                break  # no raise pays any more: the subtasks are saturated at this budget

        # rebalance: move budget from the lowest to the highest marginal value (finding 3)
        self.phase = "rebalance"
        improved = True
        while improved:
            improved = False
            pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
            pairs.sort(key=lambda ij: -((up[ij[0]].ratio if ij[0] in up else math.inf) - down.get(ij[1], 0.0)))
            for i, j in pairs:
                cand = self._exchange(best, receiver=i, donor=j)
                if cand is None:
                    continue
                (s,) = yield [cand]
                if s is not None and s > best_score + self.min_gain:
                    dc = max(space.cost(cand) - space.cost(best), 1e-9)
                    down[i] = up[i].ratio if i in up else (s - best_score) / dc
                    up[j] = _Step(ratio=down.get(j, 0.0), base=cand)
                    best, best_score, improved = cand, s, True
                    break
        return best, best_score

    # --- moves ------------------------------------------------------------------------------

    def _place(self, models: tuple[str, ...], spends: list[float]) -> Config:
        """``models`` at the given spends; made to fit when the models do not fit together."""
        cfg = place(self.space, list(models), spends)
        return cfg if cfg is not None else self._fit_models(
            tuple(SubtaskChoice(model=m, samples=self.space.levels(i)[0]) for i, m in enumerate(models)))

    def _fit_models(self, config: Config) -> Config:
        space = self.space
        current = list(config)
        while True:
            fixed = space.repair(tuple(current))
            if fixed is not None:
                return fixed
            i = max(range(len(current)), key=lambda j: space.choice_cost(j, current[j]))
            cheaper = [m for m in space.models_by_size(i)
                       if space.registry.get(m).params < space.registry.get(current[i].model).params]
            if not cheaper:
                return space.cheapest()
            current[i] = SubtaskChoice(model=cheaper[-1], samples=space.levels(i)[0])

    def _score(self, config: Config) -> float:
        value = self.results.get(config)
        return value if value is not None else -math.inf

    def _slack(self, config: Config) -> float:
        return self.space.budget - self.space.cost(config)

    def _with(self, config: Config, i: int, choice: SubtaskChoice) -> Config:
        return tuple(choice if j == i else c for j, c in enumerate(config))

    def _raise(self, config: Config, i: int) -> Config | None:
        """Subtask ``i`` about doubled (two ladder steps, else one), paid from the slack."""
        space = self.space
        levels = space.levels(i)
        pos = space.level_index(i, config[i].samples)
        slack = self._slack(config)
        base = space.choice_cost(i, config[i])
        for step in (2, 1):
            if pos + step < len(levels):
                choice = SubtaskChoice(model=config[i].model, samples=levels[pos + step])
                if space.choice_cost(i, choice) - base <= slack + 1e-9:
                    return self._with(config, i, choice)
        return None

    def _exchange(self, config: Config, *, receiver: int, donor: int, max_levels: int = 4) -> Config | None:
        """Move budget from ``donor`` to ``receiver``: the donor steps down the fewest ladder levels
        (at most ``max_levels``) that let the receiver step up at least one (with the slack's help)."""
        space = self.space
        d_levels = space.levels(donor)
        d_pos = space.level_index(donor, config[donor].samples)
        r_levels = space.levels(receiver)
        r_pos = space.level_index(receiver, config[receiver].samples)
        if r_pos + 1 >= len(r_levels):
            return None
        for down_to in range(d_pos - 1, max(-1, d_pos - 1 - max_levels), -1):
            lowered = self._with(config, donor, SubtaskChoice(model=config[donor].model, samples=d_levels[down_to]))
            spend = space.choice_cost(receiver, config[receiver]) + self._slack(lowered)
            samples = space.max_samples_for(receiver, config[receiver].model, spend)
            if samples is not None and samples > config[receiver].samples:
                return self._with(lowered, receiver, SubtaskChoice(model=config[receiver].model, samples=samples))
        return None

    def _exchange_exact(self, config: Config, *, receiver: int, donor: int, levels: int) -> Config | None:
        """Donor exactly ``levels`` ladder levels lower; receiver up as far as that affords."""
        space = self.space
        d_pos = space.level_index(donor, config[donor].samples)
        if d_pos - levels < 0:
            return None
        lowered = self._with(config, donor, SubtaskChoice(model=config[donor].model,
                                                          samples=space.levels(donor)[d_pos - levels]))
        spend = space.choice_cost(receiver, config[receiver]) + self._slack(lowered)
        samples = space.max_samples_for(receiver, config[receiver].model, spend)
        if samples is None or samples <= config[receiver].samples:
            return None
        return self._with(lowered, receiver, SubtaskChoice(model=config[receiver].model, samples=samples))

    def _switch_line(self, config: Config, i: int, model: str) -> list[Config]:
        """Points of the line search for subtask ``i`` on ``model``: first the samples its current
        spend (plus the slack) affords; for a larger model then about twice as many, and twice
        again (up to four points), paid for by the other subtasks in proportion to their spends
        (finding 2: search the new model's saturation point)."""
        space = self.space
        spend = space.choice_cost(i, config[i]) + self._slack(config)
        levels = space.levels(i)
        first = space.max_samples_for(i, model, spend)
        pos = levels.index(first) if first is not None else 0
        larger = space.registry.get(model).params > space.registry.get(config[i].model).params
        points: list[Config] = []
        for step in range(4 if larger else 1):
            if pos + 2 * step >= len(levels):
                break
            cand = self._switch(config, i, model, levels[pos + 2 * step])
            if cand is None:
                break
            if cand != config and cand not in points:
                points.append(cand)
        return points

    def _switch(self, config: Config, i: int, model: str, samples: int) -> Config | None:
        """Subtask ``i`` on ``samples`` samples of ``model``; the other subtasks share what is
        left in proportion to their current spends.

        A donor squeezed to one or two samples of its model moves to the largest smaller candidate
        that still affords three (else its smallest): at a small spend, a smaller model with a few
        samples beats one sample of a larger one (findings 1 and 2)."""
        space = self.space
        if samples == 0:  # as many as the subtask's current spend plus the slack affords
            spend = space.choice_cost(i, config[i]) + self._slack(config)
            found = space.max_samples_for(i, model, spend)
            if found is None:
                return None
            samples = found
        need = space.choice_cost(i, SubtaskChoice(model=model, samples=samples))
        spends = [space.choice_cost(j, c) for j, c in enumerate(config)]
        others = sum(spends) - spends[i]
        left = space.budget - need
        if left <= 0:
            return None
        scale = min(1.0, left / others) if others > 0 else 1.0
        models = [c.model for c in config]
        models[i] = model
        target = [spends[j] * scale for j in range(len(config))]
        target[i] = need
        for j in range(len(config)):
            if j != i and scale < 1.0:
                models[j] = self._donor_model(j, models[j], target[j])
        cand = place(space, models, target)
        if cand is None or cand[i].model != model or space.cost(cand) > space.budget:
            return None
        return cand

    def _donor_model(self, j: int, current: str, spend: float) -> str:
        space = self.space
        levels = space.levels(j)
        few = levels[min(1, len(levels) - 1)]
        enough = levels[min(2, len(levels) - 1)]
        have = space.max_samples_for(j, current, spend)
        if have is not None and have > few:
            return current
        size = space.registry.get(current).params
        smaller = [m for m in reversed(space.models_by_size(j)) if space.registry.get(m).params < size]
        for m in smaller:
            got = space.max_samples_for(j, m, spend)
            if got is not None and got >= enough:
                return m
        return smaller[-1] if smaller else current

    def _perturb(self) -> Config | None:
        """After the plan: unmeasured neighbours of the best configuration."""
        found = self.best()
        self.count("polish")
        return self.fresh_neighbour(found[0]) if found else self.fresh_random()
