"""Document readers for GAIA-style attachments: pdf, xlsx/xls, csv, docx, pptx, txt/md/py, json/jsonld,
xml, zip (recursive) and images.

The heavy libraries (pypdf, openpyxl, xlrd, python-docx, python-pptx, pillow) are imported only
when a file of that kind is read; a missing one raises ``MissingDependencyError`` naming the
``agentflow[gaia]`` extra. ``reader_tools(root)`` exposes them to models as agentflow tools.
"""

from agentflow.tools.readers.chunking import cap_text, chunk_text
from agentflow.tools.readers.dispatch import SUPPORTED_EXTENSIONS, read_bytes, read_path
from agentflow.tools.readers.errors import READERS_EXTRA, MissingDependencyError, ReaderError
from agentflow.tools.readers.image import ocr_available
from agentflow.tools.readers.limits import DEFAULT_LIMITS, ReadLimits
from agentflow.tools.readers.reader import DocumentReader
from agentflow.tools.readers.workspace import Workspace

__all__ = [
    "DEFAULT_LIMITS", "READERS_EXTRA", "SUPPORTED_EXTENSIONS", "DocumentReader", "MissingDependencyError",
    "ReadLimits", "ReaderError", "Workspace", "cap_text", "chunk_text", "ocr_available", "read_bytes", "read_path",
]
