"""Tables: xlsx (openpyxl), xls (xlrd) and csv/tsv (standard library).

Every sheet is rendered as pipe-separated rows with spreadsheet coordinates (column letters and
row numbers), because GAIA questions often refer to cells ("the value in column C").
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

from agentflow.tools.readers.errors import ReaderError, require
from agentflow.tools.readers.limits import ReadLimits
from agentflow.tools.readers.text import decode_text


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ") if (value.hour, value.minute, value.second) != (0, 0, 0) else value.date().isoformat()
    return str(value).replace("\n", " ").replace("|", "/")


def render_rows(rows: Iterable[Sequence[Any]], *, limits: ReadLimits, title: str) -> str:
    """Rows as ``row | A | B ...`` lines, trailing empty cells trimmed, capped at ``max_rows``."""
    lines: list[str] = []
    width = 0
    shown = 0
    total = 0
    for row in rows:
        total += 1
        if shown >= limits.max_rows:
            continue
        cells = [_cell(v) for v in row]
        while cells and cells[-1] == "":
            cells.pop()
        width = max(width, len(cells))
        lines.append(f"{total} | " + " | ".join(cells))
        shown += 1
    header = f"## {title} ({total} rows x {width} columns)"
    cols = "row | " + " | ".join(column_letter(i) for i in range(width))
    body = [header, cols, *lines]
    if total > shown:
        body.append(f"[... {total - shown} more rows not shown]")
    return "\n".join(body)


def read_xlsx(data: bytes, name: str, limits: ReadLimits) -> str:
    """Every worksheet's values; formulas without a cached value are shown as ``=FORMULA``."""
    openpyxl = require("openpyxl", "openpyxl", "reading .xlsx files")
    try:
        values = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        formulas = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises zipfile/xml/key errors for damaged files
        raise ReaderError(f"{name} is not a readable .xlsx workbook: {exc}",
                          hint="the file may be damaged, password-protected, or an old .xls") from None
    parts = [f"# {name} (workbook, sheets: {', '.join(values.sheetnames)})"]
    try:
        for sheet_name in values.sheetnames:
            v_rows = values[sheet_name].iter_rows(values_only=True)
            f_rows = formulas[sheet_name].iter_rows(values_only=True)
            merged = (
                [fv if vv is None and isinstance(fv, str) and fv.startswith("=") else vv
                 for vv, fv in zip(vr, fr, strict=False)]
                for vr, fr in zip(v_rows, f_rows, strict=False)
            )
            parts.append(render_rows(merged, limits=limits, title=f"Sheet {sheet_name!r}"))
    finally:
        values.close()
        formulas.close()
    return "\n\n".join(parts)


def read_xls(data: bytes, name: str, limits: ReadLimits) -> str:
    """Legacy Excel 97-2003 workbooks, dates converted from Excel serial numbers."""
    xlrd = require("xlrd", "xlrd", "reading .xls files")
    try:
        book = xlrd.open_workbook(file_contents=data)
    except Exception as exc:  # xlrd.XLRDError and struct errors
        raise ReaderError(f"{name} is not a readable .xls workbook: {exc}",
                          hint="if it is really .xlsx, rename it; otherwise the file is damaged") from None
    parts = [f"# {name} (workbook, sheets: {', '.join(book.sheet_names())})"]
    for sheet in book.sheets():
        def rows(sheet=sheet):
            for r in range(sheet.nrows):
                out = []
                for c in range(sheet.ncols):
                    cell = sheet.cell(r, c)
                    if cell.ctype == xlrd.XL_CELL_DATE:
                        out.append(xlrd.xldate.xldate_as_datetime(cell.value, book.datemode))
                    elif cell.ctype == xlrd.XL_CELL_BOOLEAN:
                        out.append(bool(cell.value))
                    else:
                        out.append(cell.value)
                yield out
        parts.append(render_rows(rows(), limits=limits, title=f"Sheet {sheet.name!r}"))
    return "\n\n".join(parts)


def read_csv(data: bytes, name: str, limits: ReadLimits) -> str:
    """CSV/TSV with the dialect sniffed from the first lines (comma, semicolon, tab, pipe)."""
    text = decode_text(data)
    sample = text[:20_000]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if name.lower().endswith(".tsv") else csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise ReaderError(f"{name} is not valid CSV: {exc}", hint="read it as plain text instead") from None
    return f"# {name} (CSV)\n" + render_rows(rows, limits=limits, title="Table")
