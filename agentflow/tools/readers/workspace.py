"""The readers' workspace: the shared folder confinement plus the rules a document reader needs.

A GAIA worker reads attachments named by a model; a model can name ``../../etc/passwd`` or a
symlink that points outside. Every reader resolves paths through ``Workspace.resolve`` first. The
containment check itself (symlinks followed, anything outside the root refused with
``SandboxViolationError``) is ``agentflow.tools.workspace.Workspace``, shared with the file
tools; this subclass only adds what reading a document means: the path must name a file that
exists, and other failures are ``ReaderError`` like the rest of the readers' errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentflow.tools import workspace
from agentflow.tools.readers.errors import ReaderError


class Workspace(workspace.Workspace):
    """A root folder; ``resolve`` maps a user-supplied path to a real, existing path inside it."""

    root_error = ReaderError
    escape_hint = "Only files inside the workspace can be read; use a path relative to it."

    def resolve(self, path: str | os.PathLike[str], *, must_exist: bool = True) -> Path:
        """The real path of ``path`` (relative to the root, or absolute inside it).

        Raises ``SandboxViolationError`` for anything that leaves the root, including through a
        symlink, and ``ReaderError`` for an empty path or (with ``must_exist``) a missing file.
        """
        raw = os.fspath(path).strip()
        if not raw:
            # the shared Workspace reads "" as the root folder; a reader needs a file
            raise ReaderError("empty path", hint="give a file path relative to the workspace root")
        real = super().resolve(raw)
        if must_exist and not real.exists():
            raise ReaderError(f"no such file: {raw}", hint="list the workspace files to find the right name")
        return real
