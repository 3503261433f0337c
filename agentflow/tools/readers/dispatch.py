"""Pick the reader for a file by extension (or by content when the extension says nothing)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from agentflow.tools.readers.archive import read_zip
from agentflow.tools.readers.chunking import cap_text
from agentflow.tools.readers.errors import ReaderError
from agentflow.tools.readers.image import read_image
from agentflow.tools.readers.limits import DEFAULT_LIMITS, ReadLimits
from agentflow.tools.readers.office import read_docx, read_pptx
from agentflow.tools.readers.pdf import read_pdf
from agentflow.tools.readers.spreadsheet import read_csv, read_xls, read_xlsx
from agentflow.tools.readers.text import looks_binary, read_json, read_plain, read_xml

logger = logging.getLogger(__name__)

Reader = Callable[[bytes, str, ReadLimits], str]

_PLAIN = {
    ".txt", ".md", ".markdown", ".rst", ".py", ".log", ".ini", ".cfg", ".toml", ".yaml", ".yml", ".html", ".htm",
    ".js", ".ts", ".java", ".c", ".h", ".cpp", ".hpp", ".rs", ".go", ".rb", ".sh", ".sql", ".r", ".tex", ".pdb",
    ".bib", ".srt", ".css",
}
_READERS: dict[str, Reader] = {
    ".pdf": read_pdf,
    ".xlsx": read_xlsx, ".xlsm": read_xlsx,
    ".xls": read_xls,
    ".csv": read_csv, ".tsv": read_csv,
    ".docx": read_docx,
    ".pptx": read_pptx,
    ".json": read_json, ".jsonld": read_json, ".jsonl": read_json, ".geojson": read_json,
    ".xml": read_xml, ".svg": read_xml, ".kml": read_xml, ".gpx": read_xml,
    ".png": read_image, ".jpg": read_image, ".jpeg": read_image, ".gif": read_image, ".bmp": read_image,
    ".tif": read_image, ".tiff": read_image, ".webp": read_image,
}
_READERS.update(dict.fromkeys(_PLAIN, read_plain))
_UNSUPPORTED_HINTS = {
    ".mp3": "audio", ".wav": "audio", ".m4a": "audio", ".flac": "audio", ".mp4": "video", ".mov": "video",
    ".doc": "legacy Word", ".ppt": "legacy PowerPoint",
}

SUPPORTED_EXTENSIONS = frozenset(_READERS) | {".zip"}


def _sniff(data: bytes) -> str | None:
    """An extension guessed from magic bytes, for attachments saved without one."""
    if data.startswith(b"%PDF"):
        return ".pdf"
    if data.startswith(b"PK\x03\x04"):
        return ".zip"  # office files are zips too; _read_zip_like inspects the members
    if data.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")):
        return ".png"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return ".xls"
    return None


def _office_kind(data: bytes) -> str | None:
    """.docx/.xlsx/.pptx for an OOXML zip, by its main part."""
    import io
    import zipfile

    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except zipfile.BadZipFile:
        return None
    if "word/document.xml" in names:
        return ".docx"
    if "xl/workbook.xml" in names:
        return ".xlsx"
    if "ppt/presentation.xml" in names:
        return ".pptx"
    return None


def read_bytes(data: bytes, name: str, limits: ReadLimits = DEFAULT_LIMITS, depth: int = 0) -> str:
    """Text of a document given as bytes; ``name`` chooses the reader and labels the output."""
    if len(data) > limits.max_file_bytes:
        raise ReaderError(f"{name} is {len(data):,} bytes, over the {limits.max_file_bytes:,} byte limit",
                          hint="raise ReadLimits.max_file_bytes if the file is trusted")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        if suffix in _UNSUPPORTED_HINTS:
            raise ReaderError(f"{name}: {_UNSUPPORTED_HINTS[suffix]} files cannot be read as text",
                              hint="no reader exists for this format; answer from the question or other sources")
        sniffed = _sniff(data)
        if sniffed is not None:
            suffix = sniffed
        elif not looks_binary(data):
            suffix = ".txt"
        else:
            raise ReaderError(
                f"{name}: unsupported file type {suffix or '(no extension)'}",
                hint="readable types: " + ", ".join(sorted(SUPPORTED_EXTENSIONS)),
            )
    if suffix == ".zip":
        office = _office_kind(data)
        if office is not None:
            suffix = office
        elif depth > limits.max_archive_depth:
            return f"[nested archive {name} not opened: deeper than {limits.max_archive_depth} levels]"
        else:
            return read_zip(data, name, limits, read_member=read_bytes, depth=depth)
    reader = _READERS[suffix]
    return reader(data, name, limits)


def read_path(path: Path, limits: ReadLimits = DEFAULT_LIMITS, *, display_name: str | None = None) -> str:
    """Text of the file at ``path`` (size-checked before reading), capped at ``max_text_chars``."""
    if not path.is_file():
        raise ReaderError(f"{display_name or path} is not a file", hint="give the path of a file, not a folder")
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise ReaderError(f"{display_name or path.name} is {size:,} bytes, over the {limits.max_file_bytes:,} byte limit",
                          hint="raise ReadLimits.max_file_bytes if the file is trusted")
    text = read_bytes(path.read_bytes(), display_name or path.name, limits)
    return cap_text(text, limits.max_text_chars, what="document")

