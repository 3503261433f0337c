"""Search tools: local BM25 over a folder, and web search / page fetch behind providers."""

from agentflow.tools.search.bm25 import BM25Index, SearchHit, format_hits, tokenize
from agentflow.tools.search.web import (
    HttpJsonSearchProvider,
    Page,
    PageFetcher,
    SearchProvider,
    WebError,
    WebResult,
    format_results,
    html_to_text,
)

__all__ = [
    "BM25Index", "HttpJsonSearchProvider", "Page", "PageFetcher", "SearchHit", "SearchProvider", "WebError",
    "WebResult", "format_hits", "format_results", "html_to_text", "tokenize",
]
