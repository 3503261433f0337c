"""Symbolic handlers: registered Python functions a plan node can call instead of a model.

Decomposed Prompting's point is that some sub-tasks (sorting, counting, arithmetic, lookups) are
done better by code than by a model. A function node calls its function with the results of its
inputs as positional arguments (in ``inputs`` order; a map child gets its element first) and the
node's literal ``arguments`` as keywords.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agentflow.errors import ConfigurationError


class FunctionHandler:
    """A named Python callable (sync or async) usable as a plan node's handler.

    Args:
        fn: the callable.
        name: the name plans use (default: ``fn.__name__``).
        description: shown to the planner (default: the docstring's first paragraph).
        side_effects: the function changes the world; such nodes never start on unconfirmed
            inputs and get a feasibility check when those are enabled.
        threaded: run a sync function in a worker thread so a slow one does not block the loop.
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 side_effects: bool = False, threaded: bool = False) -> None:
        if not callable(fn):
            raise ConfigurationError(f"a function handler must be callable, got {type(fn).__name__}",
                                     hint="pass a function or an async function")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "")
        if not self.name or self.name == "<lambda>":
            raise ConfigurationError("a function handler needs a name", hint="pass name=... or register it in a dict")
        doc = inspect.getdoc(fn) or ""
        self.description = description if description is not None else doc.split("\n\n")[0].replace("\n", " ")
        self.side_effects = side_effects
        self.threaded = threaded
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature: inspect.Signature | None
        try:
            self.signature = inspect.signature(fn, eval_str=True)
        except Exception:  # unresolvable string annotations: the raw signature still binds correctly
            try:
                self.signature = inspect.signature(fn)
            except (TypeError, ValueError):
                self.signature = None

    def describe(self) -> str:
        params = str(self.signature) if self.signature is not None else "(...)"
        return f"{self.name}{params}" + (f": {self.description}" if self.description else "")

    def binding_problem(self, args: list[Any], kwargs: dict[str, Any]) -> str | None:
        """Why these arguments cannot be passed, phrased for the planner; None when they can."""
        if self.signature is None:
            return None
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            return (f"function '{self.name}{self.signature}' cannot take {len(args)} input value(s) and "
                    f"arguments {sorted(kwargs)}: {exc}")
        return None

    async def __call__(self, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.fn(*args, **kwargs)
        if self.threaded:
            return await asyncio.to_thread(self.fn, *args, **kwargs)
        result = self.fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


FunctionsLike = Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any] | FunctionHandler]


class FunctionRegistry:
    """Functions by name. Accepts a ``{name: fn}`` mapping or an iterable of functions/handlers."""

    def __init__(self, functions: FunctionsLike | None = None) -> None:
        self._by_name: dict[str, FunctionHandler] = {}
        if functions is None:
            return
        items: Iterable[Any]
        if isinstance(functions, Mapping):
            items = [fn if isinstance(fn, FunctionHandler) and fn.name == name else FunctionHandler(
                fn.fn if isinstance(fn, FunctionHandler) else fn, name=name) for name, fn in functions.items()]
        else:
            items = [fn if isinstance(fn, FunctionHandler) else FunctionHandler(fn) for fn in functions]
        for handler in items:
            self.add(handler)

    def add(self, handler: FunctionHandler) -> None:
        if handler.name in self._by_name:
            raise ConfigurationError(f"function {handler.name!r} is registered twice", hint="give each a unique name")
        self._by_name[handler.name] = handler

    def get(self, name: str | None) -> FunctionHandler | None:
        return self._by_name.get(name) if name else None

    def names(self) -> list[str]:
        return list(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self):
        return iter(self._by_name.values())


def symbolic(name: str | None = None, *, description: str | None = None, side_effects: bool = False,
             threaded: bool = False) -> Callable[[Callable[..., Any]], FunctionHandler]:
    """Decorator form of :class:`FunctionHandler`: ``@symbolic()`` above a function."""

    def wrap(fn: Callable[..., Any]) -> FunctionHandler:
        return FunctionHandler(fn, name=name, description=description, side_effects=side_effects, threaded=threaded)

    return wrap
