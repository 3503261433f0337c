"""Web search and page fetching behind provider interfaces.

agentflow ships no search-engine credentials and tests never touch the network, so search is an
interface: ``SearchProvider`` (abstract) with one concrete implementation for any HTTP API that
returns JSON results (SearXNG's ``format=json`` endpoint, or a company search proxy), configured
by the user. ``PageFetcher`` downloads a page and turns HTML into readable text; PDFs and office
files are passed to the document readers.
"""

from __future__ import annotations

import abc
import html
import logging
import re
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

import httpx
from pydantic import BaseModel

from agentflow.tools.readers.chunking import cap_text
from agentflow.tools.readers.dispatch import read_bytes
from agentflow.tools.readers.errors import ReaderError
from agentflow.tools.readers.limits import DEFAULT_LIMITS, ReadLimits

logger = logging.getLogger(__name__)


class WebResult(BaseModel):
    title: str
    url: str
    snippet: str = ""


class Page(BaseModel):
    url: str
    status: int
    content_type: str = ""
    title: str = ""
    text: str


class WebError(ReaderError):
    """A search or fetch failed (network, HTTP status, unexpected response shape)."""


class SearchProvider(abc.ABC):
    """A web search backend. Implementations must not raise for "no results": return ``[]``."""

    name: str = "search"

    @abc.abstractmethod
    async def search(self, query: str, k: int = 5) -> list[WebResult]:
        """Up to ``k`` results for ``query``; raise ``WebError`` when the backend fails."""


def _get_path(obj: Any, dotted: str) -> Any:
    for key in dotted.split(".") if dotted else []:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and key.isdigit() and int(key) < len(obj):
            obj = obj[int(key)]
        else:
            return None
    return obj


class HttpJsonSearchProvider(SearchProvider):
    """Any search API answering ``GET url?<query_param>=...`` with JSON results.

    Defaults fit SearXNG (``/search?q=...&format=json`` -> ``{"results": [{"title", "url",
    "content"}]}``). Other APIs are configured by naming the results list and its fields, e.g. a
    proxy returning ``{"data": {"items": [{"name", "link", "summary"}]}}`` needs
    ``results_path="data.items", title_key="name", url_key="link", snippet_key="summary"``.
    """

    name = "http_json"

    def __init__(self, url: str, *, query_param: str = "q", params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None, results_path: str = "results", title_key: str = "title",
                 url_key: str = "url", snippet_key: str = "content", count_param: str | None = None,
                 timeout: float = 20.0, client: httpx.AsyncClient | None = None) -> None:
        if urlparse(url).scheme not in {"http", "https"}:
            raise ValueError(f"search API url must be http(s), got {url!r}")
        self.url = url
        self.query_param = query_param
        self.params = dict(params if params is not None else {"format": "json"})
        self.headers = dict(headers or {})
        self.results_path = results_path
        self.title_key, self.url_key, self.snippet_key = title_key, url_key, snippet_key
        self.count_param = count_param
        self.timeout = timeout
        self._client = client

    async def search(self, query: str, k: int = 5) -> list[WebResult]:
        params = {**self.params, self.query_param: query}
        if self.count_param:
            params[self.count_param] = str(k)
        try:
            if self._client is not None:
                response = await self._client.get(self.url, params=params, headers=self.headers, timeout=self.timeout)
            else:
                async with httpx.AsyncClient(follow_redirects=True) as client:
                    response = await client.get(self.url, params=params, headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise WebError(f"search API {self.url} unreachable: {exc}", hint="check the search provider URL") from None
        if response.status_code != 200:
            raise WebError(f"search API answered HTTP {response.status_code}",
                           hint="check the provider URL and API key") from None
        try:
            payload = response.json()
        except ValueError:
            raise WebError("search API did not return JSON", hint="point the provider at a JSON endpoint") from None
        items = _get_path(payload, self.results_path)
        if not isinstance(items, list):
            raise WebError(f"search API response has no list at {self.results_path!r}",
                           hint="set results_path to where the results list is in the response")
        results: list[WebResult] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            url = _get_path(item, self.url_key)
            if not url:
                continue
            results.append(WebResult(title=str(_get_path(item, self.title_key) or url),
                                     url=str(url), snippet=str(_get_path(item, self.snippet_key) or "")))
            if len(results) >= k:
                break
        return results


class _TextExtractor(HTMLParser):
    """HTML to text: drops scripts/styles/navigation, keeps block structure as line breaks."""

    _SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "table",
              "ul", "ol", "pre", "blockquote", "hr", "dt", "dd"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip += 1
        if tag == "title":
            self._in_title = True
        if tag in self._BLOCK:
            self.parts.append("\n")
        if tag in {"td", "th"}:
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skip:
            self._skip -= 1
        if tag == "title":
            self._in_title = False
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> tuple[str, str]:
    """(title, text) of an HTML page, whitespace collapsed, paragraphs kept."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return html.unescape(parser.title).strip(), text


class PageFetcher:
    """Fetch a URL and return readable text (HTML stripped; PDF/office files through the readers).

    Only http and https are allowed; the download stops at ``limits.max_file_bytes``.
    """

    def __init__(self, *, limits: ReadLimits = DEFAULT_LIMITS, timeout: float = 30.0,
                 headers: dict[str, str] | None = None, client: httpx.AsyncClient | None = None) -> None:
        self.limits = limits
        self.timeout = timeout
        self.headers = {"User-Agent": "agentflow-page-fetcher/0.1", **(headers or {})}
        self._client = client

    async def fetch(self, url: str) -> Page:
        parsed = urlparse(url)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            raise WebError(f"cannot fetch {url!r}", hint="give a full http:// or https:// URL")
        if self._client is not None:
            return await self._fetch(self._client, url)
        async with httpx.AsyncClient(follow_redirects=True) as client:
            return await self._fetch(client, url)

    async def _fetch(self, client: httpx.AsyncClient, url: str) -> Page:
        try:
            async with client.stream("GET", url, headers=self.headers, timeout=self.timeout) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.limits.max_file_bytes:
                        raise WebError(f"{url} is larger than {self.limits.max_file_bytes:,} bytes",
                                       hint="raise ReadLimits.max_file_bytes to fetch larger files")
                    chunks.append(chunk)
                status = response.status_code
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                encoding = response.encoding or "utf-8"
        except httpx.HTTPError as exc:
            raise WebError(f"could not fetch {url}: {exc}", hint="check the URL or try another source") from None
        body = b"".join(chunks)
        if status >= 400:
            raise WebError(f"{url} answered HTTP {status}", hint="the page may be gone; try another result")
        name = PurePosixPath(urlparse(url).path).name or "page.html"
        if content_type in {"text/html", "application/xhtml+xml"} or (not content_type and body.lstrip()[:1] == b"<"):
            title, text = html_to_text(body.decode(encoding, errors="replace"))
        elif content_type.startswith("text/") or content_type in {"application/json", "application/xml"}:
            title, text = "", body.decode(encoding, errors="replace")
        else:
            title, text = "", read_bytes(body, name, self.limits)
        return Page(url=url, status=status, content_type=content_type, title=title,
                    text=cap_text(text, self.limits.max_text_chars, what="page"))


def format_results(results: list[WebResult]) -> str:
    if not results:
        return "No results. Try fewer or different keywords."
    return "\n\n".join(f"[{i}] {r.title}\n{r.url}\n{r.snippet}".rstrip() for i, r in enumerate(results, start=1))
