"""Local BM25 search over a folder, and web search / page fetch behind providers (no network)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` lives at the repo root

from agentflow.tools.search import (  # noqa: E402
    BM25Index,
    HttpJsonSearchProvider,
    PageFetcher,
    SearchProvider,
    WebError,
    WebResult,
)
from agentflow.tools.search.tools import local_search_tool, web_tools  # noqa: E402
from benchmarks.gaia_local.writers import docx_bytes, pdf_bytes  # noqa: E402


@pytest.fixture
def corpus(tmp_path):
    docs = {
        "bridge.md": "# Varn Bridge\n\nThe Varn Bridge was designed by Maren Tolvik and completed in 1894.",
        "tolvik.md": "# Maren Tolvik\n\nMaren Tolvik was an engineer born in Easthollow.",
        "town.md": "# Easthollow\n\nThe 2021 census recorded a population of 14,382.",
        "notes.txt": "Unrelated notes about gardening and tomatoes.",
    }
    for name, text in docs.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "memo.docx").write_bytes(docx_bytes("Memo", ["The lighthouse keeper retired in 1931."]))
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01")  # not a document type: never indexed
    return tmp_path


def test_bm25_ranks_the_right_document_first(corpus):
    index = BM25Index(corpus).build()
    assert {p.path for p in index.passages} == {"bridge.md", "tolvik.md", "town.md", "notes.txt", "memo.docx"}
    assert index.search("who designed the Varn Bridge")[0].path == "bridge.md"
    assert index.search("Easthollow census population")[0].path == "town.md"
    assert index.search("lighthouse keeper retired")[0].path == "memo.docx"  # office files are searchable
    assert index.search("quantum chromodynamics") == []
    assert index.search("the of and") == []  # stopwords only


def test_bm25_never_indexes_outside_its_root(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("alpha document")
    (tmp_path / "secret.md").write_text("alpha secret outside")
    (root / "link.md").symlink_to(tmp_path / "secret.md")
    index = BM25Index(root).build()
    assert [h.path for h in index.search("alpha")] == ["a.md"]


async def test_search_documents_tool_prefixes_paths(corpus):
    tool = local_search_tool(corpus, path_prefix="corpus/")
    result = await tool.invoke({"query": "Maren Tolvik born", "k": 2})
    assert not result.is_error
    assert result.content.startswith("[1] corpus/tolvik.md (passage 1, score")
    empty = await tool.invoke({"query": "zzzz"})
    assert "No matching passages" in empty.content


class FakeProvider(SearchProvider):
    name = "fake"

    def __init__(self) -> None:
        self.queries: list[tuple[str, int]] = []

    async def search(self, query: str, k: int = 5) -> list[WebResult]:
        self.queries.append((query, k))
        return [WebResult(title=f"Result {i}", url=f"https://example.test/{i}", snippet=f"about {query}")
                for i in range(k)]


def _client(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_web_tools_with_a_fake_provider_and_fetcher():
    provider = FakeProvider()
    long_page = "<html><head><title>Long</title></head><body>" + "".join(
        f"<p>Paragraph {i} " + "text " * 50 + "</p>" for i in range(60)) + "</body></html>"
    fetcher = PageFetcher(client=_client(lambda req: httpx.Response(200, html=long_page)))
    search, fetch = web_tools(provider, fetcher)
    result = await search.invoke({"query": "GAIA benchmark", "k": 2})
    assert provider.queries == [("GAIA benchmark", 2)]
    assert "[1] Result 0\nhttps://example.test/0\nabout GAIA benchmark" in result.content
    first = await fetch.invoke({"url": "https://example.test/0"})
    assert first.content.startswith("[part 1 of") and "# Long" in first.content and "Paragraph 0" in first.content
    second = await fetch.invoke({"url": "https://example.test/0", "part": 2})
    assert "[part 2 of" in second.content and "Paragraph 0 " not in second.content
    too_far = await fetch.invoke({"url": "https://example.test/0", "part": 99})
    assert too_far.is_error


async def test_http_json_provider_parses_configured_fields():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["params"] = dict(request.url.params)
        seen["auth"] = request.headers.get("authorization")
        return httpx.Response(200, json={"data": {"items": [
            {"name": "One", "link": "https://a.test", "summary": "first"},
            {"name": "No link"},
            {"name": "Two", "link": "https://b.test", "summary": "second"},
        ]}})

    provider = HttpJsonSearchProvider("https://search.test/api", params={}, headers={"Authorization": "Bearer k"},
                                      results_path="data.items", title_key="name", url_key="link",
                                      snippet_key="summary", count_param="n", client=_client(handler))
    results = await provider.search("bridges", k=5)
    assert [(r.title, r.url, r.snippet) for r in results] == [("One", "https://a.test", "first"),
                                                             ("Two", "https://b.test", "second")]
    assert seen == {"params": {"q": "bridges", "n": "5"}, "auth": "Bearer k"}


async def test_http_json_provider_errors_are_clear():
    bad_status = HttpJsonSearchProvider("https://s.test", client=_client(lambda r: httpx.Response(403)))
    with pytest.raises(WebError, match="HTTP 403"):
        await bad_status.search("x")
    wrong_shape = HttpJsonSearchProvider("https://s.test", client=_client(lambda r: httpx.Response(200, json={})))
    with pytest.raises(WebError, match="no list at 'results'"):
        await wrong_shape.search("x")
    with pytest.raises(ValueError, match="http"):
        HttpJsonSearchProvider("file:///etc/passwd")


async def test_page_fetcher_html_pdf_and_failures():
    pdf = pdf_bytes("Fetched report", ["Net income rose."])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/page":
            return httpx.Response(200, html="<html><title>T &amp; C</title><script>var x=1;</script>"
                                            "<body><h1>Head</h1><p>One</p><table><tr><td>a</td><td>b</td></tr>"
                                            "</table></body></html>")
        if request.url.path == "/report.pdf":
            return httpx.Response(200, content=pdf, headers={"content-type": "application/pdf"})
        if request.url.path == "/huge":
            return httpx.Response(200, content=b"x" * 5000, headers={"content-type": "text/plain"})
        return httpx.Response(404)

    fetcher = PageFetcher(client=_client(handler))
    page = await fetcher.fetch("https://site.test/page")
    assert page.title == "T & C" and "var x" not in page.text
    assert [ln for ln in page.text.splitlines() if ln][:2] == ["Head", "One"] and "a | b" in page.text
    report = await fetcher.fetch("https://site.test/report.pdf")
    assert "Net income rose." in report.text
    with pytest.raises(WebError, match="HTTP 404"):
        await fetcher.fetch("https://site.test/missing")
    with pytest.raises(WebError, match="give a full http"):
        await fetcher.fetch("file:///etc/passwd")
    from agentflow.tools.readers import ReadLimits

    small = PageFetcher(limits=ReadLimits(max_file_bytes=1000), client=_client(handler))
    with pytest.raises(WebError, match="larger than 1,000 bytes"):
        await small.fetch("https://site.test/huge")
