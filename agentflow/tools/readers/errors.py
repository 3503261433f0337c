"""Errors raised by the document readers.

They surface to a model as error tool results (the tool layer turns exceptions into results), so
each message says what to try next.
"""

from __future__ import annotations

from agentflow.errors import ConfigurationError, ToolError

#: the pip extra that installs every reader's optional library
READERS_EXTRA = "gaia"


class ReaderError(ToolError):
    """A file cannot be read: missing, too large, unsupported or damaged."""


class MissingDependencyError(ConfigurationError):
    """The library a reader needs is not installed; the message names the extra that installs it."""

    def __init__(self, package: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package {package!r}, which is not installed",
            hint=f"pip install 'agentflow[{READERS_EXTRA}]' (or pip install {package})",
        )
        self.package = package


def require(module: str, package: str, purpose: str):
    """Import an optional library or raise ``MissingDependencyError`` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package, purpose) from None
