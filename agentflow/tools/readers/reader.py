"""``DocumentReader``: a workspace-confined reader that hands long documents out in parts.

A model reads a 300-page PDF one part at a time: part 1 says how many parts there are and how to
ask for the next. Extracted text is cached per file (keyed by size and mtime) for the reader's
lifetime, so asking for part 2 does not parse the PDF again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from agentflow.tools.readers.chunking import chunk_text
from agentflow.tools.readers.dispatch import read_path
from agentflow.tools.readers.errors import ReaderError
from agentflow.tools.readers.limits import DEFAULT_LIMITS, ReadLimits
from agentflow.tools.readers.workspace import Workspace

logger = logging.getLogger(__name__)


class DocumentReader:
    """Reads documents under one workspace root.

    Args:
        root: the folder files may be read from (attachments, a downloaded corpus).
        limits: size caps and the part size.
        cache_size: how many extracted documents to keep.
    """

    def __init__(self, root: str | os.PathLike[str], *, limits: ReadLimits = DEFAULT_LIMITS,
                 cache_size: int = 16) -> None:
        self.workspace = Workspace(root)
        self.limits = limits
        self._cache: OrderedDict[tuple[str, int, int], list[str]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # aread() runs reads in worker threads

    def parts(self, path: str | os.PathLike[str]) -> list[str]:
        """All parts of the document's extracted text (at least one, possibly empty)."""
        real = self.workspace.resolve(path)
        if real.is_dir():
            raise ReaderError(f"{path} is a folder", hint="list its files and read one of them")
        stat = real.stat()
        key = (str(real), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        text = read_path(real, self.limits, display_name=self.workspace.relative(real))
        parts = chunk_text(text, self.limits.chunk_chars)
        with self._lock:
            self._cache[key] = parts
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return parts

    def read(self, path: str | os.PathLike[str], part: int = 1) -> str:
        """Part ``part`` (1-based) of the document, with a header saying where it sits in the whole."""
        parts = self.parts(path)
        if part < 1 or part > len(parts):
            raise ReaderError(f"{path} has {len(parts)} part(s); part {part} does not exist",
                              hint=f"ask for a part between 1 and {len(parts)}")
        body = parts[part - 1]
        if len(parts) == 1:
            return body
        total = sum(len(p) for p in parts)
        start = sum(len(p) for p in parts[: part - 1])
        header = f"[{Path(os.fspath(path)).name}: part {part} of {len(parts)}, characters {start:,}-{start + len(body):,} of {total:,}]"
        footer = (f"\n[continued in part {part + 1}: read the same path with part={part + 1}]"
                  if part < len(parts) else "\n[end of document]")
        return header + "\n" + body + footer

    async def aread(self, path: str | os.PathLike[str], part: int = 1) -> str:
        """``read`` in a worker thread: PDF and spreadsheet parsing is CPU work that would block the loop."""
        return await asyncio.to_thread(self.read, path, part)
