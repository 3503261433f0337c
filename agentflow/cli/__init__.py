"""The ``agentflow`` command."""

from agentflow.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
