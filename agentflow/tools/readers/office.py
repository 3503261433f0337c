"""Word (python-docx) and PowerPoint (python-pptx) documents."""

from __future__ import annotations

import io

from agentflow.tools.readers.errors import ReaderError, require
from agentflow.tools.readers.limits import ReadLimits


def _table_lines(rows: list[list[str]]) -> list[str]:
    return [" | ".join(cell.replace("\n", " ").strip() for cell in row) for row in rows]


def read_docx(data: bytes, name: str, limits: ReadLimits) -> str:
    """Paragraphs and tables in document order; headings become markdown headings."""
    docx = require("docx", "python-docx", "reading .docx files")
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises PackageNotFoundError, KeyError, zip errors
        raise ReaderError(f"{name} is not a readable .docx document: {exc}",
                          hint="the file may be damaged or an old binary .doc") from None
    out: list[str] = [f"# {name} (Word document)"]
    tables = 0
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text.strip()
            if not text:
                continue
            style = (block.style.name if block.style is not None else "") or ""
            if style.startswith("Heading"):
                level = style.removeprefix("Heading").strip()
                hashes = "#" * (int(level) + 1 if level.isdigit() else 2)
                out.append(f"{hashes} {text}")
            elif style == "Title":
                out.append(f"## {text}")
            else:
                out.append(text)
        elif isinstance(block, Table):
            tables += 1
            rows = [[cell.text for cell in row.cells] for row in block.rows]
            out.append(f"[Table {tables}]")
            out.extend(_table_lines(rows))
            out.append(f"[end of table {tables}]")
    section_text = []
    for section in document.sections:
        for part, label in ((section.header, "header"), (section.footer, "footer")):
            text = "\n".join(p.text for p in part.paragraphs if p.text.strip())
            if text and text not in section_text:
                section_text.append(text)
                out.append(f"[page {label}] {text}")
    return "\n".join(out)


def read_pptx(data: bytes, name: str, limits: ReadLimits) -> str:
    """Each slide's title, text boxes, tables and speaker notes, under ``## Slide k``."""
    pptx = require("pptx", "python-pptx", "reading .pptx files")
    try:
        presentation = pptx.Presentation(io.BytesIO(data))
    except Exception as exc:  # python-pptx raises PackageNotFoundError and zip errors
        raise ReaderError(f"{name} is not a readable .pptx presentation: {exc}",
                          hint="the file may be damaged or an old binary .ppt") from None
    slides = list(presentation.slides)
    out: list[str] = [f"# {name} (presentation, {len(slides)} slides)"]
    for number, slide in enumerate(slides, start=1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else ""
        out.append(f"\n## Slide {number}" + (f": {title}" if title else ""))
        for shape in slide.shapes:
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if shape.has_text_frame:
                for paragraph in shape.text_frame.paragraphs:
                    text = "".join(run.text for run in paragraph.runs).strip()
                    if text:
                        out.append(("  " * paragraph.level) + "- " + text)
            if getattr(shape, "has_table", False) and shape.has_table:
                rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
                out.append("[Table]")
                out.extend(_table_lines(rows))
                out.append("[end of table]")
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame.text.strip() if slide.notes_slide.notes_text_frame else ""
            if notes:
                out.append(f"Speaker notes: {notes}")
    return "\n".join(out)
