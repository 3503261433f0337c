"""Local BM25 search over a folder of documents (rank-bm25).

GAIA-style multi-hop questions over a document collection need retrieval, not a web search: the
folder is read with the document readers (so PDFs, Word files and spreadsheets are searchable
too), split into passages, and ranked with Okapi BM25. Each hit names the file and passage so the
model can read the full document with the reader tool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from pathlib import Path

from pydantic import BaseModel

from agentflow.tools.readers.chunking import chunk_text
from agentflow.tools.readers.dispatch import SUPPORTED_EXTENSIONS, read_path
from agentflow.tools.readers.errors import MissingDependencyError, ReaderError, require
from agentflow.tools.readers.limits import DEFAULT_LIMITS, ReadLimits
from agentflow.tools.readers.workspace import Workspace

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"[0-9a-z]+(?:['’][a-z]+)?")
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were which with "
    "what who whom when where how did does do".split()
)


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens without common stopwords; possessives fold to the base word."""
    out = []
    for tok in _TOKEN.findall(text.lower()):
        tok = re.sub(r"['’]s$", "", tok)
        if tok and tok not in _STOPWORDS:
            out.append(tok)
    return out


class SearchHit(BaseModel):
    """One ranked passage."""

    path: str
    passage: int
    score: float
    text: str


class Passage(BaseModel):
    path: str
    passage: int
    text: str


class BM25Index:
    """BM25 over the passages of every readable file under ``root`` (recursively).

    Args:
        root: the folder to index; searches never see files outside it.
        passage_chars: passage size; a few paragraphs keeps facts together with their subject.
        limits: reader caps for each file.
    """

    def __init__(self, root: str | os.PathLike[str], *, passage_chars: int = 1200,
                 limits: ReadLimits = DEFAULT_LIMITS, k1: float = 1.5, b: float = 0.75) -> None:
        self.workspace = Workspace(root)
        self.passage_chars = passage_chars
        self.limits = limits
        self.k1 = k1
        self.b = b
        self.passages: list[Passage] = []
        self.skipped: dict[str, str] = {}
        self._bm25 = None
        self._built = False
        self._lock = threading.Lock()

    def _files(self) -> list[Path]:
        files = []
        for path in sorted(self.workspace.root.rglob("*")):
            if path.name.startswith(".") or not path.is_file():
                continue
            real = path.resolve()
            if not real.is_relative_to(self.workspace.root):
                logger.warning("not indexing %s: symlink leads outside %s", path, self.workspace.root)
                continue
            if path.suffix.lower() in SUPPORTED_EXTENSIONS:
                files.append(real)
        return files

    def build(self) -> BM25Index:
        """(Re)read the folder and rebuild the index. Unreadable files are skipped and remembered."""
        rank_bm25 = require("rank_bm25", "rank-bm25", "local document search")
        passages: list[Passage] = []
        skipped: dict[str, str] = {}
        for path in self._files():
            rel = self.workspace.relative(path)
            try:
                text = read_path(path, self.limits, display_name=rel)
            except (ReaderError, MissingDependencyError) as exc:
                skipped[rel] = exc.message
                continue
            for i, chunk in enumerate(chunk_text(text, self.passage_chars), start=1):
                if chunk.strip():
                    passages.append(Passage(path=rel, passage=i, text=chunk.strip()))
        tokens = [tokenize(p.text) for p in passages]
        bm25 = rank_bm25.BM25Okapi(tokens, k1=self.k1, b=self.b) if passages else None
        with self._lock:
            self.passages, self.skipped, self._bm25 = passages, skipped, bm25
            self._built = True
        logger.info("BM25 index of %s: %d passages from %d files (%d skipped)", self.workspace.root,
                    len(passages), len({p.path for p in passages}), len(skipped))
        return self

    @property
    def built(self) -> bool:
        return self._built

    def search(self, query: str, k: int = 5) -> list[SearchHit]:
        """The ``k`` best passages for ``query`` (those sharing no term with it are never returned)."""
        if not self.built:
            self.build()
        terms = tokenize(query)
        with self._lock:
            bm25, passages = self._bm25, self.passages
        if bm25 is None or not terms:
            return []
        scores = bm25.get_scores(terms)
        query_terms = set(terms)
        ranked = sorted(range(len(passages)), key=lambda i: (-scores[i], passages[i].path, passages[i].passage))
        hits: list[SearchHit] = []
        for i in ranked:
            if len(hits) >= k:
                break
            # BM25Okapi floors negative IDF at a small epsilon, so a passage can score >0 while
            # matching only very common terms; require at least one shared term
            if not query_terms.intersection(tokenize(passages[i].text)):
                continue
            hits.append(SearchHit(path=passages[i].path, passage=passages[i].passage,
                                  score=round(float(scores[i]), 4), text=passages[i].text))
        return hits

    async def asearch(self, query: str, k: int = 5) -> list[SearchHit]:
        """``search`` in a worker thread (building the index reads every file)."""
        return await asyncio.to_thread(self.search, query, k)


def format_hits(hits: list[SearchHit], *, snippet_chars: int = 600) -> str:
    """Hits as text for a model: file, passage, score and the passage's opening."""
    if not hits:
        return "No matching passages. Try other keywords (names, places, years)."
    blocks = []
    for rank, hit in enumerate(hits, start=1):
        snippet = hit.text if len(hit.text) <= snippet_chars else hit.text[:snippet_chars].rstrip() + " ..."
        blocks.append(f"[{rank}] {hit.path} (passage {hit.passage}, score {hit.score})\n{snippet}")
    return "\n\n".join(blocks)
