"""Insight-seeded initial probes (AgentTTS finding 1: subtasks prefer different models).

The budget is first split into *shares*, in proportion to what one sample of each subtask's
largest candidate costs (a subtask with long prompts or long outputs needs more compute whatever
model it ends up on). A probe of subtask ``i`` with model ``m`` then gives subtask ``i`` its share
— as many samples of ``m`` as the share affords, so a small model gets many and a large one few —
while every other subtask runs its smallest candidate with as many samples as its own share
affords. The other subtasks are identical across the probes of ``i`` and reasonably strong, so
the end-to-end score is sensitive to subtask ``i`` and differences between its probes are its
own: "at equal cost, which model does this subtask prefer?".

When one sample of ``m`` costs more than the share, the probe gives it exactly that and shrinks
the others' shares to pay for it; a model that does not fit at all is reported and not probed.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentflow.budget.space import AllocationSpace, Config, SubtaskChoice


@dataclass(frozen=True)
class Probe:
    subtask: int
    model: str
    spend: float
    config: Config


def budget_shares(space: AllocationSpace) -> list[float]:
    """Per-subtask budget in proportion to one sample of its largest candidate."""
    unit = [max(space.choice_cost(i, SubtaskChoice(model=m, samples=space.levels(i)[0])) for m in s.models)
            for i, s in enumerate(space.subtasks)]
    total = sum(unit)
    if total <= 0:
        return [space.budget / len(space)] * len(space)
    return [space.budget * u / total for u in unit]


def fill(space: AllocationSpace, models: list[str], spends: list[float]) -> Config | None:
    """Each subtask on its model with the most samples its spend affords (None: one does not fit)."""
    picks = []
    for i, (m, spend) in enumerate(zip(models, spends, strict=True)):
        samples = space.max_samples_for(i, m, spend)
        if samples is None:
            return None
        picks.append(SubtaskChoice(model=m, samples=samples))
    return tuple(picks)


def place(space: AllocationSpace, models: list[str], spends: list[float]) -> Config | None:
    """``models`` at about the given spends (scaled to the budget when they exceed it).

    A subtask whose spend cannot pay one sample of its model gets exactly one sample, and the
    difference is taken from the others in proportion to what they have above their own one
    sample. ``None`` when one sample everywhere does not fit the budget.
    """
    k = len(models)
    floor = [space.choice_cost(i, SubtaskChoice(model=m, samples=space.levels(i)[0])) for i, m in enumerate(models)]
    if sum(floor) > space.budget + 1e-9:
        return None
    spends = [max(0.0, s) for s in spends]
    total = sum(spends)
    if total > space.budget:
        spends = [s * space.budget / total for s in spends]
    short = sum(max(0.0, floor[i] - spends[i]) for i in range(k))
    if short > 0:
        spare = [max(0.0, spends[i] - floor[i]) for i in range(k)]
        pool = sum(spare)
        spends = [floor[i] if spends[i] <= floor[i] else
                  spends[i] - (short * spare[i] / pool if pool > 0 else 0.0) for i in range(k)]
    cfg = fill(space, models, [max(s, f) for s, f in zip(spends, floor, strict=True)])
    if cfg is None:
        return None
    return cfg if space.cost(cfg) <= space.budget + 1e-9 else space.repair(cfg)


def insight_probes(space: AllocationSpace) -> tuple[list[Probe], list[str]]:
    """The probes, and notes on candidates that could not be probed."""
    shares = budget_shares(space)
    k = len(space)
    smallest = [space.models_by_size(i)[0] for i in range(k)]
    probes: list[Probe] = []
    notes: list[str] = []
    for i, sub in enumerate(space.subtasks):
        others_min = sum(space.choice_cost(j, SubtaskChoice(model=smallest[j], samples=space.levels(j)[0]))
                         for j in range(k) if j != i)
        for model in space.models_by_size(i):
            one = space.choice_cost(i, SubtaskChoice(model=model, samples=space.levels(i)[0]))
            spend = max(shares[i], one)
            if spend > space.budget - others_min + 1e-9:
                notes.append(f"{sub.name}: one sample of {model} does not fit the budget next to the "
                             "cheapest choice elsewhere; not probed")
                continue
            spends = list(shares)
            spends[i] = spend
            models = list(smallest)
            models[i] = model
            config = place(space, models, spends)
            if config is None:
                notes.append(f"{sub.name}: {model} cannot be placed within the budget; not probed")
                continue
            # the same configuration can probe two subtasks (the smallest models everywhere); it
            # is listed for both and measured once
            probes.append(Probe(subtask=i, model=model, spend=spend, config=config))
    return probes, notes
