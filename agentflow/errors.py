"""One exception hierarchy for the whole framework.

Every error carries a message that tells the user what to do next. Malformed *model output* is
deliberately not represented here as something that escapes a run: the worker, planner and critic
turn it into feedback, retries or a recorded node failure. These exceptions are for conditions a
human has to act on (no server, bad configuration, exhausted budget) or for internal signalling
that is caught at a well-defined boundary.
"""

from __future__ import annotations


class AgentflowError(Exception):
    """Root of every agentflow exception.

    ``hint`` is the actionable part of the message ("start vLLM with ...", "raise --max-tokens").
    It is appended to ``str(error)`` so that a bare ``print(error)`` already tells the user what
    to do.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}\n  -> {hint}")


class ConfigurationError(AgentflowError):
    """The user's configuration cannot work (missing model name, invalid option combination)."""


# --- model backends -----------------------------------------------------------------------------


class ModelError(AgentflowError):
    """A model backend could not produce a response."""

    #: whether retrying the same request later can succeed (transport trouble, overload)
    retryable: bool = False


class EndpointUnreachableError(ModelError):
    """Nothing is listening at the configured base URL, or the connection dropped."""

    retryable = True


class ModelTimeoutError(ModelError):
    """The server accepted the request but did not answer within the timeout."""

    retryable = True


class RateLimitedError(ModelError):
    """HTTP 429. ``retry_after`` holds the server's Retry-After hint in seconds, if it sent one."""

    retryable = True

    def __init__(self, message: str, *, hint: str | None = None, retry_after: float | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class ServerError(ModelError):
    """HTTP 5xx from the model server."""

    retryable = True


class BadRequestError(ModelError):
    """HTTP 4xx other than 429: retrying the identical request cannot help."""


class ContextLengthExceededError(BadRequestError):
    """The prompt plus ``max_tokens`` does not fit the model's context window."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        max_context: int | None = None,
        prompt_tokens: int | None = None,
    ):
        super().__init__(message, hint=hint)
        self.max_context = max_context
        self.prompt_tokens = prompt_tokens


class AuthenticationError(BadRequestError):
    """HTTP 401/403: the API key is missing or wrong."""


class ModelNotFoundError(BadRequestError):
    """The server does not serve the requested model name."""


class UnsupportedFeatureError(ModelError):
    """A request needs a capability the backend lacks and no faithful fallback exists."""


class ScriptExhaustedError(ModelError):
    """A ScriptedModel was called more often than its script provides for (a test bug)."""


# --- tools --------------------------------------------------------------------------------------


class ToolError(AgentflowError):
    """A tool is misdefined (bad signature, duplicate name). Runtime tool failures are tool results."""


class SandboxViolationError(ToolError):
    """A file or code tool was asked to reach outside its workspace."""


# --- orchestration ------------------------------------------------------------------------------


class PlanValidationError(AgentflowError):
    """A plan is not a valid DAG (cycle, dangling reference, limits) and could not be repaired."""


class BudgetExceededError(AgentflowError):
    """An operation would exceed the compute budget and no cheaper fallback remains."""


class RunCancelledError(AgentflowError):
    """The run was cancelled by the user or by a deadline."""
