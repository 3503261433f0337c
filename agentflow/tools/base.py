"""``Tool``: a Python function a model can call, and the ``@tool`` decorator that makes one.

A tool is built once from the function's signature and docstring (see ``schema.py``) and then
invoked many times with whatever the model sent. ``Tool.invoke`` is the boundary where model
mistakes and tool failures turn into ``ToolResult``s: it never raises, except that task
cancellation (``asyncio.CancelledError``) propagates so that cancelling a run really stops it.

Sync functions run in a worker thread (``asyncio.to_thread``) so that a slow tool cannot stall the
event loop and the other nodes of a plan. A timed-out sync function cannot be killed (Python has no
way to stop a thread); its result is discarded and the thread finishes in the background. Async
functions are cancelled on timeout.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, overload

from pydantic import ValidationError

from agentflow.errors import SandboxViolationError, ToolError
from agentflow.llm.types import ToolSpec
from agentflow.tools.arguments import (
    ArgumentParseError,
    format_validation_error,
    parse_arguments,
    signature_summary,
)
from agentflow.tools.docstrings import parse_docstring
from agentflow.tools.output import serialize_output, truncate_output
from agentflow.tools.result import ErrorKind, ToolFailure, ToolResult
from agentflow.tools.schema import StrictSchemaError, build_arguments, strip_nulls, to_strict_schema

logger = logging.getLogger(__name__)

#: the function-name pattern OpenAI (and vLLM's parsers) accept
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_OUTPUT_CHARS = 8000


def validate_tool_name(name: Any) -> str:
    if not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name):
        raise ToolError(
            f"Invalid tool name {name!r}: tool names must be 1-64 characters of letters, digits, '_' or '-'.",
            hint="Pass a valid name explicitly, e.g. @tool(name=\"search_web\").",
        )
    return name


async def _within(awaitable: Any, timeout: float) -> Any:
    """``asyncio.wait_for`` without its extra task on 3.11+ (it dominated the cost of fast tools)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout)


def _is_async_callable(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - we need the method itself, not callable()
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


class Tool:
    """A callable the model can use: name, description, JSON-schema parameters and execution policy.

    Calling the ``Tool`` object directly (``add(1, 2)``) calls the wrapped function unchanged, so
    decorating a function does not break ordinary Python callers.

    A tool function may return any value (serialized by ``output.serialize_output``), a
    ``ToolResult`` (its ``content``/``is_error``/``error_kind`` are used as given), or raise
    ``ToolFailure`` to send a specific message and error kind to the model.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        side_effects: bool = False,
    ) -> None:
        if not callable(fn):
            raise ToolError(f"tool() needs a function, got {type(fn).__name__}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise ToolError(
                f"Tool function {getattr(fn, '__name__', fn)!r} is a generator; a tool returns one result.",
                hint="Return a list (or a joined string) instead of yielding items.",
            )
        fn_name = getattr(fn, "__name__", None)
        if name is None and (fn_name is None or fn_name == "<lambda>"):
            raise ToolError(
                f"Cannot derive a tool name from {fn!r}.", hint="Pass one explicitly: tool(fn, name=\"...\")."
            )
        self.name: str = validate_tool_name(name if name is not None else fn_name)
        if timeout is not None and not timeout > 0:
            raise ToolError(f"Tool {self.name!r}: timeout must be a positive number of seconds or None, got {timeout!r}")
        if max_output_chars < 1:
            raise ToolError(f"Tool {self.name!r}: max_output_chars must be positive, got {max_output_chars!r}")

        doc = parse_docstring(inspect.getdoc(fn))
        if description is None:
            description = doc.description
            if doc.returns:
                description = f"{description}\n\nReturns: {doc.returns}".strip()
        self.description: str = description
        self.timeout: float | None = timeout
        self.max_output_chars: int = max_output_chars
        self.side_effects: bool = side_effects
        self.fn: Callable[..., Any] = fn
        self._is_async = _is_async_callable(fn)
        self._arguments = build_arguments(fn, tool_name=self.name, doc_params=doc.params)
        self._specs: dict[bool, ToolSpec] = {}
        self.__wrapped__ = fn
        self.__doc__ = getattr(fn, "__doc__", None)

    # --- description ---------------------------------------------------------------------------

    @property
    def parameters(self) -> dict[str, Any]:
        """JSON schema of the arguments object (plain flavour; treat as read-only)."""
        return self._arguments.schema

    def spec(self, *, strict: bool = False) -> ToolSpec:
        """The function definition sent to the model.

        ``strict=True`` produces a schema OpenAI strict mode accepts (all properties required,
        defaults expressed as nullable; see ``agentflow.tools.schema``) and sets ``ToolSpec.strict``.
        Raises ``ToolError`` when the parameters cannot be expressed strictly (free-form dicts).
        """
        cached = self._specs.get(strict)
        if cached is None:
            if strict:
                try:
                    params = to_strict_schema(self.parameters)
                except StrictSchemaError as exc:
                    raise StrictSchemaError(f"Tool {self.name!r}: {exc.message}", hint=exc.hint) from exc
            else:
                params = self.parameters
            cached = ToolSpec(name=self.name, description=self.description, parameters=params, strict=strict)
            self._specs[strict] = cached
        return cached.model_copy()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, timeout={self.timeout!r}, side_effects={self.side_effects!r})"

    # --- execution -------------------------------------------------------------------------------

    async def invoke(self, arguments: dict[str, Any] | str | None, *, call_id: str = "") -> ToolResult:
        """Validate ``arguments``, run the function and package the outcome. Never raises (except
        ``CancelledError``, which always propagates)."""
        start = time.perf_counter()

        def result(content: str, kind: ErrorKind | None = None, *, is_error: bool | None = None,
                   truncated: bool = False) -> ToolResult:
            content, cut = truncate_output(content, self.max_output_chars)
            return ToolResult(
                call_id=call_id, name=self.name, content=content,
                is_error=(kind is not None) if is_error is None else is_error, error_kind=kind,
                truncated=truncated or cut, duration_s=time.perf_counter() - start,
            )

        try:
            raw, _ = parse_arguments(arguments)
        except ArgumentParseError as exc:
            return result(
                f"Could not read the arguments for tool '{self.name}': {exc}.\n"
                f"Expected arguments: {signature_summary(self.parameters)}.\n"
                f"Call '{self.name}' again with a JSON object.",
                "validation",
            )
        model = self._arguments.model
        try:
            validated = model.model_validate(strip_nulls(model, raw))
        except ValidationError as exc:
            return result(format_validation_error(self.name, exc, self.parameters), "validation")

        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in self._arguments.params:
            value = getattr(validated, param.attr)
            if param.positional_only:
                args.append(value)
            else:
                kwargs[param.key] = value

        try:
            if self.timeout is None:
                value, error = await self._call(args, kwargs)
            else:
                value, error = await _within(self._call(args, kwargs), self.timeout)
        except asyncio.TimeoutError:
            if not self._is_async:
                logger.warning("tool %r timed out after %ss; its thread keeps running in the background",
                               self.name, self.timeout)
            return result(
                f"Tool '{self.name}' did not finish within its time limit of {self.timeout:g} s and was stopped. "
                "Try a smaller input or a different approach.",
                "timeout",
            )

        if error is not None:
            return self._error_result(error, result)
        if isinstance(value, ToolResult):
            return result(value.content, value.error_kind, is_error=value.is_error, truncated=value.truncated)
        return result(serialize_output(value))

    async def _call(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, Exception | None]:
        # Exceptions are returned, not raised, so that a TimeoutError raised *by the tool* cannot
        # be mistaken for our own time limit expiring.
        try:
            if self._is_async:
                value = await self.fn(*args, **kwargs)
            else:
                value = await asyncio.to_thread(self.fn, *args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            return value, None
        except Exception as exc:
            return None, exc

    def _error_result(self, error: Exception, result: Callable[..., ToolResult]) -> ToolResult:
        if isinstance(error, ToolFailure):
            return result(error.message, error.kind)
        if isinstance(error, SandboxViolationError):
            return result(str(error), "sandbox")
        message = str(error).strip()
        logger.info("tool %r raised %s: %s", self.name, type(error).__name__, message[:500])
        logger.debug("tool %r traceback", self.name, exc_info=error)
        text = f"Tool '{self.name}' raised {type(error).__name__}"
        return result(f"{text}: {message}" if message else text, "exception")


@overload
def tool(
    fn: Callable[..., Any],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    side_effects: bool = False,
) -> Tool: ...


@overload
def tool(
    fn: str | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    side_effects: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | str | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
    side_effects: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a ``Tool`` from a sync or async function.

    Usable bare (``@tool``), with options (``@tool(name="search", timeout=10)``), with a name
    positionally (``@tool("search")``) or as a plain call (``tool(fn, name=...)``).
    ``side_effects=True`` marks tools that change the world (write files, send mail), so that
    schedulers and replay know they must not be re-run speculatively.
    """
    if isinstance(fn, str):
        if name is not None:
            raise ToolError("tool(): give the name either positionally or as name=..., not both")
        name, fn = fn, None

    def wrap(func: Callable[..., Any]) -> Tool:
        return Tool(func, name=name, description=description, timeout=timeout,
                    max_output_chars=max_output_chars, side_effects=side_effects)

    return wrap(fn) if fn is not None else wrap
