"""Images: size, format and metadata (Pillow), plus OCR when an offline OCR engine is installed.

OCR uses ``pytesseract`` with a local ``tesseract`` binary (Debian/Ubuntu: ``apt-get install
tesseract-ocr``; ``pip install pytesseract``). Neither downloads anything at run time. When they are
missing the reader says so in its output instead of failing, because size and metadata are still
useful to a model.
"""

from __future__ import annotations

import io
import logging
import shutil
from typing import Any

from agentflow.tools.readers.errors import ReaderError, require
from agentflow.tools.readers.limits import ReadLimits

logger = logging.getLogger(__name__)

#: EXIF tags worth showing a model (the rest is camera internals)
_EXIF_TAGS = {
    0x010F: "Make", 0x0110: "Model", 0x0132: "DateTime", 0x9003: "DateTimeOriginal", 0x010E: "ImageDescription",
    0x013B: "Artist", 0x8298: "Copyright", 0x0131: "Software", 0x0112: "Orientation",
}


def ocr_available() -> bool:
    """Whether ``pytesseract`` and the ``tesseract`` binary are both present (fully offline)."""
    try:
        import pytesseract  # noqa: F401
    except ImportError:
        return False
    return shutil.which("tesseract") is not None


def ocr_image(image: Any) -> str:
    """Text recognised in a Pillow image; requires ``ocr_available()``."""
    import pytesseract

    return pytesseract.image_to_string(image).strip()


def read_image(data: bytes, name: str, limits: ReadLimits, *, ocr: bool | None = None) -> str:
    """Format, pixel size, mode, frame count, EXIF/PNG text metadata, and OCR text when possible."""
    pil = require("PIL.Image", "pillow", "reading images")
    try:
        image = pil.open(io.BytesIO(data))
        width, height = image.size
    except Exception as exc:  # PIL.UnidentifiedImageError and decoder errors
        raise ReaderError(f"{name} is not a readable image: {exc}", hint="the file may be damaged") from None
    if width * height > limits.max_image_pixels:
        raise ReaderError(f"{name} is {width}x{height} pixels, over the {limits.max_image_pixels:,} pixel limit",
                          hint="raise ReadLimits.max_image_pixels if the image is trusted")
    lines = [
        f"# {name} (image)",
        f"format: {image.format or 'unknown'}",
        f"size: {width} x {height} pixels",
        f"mode: {image.mode}",
    ]
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        lines.append(f"frames: {frames}")
    dpi = image.info.get("dpi")
    if dpi:
        lines.append(f"dpi: {round(float(dpi[0]))} x {round(float(dpi[1]))}")
    try:
        exif = image.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF must not hide the rest
        exif = {}
    for tag, label in _EXIF_TAGS.items():
        if tag in exif and str(exif[tag]).strip():
            lines.append(f"{label}: {str(exif[tag]).strip()}")
    for key, value in image.info.items():
        # PNG tEXt/iTXt chunks arrive as str values in info
        if isinstance(value, str) and key not in {"dpi"} and len(value) < 2000:
            lines.append(f"{key}: {value}")

    use_ocr = ocr_available() if ocr is None else ocr
    if use_ocr:
        try:
            text = ocr_image(image.convert("RGB"))
        except Exception as exc:  # noqa: BLE001 - OCR trouble is reported, not raised
            logger.warning("OCR failed on %s: %s", name, exc)
            lines.append(f"text (OCR): [OCR failed: {exc}]")
        else:
            lines.append("text (OCR):\n" + (text or "[no text recognised]"))
    else:
        lines.append("text (OCR): [not available: install the offline OCR engine (pip install pytesseract; "
                     "apt-get install tesseract-ocr) to read text in images]")
    return "\n".join(lines)
