"""Search as agentflow tools: ``search_documents`` (local BM25), ``web_search`` and ``fetch_page``."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Annotated

from pydantic import Field

from agentflow.tools.base import Tool, tool
from agentflow.tools.readers.chunking import chunk_text
from agentflow.tools.readers.errors import MissingDependencyError, ReaderError
from agentflow.tools.readers.limits import DEFAULT_LIMITS, ReadLimits
from agentflow.tools.result import ToolFailure
from agentflow.tools.search.bm25 import BM25Index, format_hits
from agentflow.tools.search.web import Page, PageFetcher, SearchProvider, format_results


def local_search_tool(root: str | os.PathLike[str], *, passage_chars: int = 1200,
                      limits: ReadLimits = DEFAULT_LIMITS, path_prefix: str = "") -> Tool:
    """``search_documents``: BM25 over every readable file under ``root`` (indexed on first use).

    ``path_prefix`` is put in front of the file names shown, so that they are valid paths for
    ``read_document`` when ``root`` is a subfolder of its workspace (e.g. ``"corpus/"``).
    """
    index = BM25Index(root, passage_chars=passage_chars, limits=limits)

    async def search_documents(
        query: Annotated[str, Field(min_length=1, max_length=300,
                                    description="Keywords: names, places, years, distinctive terms.")],
        k: Annotated[int, Field(ge=1, le=20, description="How many passages to return.")] = 5,
    ) -> str:
        """Search the local document collection and return the best-matching passages with their file
        names. Read a whole file with read_document when a passage is relevant."""
        try:
            hits = await index.asearch(query, k)
        except (ReaderError, MissingDependencyError) as exc:
            raise ToolFailure(str(exc)) from None
        if path_prefix:
            hits = [h.model_copy(update={"path": path_prefix + h.path}) for h in hits]
        return format_hits(hits)

    return tool(search_documents, timeout=120.0, max_output_chars=20_000)


def web_tools(provider: SearchProvider, fetcher: PageFetcher | None = None, *,
              limits: ReadLimits = DEFAULT_LIMITS, cache_size: int = 32) -> list[Tool]:
    """``[web_search, fetch_page]`` over a configured provider; fetched pages are served in parts."""
    fetcher = fetcher or PageFetcher(limits=limits)
    pages: OrderedDict[str, list[str]] = OrderedDict()

    async def web_search(
        query: Annotated[str, Field(min_length=1, max_length=400, description="The search query.")],
        k: Annotated[int, Field(ge=1, le=10, description="How many results to return.")] = 5,
    ) -> str:
        """Search the web. Returns titles, URLs and snippets; open a result with fetch_page."""
        try:
            return format_results(await provider.search(query, k))
        except ReaderError as exc:
            raise ToolFailure(str(exc)) from None

    async def fetch_page(
        url: Annotated[str, Field(min_length=8, max_length=2000, description="Full http(s) URL.")],
        part: Annotated[int, Field(ge=1, description="Which part of a long page to read (1 = the start).")] = 1,
    ) -> str:
        """Fetch a web page (or a PDF/office file) and return its readable text, in parts for long pages."""
        parts = pages.get(url)
        if parts is None:
            try:
                page: Page = await fetcher.fetch(url)
            except (ReaderError, MissingDependencyError) as exc:
                raise ToolFailure(str(exc)) from None
            head = f"# {page.title}\n" if page.title else ""
            parts = chunk_text(head + page.text, limits.chunk_chars)
            pages[url] = parts
            while len(pages) > cache_size:
                pages.popitem(last=False)
        if part > len(parts):
            raise ToolFailure(f"the page has {len(parts)} part(s); ask for part 1 to {len(parts)}", kind="validation")
        note = f"[part {part} of {len(parts)}; fetch again with part={part + 1} to continue]\n" if len(parts) > 1 else ""
        return note + parts[part - 1]

    return [tool(web_search, timeout=60.0, max_output_chars=12_000),
            tool(fetch_page, timeout=90.0, max_output_chars=limits.chunk_chars + 400)]
