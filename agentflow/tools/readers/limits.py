"""Size caps for document reading.

Attachments come from datasets and the web; a 2 GB log file or a zip bomb must fail fast with a
clear message instead of filling memory or a model's context window.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReadLimits(BaseModel):
    """Caps applied while extracting text. The defaults suit GAIA attachments."""

    #: largest file (or archive member) read at all
    max_file_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    #: extracted text beyond this is cut (and the cut is announced in the text)
    max_text_chars: int = Field(default=400_000, gt=0)
    #: size of one part handed to a model; long text is split into parts of about this size
    chunk_chars: int = Field(default=8_000, gt=200)
    #: rows shown per sheet / csv before the rest is summarised
    max_rows: int = Field(default=5_000, gt=0)
    #: nested archives are opened this many levels deep
    max_archive_depth: int = Field(default=3, ge=0)
    #: members listed/extracted per archive
    max_archive_members: int = Field(default=500, gt=0)
    #: total uncompressed bytes read from one archive (zip-bomb guard)
    max_archive_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    #: largest image, in pixels, that is decoded (Pillow's decompression-bomb guard uses a similar cap)
    max_image_pixels: int = Field(default=90_000_000, gt=0)


DEFAULT_LIMITS = ReadLimits()
