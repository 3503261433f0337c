"""The model registry: what the budget layer knows about each model it may allocate.

A cost model needs a model's parameter count (FLOPs) or its prices (dollars); the runtime needs
to know which models are *smaller* than a given one so it can degrade under budget pressure, and
where each one is served. One ``ModelSpec`` per model holds exactly that, and a ``ModelRegistry``
is the ordered, validated collection that the allocator, the tracker and the search space share.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentflow.errors import ConfigurationError


class ModelPrice(BaseModel):
    """Prices in dollars per million tokens, as providers publish them."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    #: price of prompt tokens served from the provider's prefix cache; ``None`` means "same as input"
    cached_input_per_mtok: float | None = Field(default=None, ge=0)


class ModelSpec(BaseModel):
    """One allocatable model."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    #: the name requests carry in ``ChatRequest.model`` and responses report
    name: str = Field(min_length=1)
    #: parameter count (e.g. ``7e9``); drives the FLOPs cost and the "smaller model" order
    params: float = Field(gt=0)
    #: base URL of the OpenAI-compatible server that serves it, when it differs per model
    endpoint: str | None = None
    prices: ModelPrice = Field(default_factory=ModelPrice)
    context_window: int | None = Field(default=None, gt=0)

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("model name must not be blank")
        return value


_SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])")


def guess_params(name: str) -> float | None:
    """Parameter count from a model name's size tag ("Qwen2.5-7B-Instruct" -> 7e9,
    "llama-3.1-70b" -> 70e9, "smollm-360M" -> 3.6e8); ``None`` without one.

    AgentTTS read sizes from names the same way; a registry entry is still the reliable source.
    """
    found = _SIZE.findall(name.split("/")[-1])
    if not found:
        return None
    value, unit = found[-1]
    return float(value) * (1e9 if unit in "bB" else 1e6)


class ModelRegistry:
    """Models by name, kept in ascending parameter order (ties keep insertion order).

    The order matters: degradation walks it downwards, and strategies list candidates in it.
    """

    def __init__(self, specs: Iterable[ModelSpec] = ()) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: ModelSpec) -> ModelSpec:
        if spec.name in self._specs:
            raise ConfigurationError(
                f"model {spec.name!r} is registered twice",
                hint="give each registry entry a unique name",
            )
        self._specs[spec.name] = spec
        ordered = sorted(self._specs.values(), key=lambda s: s.params)
        self._specs = {s.name: s for s in ordered}
        return spec

    def ensure(self, name: str, params: float | None = None) -> ModelSpec:
        """The entry for ``name``, adding one when missing (size from ``params`` or the name).

        Raises ``ConfigurationError`` when the model is unknown and its size cannot be told.
        """
        if name in self._specs:
            return self._specs[name]
        size = params if params is not None else guess_params(name)
        if size is None:
            raise ConfigurationError(
                f"the parameter count of model {name!r} is unknown",
                hint="register it (ModelSpec(name=..., params=7e9)) or use a token or dollar budget",
            )
        return self.add(ModelSpec(name=name, params=size))

    def get(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self._specs) or "(none)"
            raise ConfigurationError(
                f"model {name!r} is not in the budget registry (known: {known})",
                hint="register it with ModelRegistry.add(ModelSpec(name=..., params=...))",
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def smaller_than(self, name: str, among: Iterable[str] | None = None) -> list[ModelSpec]:
        """Models with fewer parameters than ``name``, largest first (the degradation order)."""
        ref = self.get(name)
        allowed = set(among) if among is not None else None
        out = [s for s in self._specs.values()
               if s.params < ref.params and (allowed is None or s.name in allowed)]
        return sorted(out, key=lambda s: -s.params)

    def to_dict(self) -> dict[str, Any]:
        return {"models": [s.model_dump(mode="json") for s in self._specs.values()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRegistry:
        """Build from ``{"models": [{"name": ..., "params": ..., ...}, ...]}``."""
        entries = data.get("models")
        if not isinstance(entries, list):
            raise ConfigurationError(
                "a registry document needs a 'models' list",
                hint='write {"models": [{"name": "llama-8b", "params": 8e9}]}',
            )
        try:
            return cls(ModelSpec.model_validate(e) for e in entries)
        except ValidationError as exc:
            raise ConfigurationError(
                f"invalid model registry entry: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}",
                hint="each entry needs a name and a positive params count",
            ) from None

    @classmethod
    def from_json(cls, path: str | Path) -> ModelRegistry:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"cannot read model registry {path}: {exc}",
                                     hint="point at a readable JSON file") from None
        return cls.from_dict(data)

    def __repr__(self) -> str:
        return f"ModelRegistry({', '.join(f'{s.name}:{s.params:.3g}' for s in self)})"
