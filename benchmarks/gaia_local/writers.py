"""Deterministic file writers for the generator.

Office files are zip archives whose members carry the time of writing and whose core properties
record creation dates; PDFs embed a creation date and a random id. All of that is pinned here so
that the same seed rebuilds byte-identical files (the task set is regenerated, never committed).
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Sequence
from typing import Any

FIXED_TIME = dt.datetime(2024, 1, 1, 0, 0, 0)
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.create_system = 3
    return info


def zip_bytes(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A zip whose bytes depend only on ``members`` (names, order, content)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(_zip_info(name), data)
    return buf.getvalue()


_MODIFIED = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


def _normalize_ooxml(data: bytes) -> bytes:
    """Re-pack an office file with fixed member timestamps and a fixed "modified" property
    (openpyxl stamps the save time there whatever the workbook properties say)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = [(info.filename, zf.read(info)) for info in zf.infolist()]
    fixed = rb"\g<1>2024-01-01T00:00:00Z\g<2>"
    members = [(n, _MODIFIED.sub(fixed, d) if n == "docProps/core.xml" else d) for n, d in members]
    return zip_bytes(members)


def _pin_core(props: Any) -> None:
    props.author = "gaia_local generator"
    props.last_modified_by = "gaia_local generator"
    props.created = FIXED_TIME
    props.modified = FIXED_TIME
    props.revision = 1


def xlsx_bytes(sheets: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> bytes:
    """A workbook with one sheet per ``(title, rows)``; the first row is the header."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for title, rows in sheets:
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(list(row))
    wb.properties.creator = "gaia_local generator"
    wb.properties.created = FIXED_TIME
    wb.properties.modified = FIXED_TIME
    buf = io.BytesIO()
    wb.save(buf)
    return _normalize_ooxml(buf.getvalue())


def docx_bytes(title: str, paragraphs: Sequence[str], table: Sequence[Sequence[str]] | None = None,
               after_table: Sequence[str] = ()) -> bytes:
    """A Word document: a title, paragraphs, an optional table (first row header), closing paragraphs."""
    import docx

    document = docx.Document()
    document.add_heading(title, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                t.cell(r, c).text = str(value)
    for text in after_table:
        document.add_paragraph(text)
    _pin_core(document.core_properties)
    buf = io.BytesIO()
    document.save(buf)
    return _normalize_ooxml(buf.getvalue())


def pptx_bytes(slides: Sequence[dict[str, Any]]) -> bytes:
    """Slides of ``{"title": str, "bullets": [str], "table": [[str]] | None, "notes": str}``."""
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    layout = prs.slide_layouts[5]  # title only
    for spec in slides:
        slide = prs.slides.add_slide(layout)
        slide.shapes.title.text = spec["title"]
        bullets = spec.get("bullets") or []
        if bullets:
            box = slide.shapes.add_textbox(Inches(0.7), Inches(1.6), Inches(8.5), Inches(4.5))
            frame = box.text_frame
            frame.text = bullets[0]
            for bullet in bullets[1:]:
                frame.add_paragraph().text = bullet
        table = spec.get("table")
        if table:
            shape = slide.shapes.add_table(len(table), len(table[0]), Inches(0.7), Inches(1.6), Inches(8.5),
                                           Inches(0.4 * len(table)))
            for r, row in enumerate(table):
                for c, value in enumerate(row):
                    shape.table.cell(r, c).text = str(value)
        if spec.get("notes"):
            slide.notes_slide.notes_text_frame.text = spec["notes"]
    _pin_core(prs.core_properties)
    buf = io.BytesIO()
    prs.save(buf)
    return _normalize_ooxml(buf.getvalue())


def pdf_bytes(title: str, paragraphs: Sequence[str], table: Sequence[Sequence[str]] | None = None,
              col_x: Sequence[float] | None = None, footer: Sequence[str] = ()) -> bytes:
    """A one-or-more-page PDF with a title, wrapped paragraphs and a table drawn cell by cell."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    c.setTitle(title)
    c.setAuthor("gaia_local generator")
    width, height = A4
    y = height - 60

    def need(space: float) -> None:
        nonlocal y
        if y - space < 50:
            c.showPage()
            y = height - 60

    def write_wrapped(text: str) -> None:
        """One paragraph in body type, wrapped and paged; the body and the footer both use it."""
        nonlocal y
        for line in _wrap(text, 95):
            need(14)
            c.drawString(50, y, line)
            y -= 14

    c.setFont("Helvetica-Bold", 15)
    c.drawString(50, y, title)
    y -= 28
    c.setFont("Helvetica", 10)
    for text in paragraphs:
        write_wrapped(text)
        y -= 6
    if table:
        xs = list(col_x or [50 + i * (480 / len(table[0])) for i in range(len(table[0]))])
        for r, row in enumerate(table):
            need(16)
            c.setFont("Helvetica-Bold" if r == 0 else "Helvetica", 10)
            for x, value in zip(xs, row, strict=True):
                c.drawString(x, y, str(value))
            y -= 16
        y -= 8
    c.setFont("Helvetica", 10)
    for text in footer:
        write_wrapped(text)
    c.showPage()
    c.save()
    return buf.getvalue()


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines
