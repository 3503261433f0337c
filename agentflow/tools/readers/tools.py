"""The readers as agentflow tools: ``read_document`` (any supported file, long ones in parts)."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import Field

from agentflow.tools.base import Tool, tool
from agentflow.tools.readers.errors import MissingDependencyError, ReaderError
from agentflow.tools.readers.limits import DEFAULT_LIMITS, ReadLimits
from agentflow.tools.readers.reader import DocumentReader
from agentflow.tools.result import ToolFailure


def reader_tools(root: str | os.PathLike[str], *, limits: ReadLimits = DEFAULT_LIMITS,
                 timeout: float = 120.0) -> list[Tool]:
    """``[read_document]`` confined to ``root``; parts are ``limits.chunk_chars`` long."""
    reader = DocumentReader(root, limits=limits)

    async def read_document(
        path: Annotated[str, Field(description="File to read, relative to the workspace root.")],
        part: Annotated[int, Field(ge=1, description="Which part of a long document to read (1 = the start).")] = 1,
    ) -> str:
        """Read a document as text: PDF, Word (.docx), Excel (.xlsx/.xls), CSV, PowerPoint (.pptx), JSON,
        XML, plain text and source code, zip archives (every member, recursively) and images (size,
        metadata and, when available, OCR text). Long documents come in parts; the first part says
        how many there are."""
        try:
            return await reader.aread(path, part)
        except (ReaderError, MissingDependencyError) as exc:
            raise ToolFailure(str(exc)) from None

    return [tool(read_document, timeout=timeout, max_output_chars=limits.chunk_chars + 400)]
