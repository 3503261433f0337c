"""``python -m agentflow`` runs the ``agentflow`` command."""

from agentflow.cli import main

main()
