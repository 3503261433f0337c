"""Confine model-supplied paths to one folder.

A model can name ``../../etc/passwd``, an absolute path elsewhere, or a symlink inside the folder
that points outside it. ``Workspace.resolve`` follows every symlink and refuses anything whose real
location is outside the root with ``SandboxViolationError`` (an ``error_kind="sandbox"`` tool
result). A symlink *inside* the workspace that points to another place inside it is fine. (A
symlink swapped in between the check and the open could still race the check; the confinement
keeps an honest model in its lane, it does not stop a local attacker.)

This is the one implementation of that check: the file tools (``agentflow.tools.builtin.files``)
use it as is, and the document readers (``agentflow.tools.readers.workspace``) extend it with
their missing-file and error-type rules, so a fix to the containment logic reaches every tool.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentflow.errors import SandboxViolationError, ToolError


class Workspace:
    """A directory that model-supplied paths may not leave.

    Subclasses adjust two class attributes instead of re-implementing the checks.
    """

    #: raised when the root is not an existing directory; a subclass narrows it to its error family
    root_error: type[ToolError] = ToolError
    #: the hint of a ``SandboxViolationError``; a subclass names the tools its model actually has
    escape_hint: str = ("Use paths relative to the workspace root, e.g. 'data/report.txt'; "
                        "call list_files to see what exists.")

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise self.root_error(f"Workspace {str(root)!r} is not an existing directory.",
                                  hint="Create the directory first or pass another path.")
        self.root = path.resolve()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """The real path of ``path`` (relative to the root, or absolute inside it; empty means the root).

        Raises ``SandboxViolationError`` for a NUL byte or anything whose real location, after
        following every symlink, is outside the root.
        """
        raw = os.fspath(path)
        if "\x00" in raw:
            raise SandboxViolationError(f"Path {raw!r} contains a NUL byte.", hint="Give a plain file path.")
        candidate = Path(raw.strip() or ".").expanduser()
        full = candidate if candidate.is_absolute() else self.root / candidate
        # resolve() follows every symlink in the chain, so the containment check sees the real target
        resolved = full.resolve()
        if not resolved.is_relative_to(self.root):
            reason = "is a symlink that points" if _has_symlink(full) else "is"
            raise SandboxViolationError(f"Access denied: {raw!r} {reason} outside the workspace.",
                                        hint=self.escape_hint)
        return resolved

    def relative(self, path: Path) -> str:
        """``path`` as shown to a model: relative to the root, with forward slashes (``.`` for the root)."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()


def _has_symlink(full: Path) -> bool:
    """Whether any component of ``full`` (below the filesystem root) is a symlink; only worded into the error."""
    current = Path(full.anchor)
    for part in full.parts[1:]:
        current = current / part
        if current.is_symlink():
            return True
    return False
