"""Confine file access to one folder.

A GAIA worker reads attachments named by a model; a model can name ``../../etc/passwd`` or a
symlink that points outside. Every reader resolves paths through ``Workspace.resolve`` first, which
follows symlinks and refuses anything whose real location is outside the root.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentflow.errors import SandboxViolationError
from agentflow.tools.readers.errors import ReaderError


class Workspace:
    """A root folder; ``resolve`` maps a user-supplied path to a real path inside it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            raise ReaderError(f"workspace {root_path} is not a directory",
                              hint="create it or point the tools at an existing folder")
        self.root = root_path.resolve()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def resolve(self, path: str | os.PathLike[str], *, must_exist: bool = True) -> Path:
        """The real path of ``path`` (relative to the root, or absolute inside it).

        Raises ``SandboxViolationError`` for anything that leaves the root, including through a
        symlink, and ``ReaderError`` for a missing file.
        """
        raw = os.fspath(path).strip()
        if not raw:
            raise ReaderError("empty path", hint="give a file path relative to the workspace root")
        if "\x00" in raw:
            raise SandboxViolationError("path contains a NUL byte", hint="give a plain file path")
        candidate = Path(raw).expanduser()
        if not candidate.is_absolute():
            candidate = self.root / candidate
        # resolve() follows every symlink in the chain, so the containment check sees the real target
        real = candidate.resolve(strict=False)
        if not real.is_relative_to(self.root):
            raise SandboxViolationError(
                f"{raw} is outside the workspace {self.root}",
                hint="only files inside the workspace can be read; use a path relative to it",
            )
        if must_exist and not real.exists():
            raise ReaderError(f"no such file: {raw}", hint="list the workspace files to find the right name")
        return real

    def relative(self, path: Path) -> str:
        """``path`` as shown to a model: relative to the root, with forward slashes."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()
