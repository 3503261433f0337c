"""Independent oracle for the bundled task set: answers every task from the written files alone.

    python -m benchmarks.gaia_local.oracle --data-dir /tmp/gaia_local

It never imports the generator. Parameters come from the question text (parsed with regular
expressions), facts come from the attachments (read with csv, openpyxl, pypdf, python-docx,
python-pptx, json, ElementTree, zipfile, or by running the Python script) and from the archive
documents (found with agentflow's BM25 search, then read with regular expressions). If the
generator wrote a file wrongly, phrased a question ambiguously or computed an answer wrongly, the
oracle disagrees; the test suite requires it to agree on every task.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import datetime as dt
import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections import defaultdict
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from agentflow.tools.search import BM25Index

LB_KG = Decimal("0.45359237")
MILE_KM = Decimal("1.609344")
FOOT_M = Decimal("0.3048")
#: exact factors by the unit names a question uses (international yard and pound, US gallon)
FACTORS = {("miles", "kilometres"): MILE_KM, ("inches", "centimetres"): Decimal("2.54"),
           ("pounds", "kilograms"): LB_KG, ("feet", "metres"): FOOT_M,
           ("US gallons", "litres"): Decimal("231") * Decimal("2.54") ** 3 / 1000}


def _search(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"oracle could not parse {pattern!r} in: {text[:200]}")
    return match


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


class Archive:
    """The regional archive: entity documents found by BM25 search and read with regular expressions."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index = BM25Index(folder).build()
        self._docs: dict[str, str] = {}

    def doc(self, entity: str) -> str:
        """The document whose title is ``entity`` (it must rank in the top 5 for the entity's name)."""
        if entity not in self._docs:
            for hit in self.index.search(entity, k=5):
                text = (self.folder / hit.path).read_text(encoding="utf-8")
                if text.splitlines()[0].strip() == f"# {entity}":
                    self._docs[entity] = text
                    break
            else:
                raise ValueError(f"no archive document titled {entity!r} in the top 5 search hits")
        return self._docs[entity]

    def designer(self, structure: str) -> str:
        return _search(r"[Dd]esigned by (.+?) and built by", self.doc(structure)).group(1)

    def town_of(self, structure: str) -> str:
        return _search(r" is an? .+? in ([A-Z][\w]+)\.", self.doc(structure)).group(1)

    def completed(self, structure: str) -> int:
        return int(_search(r"completed in (\d{4})", self.doc(structure)).group(1))

    def length(self, structure: str) -> int:
        return int(_search(r"overall length of (\d+) metres", self.doc(structure)).group(1))

    def birth_town(self, person: str) -> str:
        text = self.doc(person)
        match = re.search(r"born in ([A-Z]\w+)", text) or _search(r"Born in ([A-Z]\w+)", text)
        return match.group(1)

    def born(self, person: str) -> int:
        text = self.doc(person)
        match = re.search(r"\((\d{4})–\d{4}\)", text) or _search(r"Born in \w+ in (\d{4})", text)
        return int(match.group(1))

    def mentor(self, person: str) -> str:
        return _search(r"(?:trained|studied) under (.+?)\.", self.doc(person)).group(1)

    def population_2021(self, town: str) -> int:
        return int(_search(r"2021 census recorded a population of ([\d,]+)", self.doc(town)).group(1).replace(",", ""))

    def elevation_m(self, town: str) -> int:
        return int(_search(r"elevation of (\d+) metres", self.doc(town)).group(1))


# --- file parsing (deliberately not the agentflow readers: a second, independent path) ---------------

def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def xlsx_sheets(data: bytes) -> dict[str, list[dict[str, object]]]:
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    out = {}
    for ws in wb.worksheets:
        rows = list(ws.iter_rows(values_only=True))
        header = [str(h) for h in rows[0]]
        out[ws.title] = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    return out


def docx_table(data: bytes) -> list[dict[str, str]]:
    import docx

    table = docx.Document(io.BytesIO(data)).tables[0]
    rows = [[cell.text for cell in row.cells] for row in table.rows]
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def pptx_slides(data: bytes) -> list[tuple[str, list[str], list[list[str]]]]:
    import pptx

    out = []
    for slide in pptx.Presentation(io.BytesIO(data)).slides:
        title = slide.shapes.title.text_frame.text
        texts: list[str] = []
        table: list[list[str]] = []
        for shape in slide.shapes:
            if shape == slide.shapes.title:
                continue
            if shape.has_text_frame:
                texts += [p.text for p in shape.text_frame.paragraphs]
            if shape.has_table:
                table = [[c.text for c in row.cells] for row in shape.table.rows]
        out.append((title, texts, table))
    return out


def pdf_lines(data: bytes) -> list[str]:
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(data))
    return [line.strip() for page in reader.pages
            for line in (page.extract_text(extraction_mode="layout") or "").splitlines()]


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


# --- one solver per family ----------------------------------------------------------------------------

Solver = Callable[[str, bytes | None, Archive], str]


def csv_units_sold(q: str, data: bytes | None, archive: Archive) -> str:
    product, region = _search(r"How many units of (.+?) were sold in the (.+?) region", q).groups()
    return str(sum(int(r["units"]) for r in csv_rows(data or b"") if r["product"] == product and r["region"] == region))


def xlsx_top_salary(q: str, data: bytes | None, archive: Archive) -> str:
    dept = _search(r"employee in the (.+?) department", q).group(1)
    rows = [r for r in xlsx_sheets(data or b"")["Staff"] if r["Department"] == dept]
    return str(max(rows, key=lambda r: int(r["Salary (EUR)"]))["Name"])


def docx_booking(q: str, data: bytes | None, archive: Archive) -> str:
    who, when = _search(r"Which room did (.+?) book on (.+?)\?", q).groups()
    day = dt.datetime.strptime(when, "%d %B %Y").date().isoformat()
    (row,) = [r for r in docx_table(data or b"") if r["Booked by"] == who and r["Date"] == day]
    return row["Room"]


def pptx_owner_count(q: str, data: bytes | None, archive: Archive) -> str:
    owner = _search(r"owned by (.+?)\?", q).group(1)
    return str(sum(1 for title, texts, _ in pptx_slides(data or b"")
                   if title.startswith("Milestone") and f"Owner: {owner}" in texts))


def json_low_stock(q: str, data: bytes | None, archive: Archive) -> str:
    wh, limit = _search(r"warehouse (.+?) have fewer than (\d+) units", q).groups()
    items = json.loads(data or b"")["warehouse_inventory"]
    return str(sum(1 for i in items if i["warehouse"] == wh and i["stock"] < int(limit)))


def xml_pub_year(q: str, data: bytes | None, archive: Archive) -> str:
    title = _search(r'titled "(.+?)"', q).group(1)
    root = ET.fromstring(data or b"")
    return next(b.findtext("year") for b in root.iter("book") if b.findtext("title") == title) or ""


def py_output(q: str, data: bytes | None, archive: Archive) -> str:
    done = subprocess.run([sys.executable, "-"], input=data, capture_output=True, timeout=60, check=True)
    return done.stdout.decode().strip()


def exact_units(q: str, data: bytes | None, archive: Archive) -> str:
    value, src, dst = _search(r"what is ([\d.]+) (.+?) in (\w+)\?", q).groups()
    return _plain(Decimal(value) * FACTORS[(src, dst)])


def date_calc(q: str, data: bytes | None, archive: Archive) -> str:
    match = re.search(r"from (\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d)", q)
    if match:
        d1, d2 = (dt.date.fromisoformat(x) for x in match.groups())
        return str((d2 - d1).days + 1)
    when = _search(r"did (\w+ \d+, \d{4}) fall", q).group(1)
    return calendar.day_name[dt.datetime.strptime(when, "%B %d, %Y").weekday()]


def big_arithmetic(q: str, data: bytes | None, archive: Archive) -> str:
    match = re.search(r"product of (\d+) and (\d+)", q)
    if match:
        return str(int(match.group(1)) * int(match.group(2)))
    base, exp = _search(r"value of (\d+) raised to the power (\d+)", q).groups()
    return str(int(base) ** int(exp))


def corpus_completed(q: str, data: bytes | None, archive: Archive) -> str:
    return str(archive.completed(_search(r"was the (.+?) completed\?", q).group(1)))


def pdf_revenue(q: str, data: bytes | None, archive: Archive) -> str:
    division = _search(r"revenue of the (.+?) division", q).group(1)
    for line in pdf_lines(data or b""):
        match = re.fullmatch(rf"{re.escape(division)}\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)", line)
        if match:
            q1, q2, q3, q4 = (int(v.replace(",", "")) for v in match.groups())
            return str(q2 + q3)
    raise ValueError(f"division {division!r} not in the PDF")


def xlsx_city_orders(q: str, data: bytes | None, archive: Archive) -> str:
    city = _search(r"customers located in (.+?)\?", q).group(1)
    sheets = xlsx_sheets(data or b"")
    ids = {c["Customer ID"] for c in sheets["Customers"] if c["City"] == city}
    return str(sum(int(o["Amount (USD)"]) for o in sheets["Orders"] if o["Customer ID"] in ids))


def zip_site_visitors(q: str, data: bytes | None, archive: Archive) -> str:
    files = unzip(data or b"")
    totals: dict[str, int] = defaultdict(int)
    for row in csv_rows(files["data/visits_2023.csv"]):
        totals[row["site_code"]] += int(row["visitors"])
    sites = json.loads(unzip(files["lookup/sites.zip"])["sites.json"])["sites"]
    best = max(totals, key=lambda k: totals[k])
    return next(s["name"] for s in sites if s["code"] == best)


def corpus_birthplace_population(q: str, data: bytes | None, archive: Archive) -> str:
    structure = _search(r"designer of the (.+?) was born", q).group(1)
    return str(archive.population_2021(archive.birth_town(archive.designer(structure))))


def csv_driver_km(q: str, data: bytes | None, archive: Archive) -> str:
    driver = _search(r"driven by (.+?), in kilometres", q).group(1)
    miles = sum((Decimal(r["distance_mi"]) for r in csv_rows(data or b"") if r["driver"] == driver), Decimal(0))
    return str((miles * MILE_KM).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def docx_project_end(q: str, data: bytes | None, archive: Archive) -> str:
    project = _search(r"project (\w+) finishes", q).group(1)
    row = next(r for r in docx_table(data or b"") if r["Project"] == project)
    return (dt.date.fromisoformat(row["Start date"]) + dt.timedelta(days=int(row["Duration (days)"]))).isoformat()


def xlsx_member_list(q: str, data: bytes | None, archive: Archive) -> str:
    year = int(_search(r"joined before (\d{4})", q).group(1))
    rows = xlsx_sheets(data or b"")["Members"]
    return ", ".join(sorted(str(r["First name"]) for r in rows if r["Status"] == "active" and int(r["Joined"]) < year))


def pptx_phase_budget(q: str, data: bytes | None, archive: Archive) -> str:
    phase = _search(r"on the (Phase \d+) slides", q).group(1)
    total = 0
    for title, _texts, table in pptx_slides(data or b""):
        if title.startswith(phase + ":"):
            total += sum(int(row[1].replace(",", "")) for row in table[1:])
    return str(total)


def xml_shipment_kg(q: str, data: bytes | None, archive: Archive) -> str:
    dest = _search(r"bound for (.+?)\?", q).group(1)
    root = ET.fromstring(data or b"")
    pounds = sum((Decimal(s.get("weight_lb", "0")) for s in root.iter("shipment") if s.get("destination") == dest),
                 Decimal(0))
    return str((pounds * LB_KG).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP))


def corpus_mentor_elevation(q: str, data: bytes | None, archive: Archive) -> str:
    structure = _search(r"who designed the (.+?), then", q).group(1)
    town = archive.birth_town(archive.mentor(archive.designer(structure)))
    return str((Decimal(archive.elevation_m(town)) / FOOT_M).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def pdf_corpus_towns(q: str, data: bytes | None, archive: Archive) -> str:
    threshold = int(_search(r"scoring below (\d+)", q).group(1))
    towns = set()
    for line in pdf_lines(data or b""):
        match = re.fullmatch(r"HR-\d+\s+(.+?)\s+(\d+)", line)
        if match and int(match.group(2)) < threshold:
            towns.add(archive.town_of(match.group(1)))
    return ", ".join(sorted(towns))


def zip_shipping_charge(q: str, data: bytes | None, archive: Archive) -> str:
    d1, d2 = (dt.date.fromisoformat(x) for x in _search(r"from (\S+) to (\S+) inclusive", q).groups())
    files = unzip(data or b"")
    rates = json.loads(unzip(files["tariffs/rates.zip"])["rates.json"])["rates_usd_per_kg"]
    total = Decimal(0)
    for row in xlsx_sheets(files["shipments.xlsx"])["Shipments"]:
        day = row["Date"].date() if isinstance(row["Date"], dt.datetime) else row["Date"]
        if d1 <= day <= d2:
            total += Decimal(int(row["Weight (lb)"])) * LB_KG * Decimal(rates[row["Item"]])
    return str(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def ledger_growth(q: str, data: bytes | None, archive: Archive) -> str:
    amount, d1, d2 = _search(r"holds (\d+) credits on (\S+)\. .* on (\d{4}-\d\d-\d\d)\?", q).groups()
    days = (dt.date.fromisoformat(d2) - dt.date.fromisoformat(d1)).days
    return str(int(amount) * 3 ** (days // 30))


def xlsx_corpus_lengths(q: str, data: bytes | None, archive: Archive) -> str:
    who, year = _search(r"visited by (.+?) that were designed by someone born before (\d{4})", q).groups()
    visited = {str(r["Structure"]) for r in xlsx_sheets(data or b"")["Visits"] if r["Surveyor"] == who}
    return str(sum(archive.length(s) for s in visited if archive.born(archive.designer(s)) < int(year)))


SOLVERS: dict[str, Solver] = {
    "csv_units_sold": csv_units_sold,
    "xlsx_top_salary": xlsx_top_salary,
    "docx_booking": docx_booking,
    "pptx_owner_count": pptx_owner_count,
    "json_low_stock": json_low_stock,
    "xml_pub_year": xml_pub_year,
    "py_output": py_output,
    "exact_units": exact_units,
    "date_calc": date_calc,
    "big_arithmetic": big_arithmetic,
    "corpus_completed": corpus_completed,
    "pdf_revenue": pdf_revenue,
    "xlsx_city_orders": xlsx_city_orders,
    "zip_site_visitors": zip_site_visitors,
    "corpus_birthplace_population": corpus_birthplace_population,
    "csv_driver_km": csv_driver_km,
    "docx_project_end": docx_project_end,
    "xlsx_member_list": xlsx_member_list,
    "pptx_phase_budget": pptx_phase_budget,
    "xml_shipment_kg": xml_shipment_kg,
    "corpus_mentor_elevation": corpus_mentor_elevation,
    "pdf_corpus_towns": pdf_corpus_towns,
    "zip_shipping_charge": zip_shipping_charge,
    "ledger_growth": ledger_growth,
    "xlsx_corpus_lengths": xlsx_corpus_lengths,
}


def solve_all(data_dir: str | Path, split: str = "validation") -> dict[str, str]:
    """The oracle's answer for every task id of the generated split."""
    split_dir = Path(data_dir) / "2023" / split
    archive = Archive(split_dir / "corpus")
    answers: dict[str, str] = {}
    for line in (split_dir / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        family = row["Annotator Metadata"]["Family"]
        data = (split_dir / row["file_name"]).read_bytes() if row["file_name"] else None
        answers[row["task_id"]] = SOLVERS[family](row["Question"], data, archive)
    return answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Re-derive every bundled answer from the files and compare.")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    split_dir = Path(args.data_dir) / "2023" / "validation"
    expected = {json.loads(line)["task_id"]: json.loads(line)["Final answer"]
                for line in (split_dir / "metadata.jsonl").read_text(encoding="utf-8").splitlines()}
    got = solve_all(args.data_dir)
    bad = {tid: (expected[tid], got.get(tid)) for tid in expected if got.get(tid) != expected[tid]}
    for tid, (want, have) in bad.items():
        print(f"MISMATCH {tid}: generator {want!r}, oracle {have!r}")
    print(f"{len(expected) - len(bad)}/{len(expected)} answers reproduced")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
