"""Read-only file tools confined to a workspace directory: ``list_files`` and ``read_file``.

Every path a model sends goes through ``agentflow.tools.workspace.Workspace`` (re-exported here):
it is resolved (following symlinks) and must land inside the workspace root; ``..`` escapes,
absolute paths elsewhere and symlinks pointing outside are refused with an ``error_kind="sandbox"``
result, while a symlink inside the workspace that points to another place inside it is fine.

Files are read as text in chunks of at most ``max_chars`` characters; the result ends with the
``offset`` to pass for the next chunk, so a model can page through a large file instead of
flooding its context. Binary files are recognized (NUL bytes / undecodable content) and reported
with their size and kind instead of being dumped as mojibake.
"""

# No ``from __future__ import annotations`` here: the tool signatures below use closure variables
# in ``Annotated`` metadata, which must be evaluated when the functions are defined.

import codecs
import fnmatch
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field

from agentflow.tools.base import Tool
from agentflow.tools.result import ToolFailure
from agentflow.tools.workspace import Workspace

DEFAULT_MAX_CHARS = 20_000
MAX_LIST_ENTRIES = 500
_SNIFF_BYTES = 8192

_MAGIC = [
    (b"%PDF", "PDF document"), (b"\x89PNG", "PNG image"), (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF8", "GIF image"), (b"PK\x03\x04", "ZIP archive (also docx/xlsx/pptx)"),
    (b"\x1f\x8b", "gzip archive"), (b"\x7fELF", "ELF executable"), (b"RIFF", "RIFF media (wav/avi/webp)"),
    (b"SQLite format 3", "SQLite database"), (b"PAR1", "Parquet file"), (b"\xd0\xcf\x11\xe0", "legacy Office document"),
]


def _binary_kind(head: bytes) -> str | None:
    """A description of the file type when ``head`` looks binary, else None."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    if b"\x00" in head:
        return "binary data"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        # not UTF-8: treat as text only if it is mostly printable Latin-1
        printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
        if printable < 0.9 * len(head):
            return "binary data (not UTF-8 text)"
    return None


def _encoding_for(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        return "latin-1"


def file_tools(root: str | os.PathLike[str], *, max_chars: int = DEFAULT_MAX_CHARS) -> list[Tool]:
    """``list_files`` and ``read_file`` confined to ``root``."""
    workspace = Workspace(root)
    chunk_chars = max_chars

    def list_files(
        path: Annotated[str, Field(description="Directory to list, relative to the workspace root.")] = ".",
        pattern: Annotated[str | None, Field(description="Optional glob such as '*.csv' matched against "
                                                          "file names (or paths below `path` when it contains '/').")] = None,
        recursive: Annotated[bool, Field(description="Also list subdirectories' contents.")] = False,
    ) -> str:
        """List files and directories in the workspace, with sizes. Directories end with '/'."""
        directory = workspace.resolve(path)
        if not directory.exists():
            raise ToolFailure(f"No such directory {path!r} in the workspace. Call list_files('.') to see what exists.")
        if not directory.is_dir():
            raise ToolFailure(f"{path!r} is a file, not a directory; use read_file to read it.")
        entries: list[str] = []
        total = 0
        for current, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            here = Path(current)
            names = [(d, True) for d in dirnames] + [(f, False) for f in sorted(filenames)]
            for name, is_dir in names:
                full = here / name
                target = full.relative_to(workspace.root).as_posix()
                if pattern:
                    # a bare pattern matches names; one with '/' matches paths below the listed directory
                    subject = full.relative_to(directory).as_posix() if "/" in pattern else name
                    if not fnmatch.fnmatch(subject, pattern):
                        continue
                total += 1
                if len(entries) >= MAX_LIST_ENTRIES:
                    continue
                if full.is_symlink() and not full.resolve().is_relative_to(workspace.root):
                    entries.append(f"{target} -> (link outside the workspace, not accessible)")
                elif is_dir:
                    entries.append(f"{target}/")
                else:
                    try:
                        size = full.stat().st_size
                        entries.append(f"{target}  ({size:,} bytes)")
                    except OSError:
                        entries.append(f"{target}  (unreadable)")
            if not recursive:
                break
            # never descend into symlinked directories (they may lead outside the workspace)
            dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
        shown = workspace.relative(directory)
        if not entries:
            return f"No entries in '{shown}'" + (f" matching {pattern!r}." if pattern else ".")
        header = f"{total} entr{'y' if total == 1 else 'ies'} in '{shown}'" + (" (recursive)" if recursive else "") + ":"
        footer = (
            f"\n[only the first {MAX_LIST_ENTRIES} entries are shown; use a pattern or a subdirectory to narrow it]"
            if total > MAX_LIST_ENTRIES else ""
        )
        return header + "\n" + "\n".join(entries) + footer

    def read_file(
        path: Annotated[str, Field(description="File to read, relative to the workspace root.")],
        offset: Annotated[int, Field(ge=0, description="Character offset to start reading at (for paging).")] = 0,
        max_chars: Annotated[int, Field(ge=1, le=chunk_chars, description="Maximum number of characters to return.")] = chunk_chars,
    ) -> str:
        """Read a text file from the workspace. Large files are returned in chunks; the result says
        which offset to pass to continue reading."""
        file = workspace.resolve(path)
        if not file.exists():
            raise ToolFailure(f"No such file {path!r} in the workspace. Call list_files to see what exists.")
        if file.is_dir():
            raise ToolFailure(f"{path!r} is a directory; call list_files with path={path!r} instead.")
        size = file.stat().st_size
        with open(file, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
        kind = _binary_kind(head)
        if kind is not None:
            return (f"{workspace.relative(file)!r} is a binary file ({kind}, {size:,} bytes); "
                    "read_file only shows text. Process it with code (e.g. the python tool) instead.")
        with open(file, encoding=_encoding_for(head), errors="replace", newline="") as fh:
            skipped = 0
            while skipped < offset:  # skip in bounded steps so a huge offset needs no huge buffer
                step = fh.read(min(1 << 20, offset - skipped))
                if not step:
                    break
                skipped += len(step)
            chunk = fh.read(max_chars + 1)
        rel = workspace.relative(file)
        if skipped < offset:
            return f"{rel!r} has only {skipped:,} characters; offset {offset:,} is past the end."
        more = len(chunk) > max_chars
        chunk = chunk[:max_chars]
        end = offset + len(chunk)
        if not more and offset == 0:
            return chunk
        note = f"[characters {offset:,}-{end:,} of {rel!r} ({size:,} bytes on disk)"
        note += f"; call read_file with offset={end} to continue]" if more else "; end of file]"
        return chunk + "\n" + note

    return [
        Tool(list_files, name="list_files", timeout=30.0, max_output_chars=60_000),
        Tool(read_file, name="read_file", timeout=30.0, max_output_chars=chunk_chars + 500),
    ]
