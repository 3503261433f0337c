"""Plain text formats: txt, md, py and other source code, json/jsonld, xml."""

from __future__ import annotations

import json
import logging

from agentflow.tools.readers.errors import ReaderError
from agentflow.tools.readers.limits import ReadLimits

logger = logging.getLogger(__name__)


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), then UTF-16 by BOM, then cp1252/latin-1 which never fail."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def looks_binary(data: bytes) -> bool:
    """NUL bytes in the first 8 KiB mean this is not text (UTF-16 aside, which has a BOM)."""
    head = data[:8192]
    return b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff"))


def read_plain(data: bytes, name: str, limits: ReadLimits) -> str:
    """Text as it is; source code keeps its exact indentation (line numbers would break copy-paste)."""
    if looks_binary(data):
        raise ReaderError(f"{name} looks like a binary file, not text",
                          hint="check the file type; only text, office, PDF, archive and image files are readable")
    return decode_text(data)


def read_json(data: bytes, name: str, limits: ReadLimits) -> str:
    """JSON (and JSON-LD, JSON Lines) pretty-printed, so minified files become readable."""
    text = decode_text(data)
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except json.JSONDecodeError:
        pass
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        records = [json.loads(ln) for ln in lines]
    except json.JSONDecodeError as exc:
        logger.debug("%s is not JSON (%s); returning raw text", name, exc)
        return f"[{name} is not valid JSON ({exc.msg} at line {exc.lineno}); raw text follows]\n{text}"
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in records)


def read_xml(data: bytes, name: str, limits: ReadLimits) -> str:
    """XML re-indented when it parses (expat refuses entity-expansion bombs), raw text otherwise."""
    from xml.dom import minidom
    from xml.parsers.expat import ExpatError

    if len(data) > 5 * 1024 * 1024:
        return decode_text(data)  # re-indenting a huge document is not worth the memory
    try:
        pretty = minidom.parseString(data).toprettyxml(indent="  ")
    except (ExpatError, ValueError) as exc:
        logger.debug("%s did not parse as XML: %s", name, exc)
        return decode_text(data)
    # toprettyxml adds blank lines around text nodes; drop whitespace-only lines
    return "\n".join(line for line in pretty.splitlines() if line.strip())
