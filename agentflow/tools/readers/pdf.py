"""PDF text, page by page (pypdf)."""

from __future__ import annotations

import io
import logging
import re

from agentflow.tools.readers.errors import ReaderError, require
from agentflow.tools.readers.limits import ReadLimits

logger = logging.getLogger(__name__)


_GAPS = re.compile(r" {2,}")


def _page_text(page, name: str, number: int) -> str:
    """Layout-mode text, so table rows stay on one line (plain mode puts every cell on its own line);
    column gaps shrink to two spaces. Falls back to plain extraction when layout mode fails."""
    try:
        text = page.extract_text(extraction_mode="layout") or ""
        return "\n".join(_GAPS.sub("  ", line.strip()) for line in text.splitlines())
    except Exception as exc:  # noqa: BLE001 - layout mode is stricter; plain mode may still work
        logger.debug("pdf %s page %d: layout extraction failed (%s); using plain mode", name, number, exc)
    try:
        return page.extract_text() or ""
    except Exception as exc:  # noqa: BLE001 - one bad page must not hide the others
        logger.debug("pdf %s page %d: %s", name, number, exc)
        return f"[page could not be decoded: {exc}]"


def read_pdf(data: bytes, name: str, limits: ReadLimits) -> str:
    """Each page's extracted text under a ``## Page k`` heading; scanned pages say they have no text."""
    pypdf = require("pypdf", "pypdf", "reading PDF files")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception:  # noqa: BLE001 - any failure means we cannot open it
                raise ReaderError(f"{name} is encrypted", hint="the PDF needs a password; it cannot be read") from None
        pages = list(reader.pages)
    except ReaderError:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        raise ReaderError(f"{name} is not a readable PDF: {exc}", hint="the file may be damaged or not a PDF") from None

    out: list[str] = [f"# {name} (PDF, {len(pages)} pages)"]
    total = 0
    for number, page in enumerate(pages, start=1):
        text = _page_text(page, name, number)
        text = text.strip() or "[no extractable text on this page: it may be a scanned image]"
        out.append(f"\n## Page {number}\n{text}")
        total += len(text)
        if total > limits.max_text_chars:
            out.append(f"\n[... pages {number + 1}-{len(pages)} not extracted: text limit reached]")
            break
    return "\n".join(out)
