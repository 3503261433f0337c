"""Document readers on generated files: every format, size caps, parts, workspace confinement."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `benchmarks` lives at the repo root

from agentflow.errors import SandboxViolationError  # noqa: E402
from agentflow.tools.readers import (  # noqa: E402
    DocumentReader,
    MissingDependencyError,
    ReaderError,
    ReadLimits,
    chunk_text,
    read_bytes,
    read_path,
)
from agentflow.tools.readers.tools import reader_tools  # noqa: E402
from benchmarks.gaia_local.writers import docx_bytes, pdf_bytes, pptx_bytes, xlsx_bytes, zip_bytes  # noqa: E402


@pytest.fixture(scope="module")
def generated(gaia_dataset: Path) -> Path:
    """The bundled task set's validation split: one file of every attachment kind."""
    return gaia_dataset / "2023" / "validation"


def test_every_generated_attachment_reads(generated):
    rows = [json.loads(line) for line in (generated / "metadata.jsonl").read_text().splitlines()]
    kinds = set()
    for row in rows:
        if not row["file_name"]:
            continue
        text = read_path(generated / row["file_name"])
        kinds.add(Path(row["file_name"]).suffix)
        assert len(text) > 100, row["file_name"]
        assert "[member could not" not in text and "not extracted" not in text
    assert kinds == {".csv", ".xlsx", ".docx", ".pptx", ".pdf", ".json", ".xml", ".zip", ".py"}


def test_pdf_pages_and_table_rows_stay_on_one_line():
    data = pdf_bytes("Quarterly report", ["Revenue by division, thousands of USD."],
                     [["Division", "Q1", "Q2"], ["Rail Freight", "1,234", "5,678"]], col_x=[50, 250, 350])
    text = read_bytes(data, "r.pdf")
    assert "(PDF, 1 pages)" in text and "## Page 1" in text and "Quarterly report" in text
    assert any(line.split() == ["Rail", "Freight", "1,234", "5,678"] for line in text.splitlines())


def test_xlsx_every_sheet_with_coordinates():
    import datetime as dt

    data = xlsx_bytes([("Orders", [["Id", "Amount", "Date"], ["A1", 12.0, dt.date(2024, 3, 5)]]),
                       ("Customers", [["Id", "City"], ["C1", "Arlen"]])])
    text = read_bytes(data, "book.xlsx")
    assert "sheets: Orders, Customers" in text
    assert "## Sheet 'Orders' (2 rows x 3 columns)" in text and "row | A | B | C" in text
    assert "2 | A1 | 12 | 2024-03-05" in text and "2 | C1 | Arlen" in text


def test_xlsx_formula_without_cached_value_is_shown():
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append([1, 2, "=A1+B1"])
    buf = io.BytesIO()
    wb.save(buf)
    assert "1 | 1 | 2 | =A1+B1" in read_bytes(buf.getvalue(), "f.xlsx")


def test_xls_legacy_workbook(tmp_path):
    import xlwt

    book = xlwt.Workbook()
    sheet = book.add_sheet("Legacy")
    for c, v in enumerate(["Name", "Score"]):
        sheet.write(0, c, v)
    sheet.write(1, 0, "Ada")
    sheet.write(1, 1, 91)
    book.save(str(tmp_path / "old.xls"))
    text = read_path(tmp_path / "old.xls")
    assert "Sheet 'Legacy'" in text and "2 | Ada | 91" in text


def test_csv_dialect_is_sniffed():
    text = read_bytes(b"name;city\nAda;Oslo\nBo;Rome\n", "semi.csv")
    assert "1 | name | city" in text and "3 | Bo | Rome" in text


def test_docx_headings_paragraphs_and_tables_in_order():
    data = docx_bytes("Bookings", ["Intro paragraph."], [["Date", "Room"], ["2024-03-01", "Aster Room"]],
                      after_table=["Closing remark."])
    text = read_bytes(data, "b.docx")
    lines = text.splitlines()
    assert "## Bookings" in lines
    assert lines.index("Intro paragraph.") < lines.index("2024-03-01 | Aster Room") < lines.index("Closing remark.")


def test_pptx_titles_bullets_tables_and_notes():
    data = pptx_bytes([{"title": "Milestone 1: Survey", "bullets": ["Owner: Ada", "Due: 2024-05-01"],
                        "notes": "Checked by Bo."},
                       {"title": "Budgets", "table": [["Team", "EUR"], ["Design", "12,500"]]}])
    text = read_bytes(data, "deck.pptx")
    assert "(presentation, 2 slides)" in text
    assert "## Slide 1: Milestone 1: Survey" in text and "- Owner: Ada" in text
    assert "Speaker notes: Checked by Bo." in text
    assert "## Slide 2: Budgets" in text and "Design | 12,500" in text


def test_json_jsonld_and_xml_are_pretty_printed():
    text = read_bytes(b'{"a":{"b":[1,2]}}', "x.json")
    assert text.splitlines()[1] == '  "a": {'
    assert '"@id": "x"' in read_bytes(b'{"@context":"s","@id":"x"}', "d.jsonld")
    assert read_bytes(b'{"a":1}\n{"a":2}\n', "lines.jsonl") == '{"a": 1}\n{"a": 2}'
    assert read_bytes(b"not json", "bad.json").startswith("[bad.json is not valid JSON")
    xml = read_bytes(b'<root><item id="1">x</item></root>', "c.xml")
    assert '  <item id="1">x</item>' in xml.splitlines()


def test_xml_entity_expansion_is_refused_not_expanded():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><l>&c;</l>')
    text = read_bytes(bomb, "bomb.xml")
    assert len(text) < 1000  # either refused or, for this small one, expanded to ~640 characters at most


def test_text_encodings_and_source_code():
    assert read_bytes("héllo".encode(), "a.txt") == "héllo"
    assert read_bytes("\ufeffbom".encode(), "a.md") == "bom"
    assert read_bytes("café".encode("cp1252"), "a.txt") == "café"
    code = b"def f():\n    return 1\n"
    assert read_bytes(code, "m.py") == code.decode()
    with pytest.raises(ReaderError, match="binary"):
        read_bytes(b"\x00\x01\x02binary", "data.txt")


def test_zip_is_read_recursively_with_a_depth_limit():
    inner = zip_bytes([("deep.json", b'{"k": "v"}')])
    outer = zip_bytes([("readme.txt", b"hello"), ("nested/inner.zip", inner), ("../evil.txt", b"harmless")])
    text = read_bytes(outer, "a.zip")
    assert "(zip archive, 3 files)" in text
    assert "=== a.zip/readme.txt ===\nhello" in text
    assert "=== a.zip/nested/inner.zip/deep.json ===" in text and '"k": "v"' in text
    assert "harmless" in text  # read in memory: the ../ name escapes nowhere
    shallow = read_bytes(outer, "a.zip", ReadLimits(max_archive_depth=0))
    assert "nested archive a.zip/nested/inner.zip not opened" in shallow


def test_zip_member_limits():
    archive = zip_bytes([("big.txt", b"x" * 5000), ("small.txt", b"ok")])
    text = read_bytes(archive, "a.zip", ReadLimits(max_file_bytes=10_000, max_archive_bytes=1000))
    assert "[skipped: the archive's total size limit was reached]" in text and "ok" in text


def test_images_report_size_metadata_and_ocr_status(monkeypatch):
    from PIL import Image, PngImagePlugin

    from agentflow.tools.readers import image

    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "harbour at dusk")
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), "white").save(buf, "PNG", pnginfo=info, dpi=(300, 300))
    monkeypatch.setattr(image, "ocr_available", lambda: False)
    text = read_bytes(buf.getvalue(), "pic.png")
    assert "format: PNG" in text and "size: 64 x 32 pixels" in text and "mode: RGB" in text
    assert "Description: harbour at dusk" in text and "dpi: 300 x 300" in text
    assert "text (OCR): [not available" in text and "tesseract" in text

    monkeypatch.setattr(image, "ocr_available", lambda: True)
    monkeypatch.setattr(image, "ocr_image", lambda img: "TOTAL 42")
    assert "text (OCR):\nTOTAL 42" in read_bytes(buf.getvalue(), "pic.png")
    with pytest.raises(ReaderError, match="pixel limit"):
        read_bytes(buf.getvalue(), "pic.png", ReadLimits(max_image_pixels=100))


def test_unsupported_and_oversized_files(tmp_path):
    with pytest.raises(ReaderError, match="audio files cannot be read"):
        read_bytes(b"ID3", "song.mp3")
    with pytest.raises(ReaderError, match="unsupported file type .bin"):
        read_bytes(b"\x00\xff\x00", "blob.bin")
    with pytest.raises(ReaderError, match="noext is not a readable PDF"):  # no extension: sniffed as PDF
        read_bytes(b"%PDF-1.4 broken", "noext")
    (tmp_path / "big.txt").write_bytes(b"a" * 2000)
    with pytest.raises(ReaderError, match="over the 1,000 byte limit"):
        read_path(tmp_path / "big.txt", ReadLimits(max_file_bytes=1000))
    with pytest.raises(ReaderError, match="not a readable PDF"):
        read_bytes(b"%PDF-1.4 garbage", "bad.pdf")


def test_missing_optional_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pypdf", None)  # makes `import pypdf` fail
    with pytest.raises(MissingDependencyError) as err:
        read_bytes(b"%PDF-1.4", "a.pdf")
    assert "pip install 'agentflow[gaia]'" in str(err.value) and "pypdf" in str(err.value)


def test_long_documents_come_in_parts(tmp_path):
    paragraphs = [f"Paragraph {i}: " + "word " * 60 for i in range(40)]
    (tmp_path / "long.md").write_text("\n\n".join(paragraphs), encoding="utf-8")
    reader = DocumentReader(tmp_path, limits=ReadLimits(chunk_chars=1000))
    parts = reader.parts("long.md")
    assert len(parts) > 5 and "".join(parts) == "\n\n".join(paragraphs)
    assert all(len(p) <= 1000 for p in parts)
    first = reader.read("long.md", 1)
    assert first.startswith(f"[long.md: part 1 of {len(parts)}") and "part=2" in first
    assert reader.read("long.md", len(parts)).endswith("[end of document]")
    with pytest.raises(ReaderError, match="part 999 does not exist"):
        reader.read("long.md", 999)
    assert chunk_text("x" * 2500, 1000) == ["x" * 1000, "x" * 1000, "x" * 500]


def test_workspace_confinement(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "ok.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "alias.txt").symlink_to(root / "ok.txt")
    reader = DocumentReader(root)
    assert reader.read("ok.txt") == "inside"
    assert reader.read(str(root / "ok.txt")) == "inside"  # absolute path inside the root
    assert reader.read("alias.txt") == "inside"  # a link that stays inside is fine
    for bad in ("../secret.txt", str(tmp_path / "secret.txt"), "escape.txt", "sub/../../secret.txt"):
        with pytest.raises(SandboxViolationError):
            reader.read(bad)
    with pytest.raises(ReaderError, match="no such file"):
        reader.read("missing.txt")


async def test_read_document_tool(tmp_path):
    (tmp_path / "notes.md").write_text("# Notes\nThe answer is 42.")
    (read_document,) = reader_tools(tmp_path)
    assert read_document.name == "read_document"
    assert set(read_document.parameters["properties"]) == {"path", "part"}
    ok = await read_document.invoke({"path": "notes.md"})
    assert not ok.is_error and "The answer is 42." in ok.content
    missing = await read_document.invoke({"path": "nope.pdf"})
    assert missing.is_error and "no such file" in missing.content
    escape = await read_document.invoke({"path": "../../etc/passwd"})
    assert escape.is_error and escape.error_kind == "sandbox"
    bad = await read_document.invoke({"path": "notes.md", "part": 0})
    assert bad.is_error and bad.error_kind == "validation"


def test_office_file_without_extension_is_recognised(tmp_path):
    data = docx_bytes("Memo", ["Body text."])
    assert "Body text." in read_bytes(data, "attachment")
    assert zipfile.is_zipfile(io.BytesIO(data))
