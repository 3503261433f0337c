"""Generate the bundled GAIA-style task set.

    python -m benchmarks.gaia_local.generate --out /tmp/gaia_local --seed 0

writes, in the layout of the real dataset::

    <out>/2023/validation/metadata.jsonl      65 tasks: 26 level 1, 26 level 2, 13 level 3
    <out>/2023/validation/<task_id>.<ext>     attachments (xlsx, csv, pdf, docx, pptx, json, xml, zip, py)
    <out>/2023/validation/corpus/*.md         the fictional regional archive for multi-hop questions

Every answer is computed here from in-memory values; ``oracle.py`` re-derives each one from the
written files alone. The same seed always produces byte-identical files.
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import hashlib
import json
import random
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from benchmarks.gaia_local.world import World, build_world, write_corpus
from benchmarks.gaia_local.writers import docx_bytes, pdf_bytes, pptx_bytes, xlsx_bytes, zip_bytes

ARCHIVE = "the Vellmark regional archive (the documents in the corpus folder)"
SPLIT = "validation"


@dataclass
class Ctx:
    rng: random.Random
    world: World
    split_dir: Path
    task_id: str


@dataclass
class Made:
    question: str
    answer: str
    steps: list[str]
    tools: list[str]
    #: (extension, bytes) of the attachment, if any
    attachment: tuple[str, bytes] | None = None


@dataclass
class Family:
    name: str
    level: int
    count: int
    make: Callable[[Ctx], Made]
    tags: list[str] = field(default_factory=list)


def dec(value: Decimal) -> str:
    """A Decimal as plain digits (no exponent, no trailing zeros)."""
    text = format(value.normalize(), "f")
    return text


def money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def csv_text(rows: list[list[object]]) -> bytes:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def rand_date(rng: random.Random, start: dt.date, span_days: int) -> dt.date:
    return start + dt.timedelta(days=rng.randrange(span_days))


def long_date(d: dt.date) -> str:
    return f"{d.day} {calendar.month_name[d.month]} {d.year}"


# --- level 1 ---------------------------------------------------------------------------------------

REGIONS = ["North", "South", "East", "West", "Central"]
PRODUCTS = ["Lantern", "Compass", "Rope", "Kettle", "Tarp", "Whistle"]


def csv_units_sold(c: Ctx) -> Made:
    rows: list[list[object]] = [["order_id", "region", "product", "units", "unit_price_usd"]]
    for i in range(60):
        rows.append([f"SO-{1000 + i}", c.rng.choice(REGIONS), c.rng.choice(PRODUCTS), c.rng.randint(1, 250),
                     f"{c.rng.randint(3, 90)}.{c.rng.randint(0, 99):02d}"])
    region, product = rows[c.rng.randint(1, 60)][1:3]
    total = sum(int(r[3]) for r in rows[1:] if r[1] == region and r[2] == product)
    return Made(f"The attached CSV file lists sales records. How many units of {product} were sold in the "
                f"{region} region in total?", str(total),
                ["Open the CSV", f"Keep rows with region {region} and product {product}", "Add the units"],
                ["csv reader"], (".csv", csv_text(rows)))


DEPARTMENTS = ["Surveying", "Drafting", "Logistics", "Accounts"]


def xlsx_top_salary(c: Ctx) -> Made:
    names = set()
    rows: list[list[object]] = [["Name", "Department", "Salary (EUR)", "Start date"]]
    while len(rows) < 31:
        name = f"{c.rng.choice(FIRST)} {c.rng.choice(LAST)}"
        if name in names:
            continue
        names.add(name)
        rows.append([name, c.rng.choice(DEPARTMENTS), c.rng.randrange(31_000, 98_000, 50),
                     rand_date(c.rng, dt.date(2005, 1, 1), 6000)])
    dept = c.rng.choice(DEPARTMENTS)
    members = sorted((r for r in rows[1:] if r[1] == dept), key=lambda r: -int(r[2]))
    if len(members) >= 2 and members[0][2] == members[1][2]:
        members[0][2] = int(members[0][2]) + 50  # no ties for the top salary
    return Made(f"According to the attached spreadsheet, which employee in the {dept} department has the highest "
                f"salary? Give the full name.", str(members[0][0]),
                ["Open the workbook", f"Filter the {dept} department", "Take the highest salary"],
                ["spreadsheet reader"], (".xlsx", xlsx_bytes([("Staff", rows)])))


FIRST = ["Ada", "Bruno", "Celia", "Dmitri", "Elin", "Farid", "Gemma", "Hugo", "Iris", "Jonas", "Kira", "Lars",
         "Mona", "Nils", "Olga", "Pavel", "Runa", "Silas", "Tove", "Uma", "Viggo", "Wanda", "Yusuf", "Zelda"]
LAST = ["Ashby", "Brandt", "Castell", "Dunmore", "Eklund", "Falk", "Gorski", "Hallam", "Ingram", "Jessup",
        "Kowal", "Lindqvist", "Marsh", "Nowak", "Orme", "Pryce"]
ROOMS = ["Aster Room", "Birch Room", "Cedar Room", "Juniper Room", "Larch Room", "Maple Room"]


def docx_booking(c: Ctx) -> Made:
    rows = [["Date", "Room", "Booked by", "Purpose"]]
    seen: set[tuple[str, str]] = set()
    start = dt.date(2024, 3, 1)
    while len(rows) < 21:
        d = rand_date(c.rng, start, 40)
        who = c.rng.choice(FIRST[:10])
        if (who, d.isoformat()) in seen:
            continue
        seen.add((who, d.isoformat()))
        rows.append([d.isoformat(), c.rng.choice(ROOMS), who,
                     c.rng.choice(["Design review", "Client call", "Budget meeting", "Training", "Interview"])])
    body = sorted(rows[1:])
    target = c.rng.choice(body)
    return Made(f"The attached Word document is a meeting-room booking log. Which room did {target[2]} book on "
                f"{long_date(dt.date.fromisoformat(target[0]))}?", target[1],
                ["Open the document", "Find the booking by date and person", "Read the room"], ["docx reader"],
                (".docx", docx_bytes("Meeting room bookings, March-April 2024",
                                     ["All bookings made through the front desk are listed below."],
                                     [rows[0], *body])))


def pptx_owner_count(c: Ctx) -> Made:
    owners = c.rng.sample(FIRST, 4)
    slides = [{"title": "Project Heron: milestones", "bullets": ["Status review for the steering group"]}]
    owned = []
    for k in range(1, 10):
        owner = c.rng.choice(owners)
        owned.append(owner)
        slides.append({"title": f"Milestone {k}: {c.rng.choice(['Survey', 'Design', 'Permits', 'Tender', 'Build', 'Handover'])}",
                       "bullets": [f"Owner: {owner}",
                                   f"Due: {rand_date(c.rng, dt.date(2024, 1, 1), 360).isoformat()}",
                                   f"Status: {c.rng.choice(['on track', 'at risk', 'done'])}"],
                       "notes": f"Reviewed with {c.rng.choice(owners)}."})
    target = c.rng.choice(owners)
    return Made(f"How many slides in the attached presentation describe a milestone owned by {target}?",
                str(owned.count(target)), ["Open the deck", "Read each milestone slide's owner", "Count"],
                ["pptx reader"], (".pptx", pptx_bytes(slides)))


def json_low_stock(c: Ctx) -> Made:
    warehouses = ["Harbour", "Ridge", "Depot 7"]
    items = [{"sku": f"K-{300 + i}", "name": f"{c.rng.choice(PRODUCTS)} type {c.rng.randint(1, 9)}",
              "warehouse": c.rng.choice(warehouses), "stock": c.rng.randint(0, 400)} for i in range(40)]
    wh, threshold = c.rng.choice(warehouses), c.rng.choice([25, 50, 75, 100])
    answer = sum(1 for i in items if i["warehouse"] == wh and i["stock"] < threshold)
    data = json.dumps({"generated": "2024-01-01", "warehouse_inventory": items}, separators=(",", ":"))
    return Made(f"Using the attached JSON inventory, how many items stored in warehouse {wh} have fewer than "
                f"{threshold} units in stock?", str(answer), ["Parse the JSON", "Filter by warehouse and stock"],
                ["json reader"], (".json", data.encode()))


ADJ = ["Silent", "Copper", "Northern", "Hollow", "Amber", "Winter", "Hidden", "Iron", "Pale", "Seventh"]
NOUN = ["Harbour", "Lantern", "Orchard", "Ledger", "Compass", "Meridian", "Cartographer", "Bell", "Garden"]


def xml_pub_year(c: Ctx) -> Made:
    titles = c.rng.sample([f"The {a} {n}" for a in ADJ for n in NOUN], 12)
    books = []
    for i, title in enumerate(titles):
        books.append((f"bk{101 + i}", title, f"{c.rng.choice(FIRST)} {c.rng.choice(LAST)}", c.rng.randint(1890, 2020)))
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<catalog>"]
    for bid, title, author, year in books:
        lines.append(f'  <book id="{bid}"><title>{title}</title><author>{author}</author><year>{year}</year>'
                     f"<price currency=\"EUR\">{c.rng.randint(8, 40)}.00</price></book>")
    lines.append("</catalog>")
    target = c.rng.choice(books)
    return Made(f'According to the attached XML catalog, in what year was the book titled "{target[1]}" published?',
                str(target[3]), ["Parse the XML", "Find the title", "Read the year"], ["xml reader"],
                (".xml", ("\n".join(lines) + "\n").encode()))


def py_output(c: Ctx) -> Made:
    a, inc, m = c.rng.choice([1103, 2207, 4099, 517]), c.rng.randint(11, 997), c.rng.choice([65_537, 99_991, 131_071])
    seed_value, n, k = c.rng.randint(1, 5000), c.rng.randint(200, 600), c.rng.choice([3, 5, 7])
    script = f'''"""Checksum of a pseudo-random walk."""


def step(x):
    return (x * {a} + {inc}) % {m}


def main():
    value = {seed_value}
    total = 0
    for _ in range({n}):
        value = step(value)
        if value % {k} == 0:
            total += value
    print(total)


if __name__ == "__main__":
    main()
'''
    value, total = seed_value, 0
    for _ in range(n):
        value = (value * a + inc) % m
        if value % k == 0:
            total += value
    return Made("What number does the attached Python script print when it is run?", str(total),
                ["Run the script or trace the loop"], ["python"], (".py", script.encode()))


CONVERSIONS = [
    ("mile", "miles", "kilometres", Decimal("1.609344"), 1),
    ("inch", "inches", "centimetres", Decimal("2.54"), 2),
    ("pound", "pounds", "kilograms", Decimal("0.45359237"), 1),
    ("foot", "feet", "metres", Decimal("0.3048"), 1),
    ("US gallon", "US gallons", "litres", Decimal("3.785411784"), 1),
]


def exact_units(c: Ctx) -> Made:
    singular, plural, target, factor, decimals = c.rng.choice(CONVERSIONS)
    value = Decimal(c.rng.randint(10, 9999)) / (10 ** decimals)
    return Made(f"Using the exact international definition of the {singular}, what is {dec(value)} {plural} in "
                f"{target}? Give the exact value without rounding.", dec(value * factor),
                [f"Multiply by the exact factor {factor}"], ["calculator"])


def date_calc(c: Ctx) -> Made:
    if c.rng.random() < 0.5:
        d1 = rand_date(c.rng, dt.date(1990, 1, 1), 12000)
        d2 = d1 + dt.timedelta(days=c.rng.randint(100, 4000))
        return Made(f"How many days are there from {d1.isoformat()} to {d2.isoformat()}, counting both the first "
                    f"and the last day?", str((d2 - d1).days + 1), ["Subtract the dates and add one"], ["calculator"])
    d = rand_date(c.rng, dt.date(1850, 1, 1), 60000)
    return Made(f"On what day of the week did {calendar.month_name[d.month]} {d.day}, {d.year} fall?",
                calendar.day_name[d.weekday()], ["Compute the weekday"], ["python"])


def big_arithmetic(c: Ctx) -> Made:
    if c.rng.random() < 0.6:
        a, b = c.rng.randint(10**11, 10**13), c.rng.randint(10**11, 10**13)
        return Made(f"What is the exact product of {a} and {b}? Write all digits.", str(a * b),
                    ["Multiply exactly (big integers)"], ["python"])
    base, exp = c.rng.randint(101, 999), c.rng.randint(7, 9)
    return Made(f"What is the exact value of {base} raised to the power {exp}? Write all digits.", str(base ** exp),
                ["Exponentiate exactly"], ["python"])


def corpus_completed(c: Ctx) -> Made:
    s = c.rng.choice(c.world.structures)
    return Made(f"According to {ARCHIVE}, in what year was the {s.name} completed?", str(s.completed),
                [f"Search the archive for the {s.name}", "Read the completion year"], ["document search"])


# --- level 2 ---------------------------------------------------------------------------------------

DIVISIONS = ["Harbour Services", "Rail Freight", "Cold Storage", "Customs Brokerage", "Fleet Leasing", "Warehousing"]


def pdf_revenue(c: Ctx) -> Made:
    year = c.rng.randint(2015, 2023)
    table = [["Division", "Q1", "Q2", "Q3", "Q4"]]
    values = {}
    for div in DIVISIONS:
        q = [c.rng.randint(400, 9_800) for _ in range(4)]
        values[div] = q
        table.append([div, *(f"{v:,}" for v in q)])
    div = c.rng.choice(DIVISIONS)
    pdf = pdf_bytes(f"Meridian Logistics - Annual Report {year}",
                    [f"This report summarises the {year} trading year of Meridian Logistics. Revenue by division "
                     "and quarter is given in thousands of US dollars.",
                     f"Total staff at year end: {c.rng.randint(300, 2000):,}. The board met {c.rng.randint(4, 12)} times."],
                    table, col_x=[50, 230, 300, 370, 440],
                    footer=["All figures unaudited. Quarterly figures in thousands of USD."])
    return Made(f"According to the attached annual report, what was the combined revenue of the {div} division in "
                f"Q2 and Q3, in thousands of USD?", str(values[div][1] + values[div][2]),
                ["Read the PDF table", "Add Q2 and Q3 for the division"], ["pdf reader"], (".pdf", pdf))


CITIES = ["Arlen", "Bexford", "Corvale", "Dunmere", "Estwick"]


def xlsx_city_orders(c: Ctx) -> Made:
    customers = [["Customer ID", "Name", "City"]]
    for i in range(12):
        customers.append([f"C{200 + i}", f"{c.rng.choice(LAST)} & {c.rng.choice(LAST)} Ltd", c.rng.choice(CITIES)])
    orders = [["Order ID", "Customer ID", "Amount (USD)", "Date"]]
    for i in range(45):
        orders.append([f"O-{5000 + i}", c.rng.choice(customers[1:])[0], c.rng.randint(50, 9_000),
                       rand_date(c.rng, dt.date(2023, 1, 1), 365)])
    city = c.rng.choice(sorted({row[2] for row in customers[1:]}))
    ids = {row[0] for row in customers[1:] if row[2] == city}
    total = sum(int(row[2]) for row in orders[1:] if row[1] in ids)
    return Made(f"The attached workbook has an Orders sheet and a Customers sheet. What is the total amount, in USD, "
                f"of all orders placed by customers located in {city}?", str(total),
                ["Find the customers in the city", "Sum their orders' amounts"], ["spreadsheet reader"],
                (".xlsx", xlsx_bytes([("Orders", orders), ("Customers", customers)])))


SITES = ["Old Mill Museum", "Tidewater Gardens", "Fort Halloran", "Glass Pavilion", "Stone Circle Visitor Centre"]


def zip_site_visitors(c: Ctx) -> Made:
    codes = [f"S{c.rng.randint(10, 99)}{ch}" for ch in "ABCDE"]
    rows: list[list[object]] = [["site_code", "month", "visitors"]]
    totals = dict.fromkeys(codes, 0)
    for month in range(1, 13):
        for code in codes:
            v = c.rng.randint(200, 9000)
            totals[code] += v
            rows.append([code, f"2023-{month:02d}", v])
    best = max(codes, key=lambda k: totals[k])
    if sorted(totals.values())[-1] == sorted(totals.values())[-2]:
        rows[-1][2] = int(rows[-1][2]) + 1
        totals[str(rows[-1][0])] += 1
        best = max(codes, key=lambda k: totals[k])
    names = c.rng.sample(SITES, 5)
    directory = json.dumps({"sites": [{"code": k, "name": n} for k, n in zip(codes, names, strict=True)]}, indent=1)
    archive = zip_bytes([
        ("README.txt", b"Visitor statistics 2023. Site names are in lookup/sites.zip.\n"),
        ("data/visits_2023.csv", csv_text(rows)),
        ("lookup/sites.zip", zip_bytes([("sites.json", directory.encode())])),
    ])
    return Made("The attached archive contains monthly visitor counts by site code and, in a nested archive, the "
                "site directory. Which site, by its full name, had the most visitors in total in 2023?",
                names[codes.index(best)], ["Unzip", "Total visitors per code", "Look up the name in the nested zip"],
                ["zip reader", "csv reader", "json reader"], (".zip", archive))


def corpus_birthplace_population(c: Ctx) -> Made:
    s = c.rng.choice(c.world.structures)
    town = c.world.town(c.world.person(s.designer).birth_town)
    return Made(f"According to {ARCHIVE}, what was the 2021 census population of the town where the designer of "
                f"the {s.name} was born?", str(town.population_2021),
                [f"Find the designer of the {s.name}", "Find where the designer was born", "Read the 2021 census"],
                ["document search"])


def csv_driver_km(c: Ctx) -> Made:
    drivers = c.rng.sample(FIRST, 4)
    rows: list[list[object]] = [["trip_id", "driver", "date", "distance_mi"]]
    for i in range(40):
        rows.append([f"T{700 + i}", c.rng.choice(drivers), rand_date(c.rng, dt.date(2024, 1, 1), 200).isoformat(),
                     dec(Decimal(c.rng.randint(15, 4000)) / 10)])
    driver = c.rng.choice(drivers)
    miles = sum(Decimal(str(r[3])) for r in rows[1:] if r[1] == driver)
    return Made(f"The attached trip log records distances in miles. What is the total distance driven by {driver}, "
                f"in kilometres, rounded to two decimal places? Use 1 mile = 1.609344 km.",
                money(miles * Decimal("1.609344")), ["Sum the driver's miles", "Convert exactly", "Round"],
                ["csv reader", "calculator"], (".csv", csv_text(rows)))


def docx_project_end(c: Ctx) -> Made:
    rows = [["Project", "Start date", "Duration (days)", "Lead"]]
    projects = c.rng.sample(["Kestrel", "Osprey", "Heron", "Plover", "Curlew", "Merlin", "Tern", "Avocet"], 6)
    info = {}
    for p in projects:
        start, days = rand_date(c.rng, dt.date(2023, 1, 1), 500), c.rng.randint(20, 400)
        info[p] = (start, days)
        rows.append([p, start.isoformat(), str(days), c.rng.choice(FIRST)])
    p = c.rng.choice(projects)
    end = info[p][0] + dt.timedelta(days=info[p][1])
    return Made(f"According to the attached project plan, project {p} finishes exactly its listed number of days "
                f"after its start date. On what date does it finish? Answer in YYYY-MM-DD format.", end.isoformat(),
                ["Read the start date and duration", "Add the days"], ["docx reader", "calculator"],
                (".docx", docx_bytes("Project plan 2023-2024", ["Durations are calendar days from the start date."],
                                     rows)))


def xlsx_member_list(c: Ctx) -> Made:
    rows: list[list[object]] = [["First name", "Last name", "Joined", "Status"]]
    firsts = c.rng.sample(FIRST, 18)
    for f in firsts:
        rows.append([f, c.rng.choice(LAST), c.rng.randint(1998, 2023), c.rng.choice(["active", "active", "lapsed"])])
    while True:
        year = c.rng.randint(2004, 2018)
        picked = sorted(str(r[0]) for r in rows[1:] if r[3] == "active" and int(r[2]) < year)
        if 2 <= len(picked) <= 6:
            break
    return Made(f"List the first names of the active members in the attached spreadsheet who joined before {year}, "
                f"in alphabetical order, as a comma-separated list.", ", ".join(picked),
                ["Filter active members", f"Keep those who joined before {year}", "Sort alphabetically"],
                ["spreadsheet reader"], (".xlsx", xlsx_bytes([("Members", rows)])))


def pptx_phase_budget(c: Ctx) -> Made:
    teams = ["Survey", "Design", "Permits", "Procurement", "Site works", "Quality", "Handover", "Community"]
    slides = [{"title": "Harbour Link programme: budgets", "bullets": ["Budgets per team and phase, in euros"]}]
    budget: dict[int, int] = {1: 0, 2: 0, 3: 0}
    for phase in (1, 2, 3):
        for part in range(c.rng.randint(1, 2)):
            chosen = c.rng.sample(teams, 3)
            table = [["Team", "Budget (EUR)"]]
            for team in chosen:
                amount = c.rng.randrange(5_000, 250_000, 250)
                budget[phase] += amount
                table.append([team, f"{amount:,}"])
            title = f"Phase {phase}: team budgets" + (" (continued)" if part else "")
            slides.append({"title": title, "table": table})
    phase = c.rng.choice([1, 2, 3])
    return Made(f"What is the total budget, in euros, of all teams listed on the Phase {phase} slides of the "
                f"attached presentation?", str(budget[phase]), ["Find the Phase slides", "Add the table budgets"],
                ["pptx reader"], (".pptx", pptx_bytes(slides)))


def xml_shipment_kg(c: Ctx) -> Made:
    dests = ["Rotterdam", "Gdansk", "Bilbao", "Tallinn"]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<shipments unit="lb">']
    weights: dict[str, Decimal] = dict.fromkeys(dests, Decimal(0))
    for i in range(25):
        d, w = c.rng.choice(dests), Decimal(c.rng.randint(100, 90000)) / 10
        weights[d] += w
        lines.append(f'  <shipment id="SH{900 + i}" destination="{d}" weight_lb="{dec(w)}"/>')
    lines.append("</shipments>")
    dest = c.rng.choice([d for d in dests if weights[d] > 0])
    kg = (weights[dest] * Decimal("0.45359237")).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    return Made(f"The attached XML file lists shipment weights in pounds. What is the total weight, in kilograms, of "
                f"the shipments bound for {dest}? Use 1 lb = 0.45359237 kg exactly and round to three decimal "
                f"places.", str(kg), ["Sum weights for the destination", "Convert", "Round"],
                ["xml reader", "calculator"], (".xml", ("\n".join(lines) + "\n").encode()))


# --- level 3 ---------------------------------------------------------------------------------------

def corpus_mentor_elevation(c: Ctx) -> Made:
    candidates = [s for s in c.world.structures if c.world.person(s.designer).mentor]
    s = c.rng.choice(candidates)
    mentor = c.world.person(c.world.person(s.designer).mentor or "")
    town = c.world.town(mentor.birth_town)
    feet = (Decimal(town.elevation_m) / Decimal("0.3048")).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return Made(f"Using {ARCHIVE}: find who designed the {s.name}, then the person that designer trained or studied "
                f"under. At what elevation, in feet, does that mentor's birthplace lie? Convert from metres with "
                f"1 ft = 0.3048 m exactly and round to the nearest whole foot.", str(feet),
                ["Find the designer", "Find the mentor", "Find the mentor's birthplace", "Convert its elevation"],
                ["document search", "calculator"])


def pdf_corpus_towns(c: Ctx) -> Made:
    structures = c.rng.sample(c.world.structures, 10)
    while True:
        scores = {s.name: c.rng.randint(35, 98) for s in structures}
        threshold = c.rng.randint(50, 70)
        towns = sorted({s.town for s in structures if scores[s.name] < threshold})
        if 2 <= len(towns) <= 4:
            break
    table = [["Code", "Structure", "Inspection score"]]
    for i, s in enumerate(structures):
        table.append([f"HR-{c.rng.randint(100, 999)}{i}", s.name, str(scores[s.name])])
    pdf = pdf_bytes("Heritage Register: 2023 inspection round",
                    ["Scores run from 0 (unsafe) to 100 (excellent). Structures scoring low are scheduled for "
                     "repair. Locations are recorded in the regional archive."], table, col_x=[50, 150, 400])
    return Made(f"The attached heritage register gives inspection scores. Using {ARCHIVE}, list the towns where the "
                f"structures scoring below {threshold} are located, in alphabetical order, comma-separated, without "
                f"repeats.", ", ".join(towns), ["Read the register", "Look up each low-scoring structure's town"],
                ["pdf reader", "document search"], (".pdf", pdf))


ITEMS = ["anchors", "chain", "buoys", "winches", "cable"]


def zip_shipping_charge(c: Ctx) -> Made:
    rates = {item: Decimal(c.rng.randint(80, 990)) / 100 for item in ITEMS}
    rows: list[list[object]] = [["Date", "Item", "Weight (lb)"]]
    shipments = []
    for _ in range(30):
        d, item, w = rand_date(c.rng, dt.date(2024, 1, 1), 120), c.rng.choice(ITEMS), c.rng.randint(20, 3000)
        shipments.append((d, item, w))
        rows.append([d, item, w])
    d1 = rand_date(c.rng, dt.date(2024, 1, 1), 60)
    d2 = d1 + dt.timedelta(days=c.rng.randint(20, 50))
    total = sum((Decimal(w) * Decimal("0.45359237") * rates[item] for d, item, w in shipments if d1 <= d <= d2),
                Decimal(0))
    rates_json = json.dumps({"currency": "USD", "rates_usd_per_kg": {k: str(v) for k, v in rates.items()}}, indent=2)
    archive = zip_bytes([
        ("shipments.xlsx", xlsx_bytes([("Shipments", rows)])),
        ("tariffs/rates.zip", zip_bytes([("rates.json", rates_json.encode())])),
    ])
    return Made(f"Using the attached archive, what is the total shipping charge in USD for the shipments dispatched "
                f"from {d1.isoformat()} to {d2.isoformat()} inclusive, where each shipment costs its weight in "
                f"kilograms (1 lb = 0.45359237 kg) times its item's rate per kilogram? Round to the nearest cent.",
                money(total), ["Open the workbook in the zip", "Open the nested tariff zip", "Filter dates",
                               "Convert and price each shipment", "Sum and round"],
                ["zip reader", "spreadsheet reader", "json reader", "calculator"], (".zip", archive))


def ledger_growth(c: Ctx) -> Made:
    principal = c.rng.randint(100, 9_999)
    d1 = rand_date(c.rng, dt.date(2000, 1, 1), 5000)
    d2 = d1 + dt.timedelta(days=c.rng.randint(600, 1500))
    periods = (d2 - d1).days // 30
    return Made(f"A ledger holds {principal} credits on {d1.isoformat()}. At the end of every complete 30-day period "
                f"after that date, the balance triples. Exactly how many credits does the ledger hold on "
                f"{d2.isoformat()}? Write all digits.", str(principal * 3 ** periods),
                ["Count complete 30-day periods", "Multiply by 3 per period exactly"], ["python"])


def xlsx_corpus_lengths(c: Ctx) -> Made:
    surveyors = c.rng.sample(FIRST, 3)
    rows: list[list[object]] = [["Surveyor", "Structure", "Visit date"]]
    visits: dict[str, set[str]] = {s: set() for s in surveyors}
    for _ in range(24):
        who, s = c.rng.choice(surveyors), c.rng.choice(c.world.structures)
        visits[who].add(s.name)
        rows.append([who, s.name, rand_date(c.rng, dt.date(2023, 4, 1), 180)])
    who = c.rng.choice(surveyors)
    visited = [next(s for s in c.world.structures if s.name == n) for n in sorted(visits[who])]
    born = sorted(c.world.person(s.designer).born for s in visited)
    year = born[len(born) // 2] + 1 if born else 1850
    total = sum(s.length_m for s in visited if c.world.person(s.designer).born < year)
    return Made(f"The attached survey log lists the structures each surveyor visited. Using {ARCHIVE}, what is the "
                f"total length in metres of the distinct structures visited by {who} that were designed by someone "
                f"born before {year}?", str(total),
                ["List the surveyor's distinct structures", "Find each designer's birth year", "Sum lengths"],
                ["spreadsheet reader", "document search"], (".xlsx", xlsx_bytes([("Visits", rows)])))


FAMILIES = [
    Family("csv_units_sold", 1, 2, csv_units_sold),
    Family("xlsx_top_salary", 1, 2, xlsx_top_salary),
    Family("docx_booking", 1, 2, docx_booking),
    Family("pptx_owner_count", 1, 2, pptx_owner_count),
    Family("json_low_stock", 1, 2, json_low_stock),
    Family("xml_pub_year", 1, 2, xml_pub_year),
    Family("py_output", 1, 2, py_output),
    Family("exact_units", 1, 3, exact_units),
    Family("date_calc", 1, 3, date_calc),
    Family("big_arithmetic", 1, 3, big_arithmetic),
    Family("corpus_completed", 1, 3, corpus_completed),
    Family("pdf_revenue", 2, 3, pdf_revenue),
    Family("xlsx_city_orders", 2, 3, xlsx_city_orders),
    Family("zip_site_visitors", 2, 3, zip_site_visitors),
    Family("corpus_birthplace_population", 2, 4, corpus_birthplace_population),
    Family("csv_driver_km", 2, 3, csv_driver_km),
    Family("docx_project_end", 2, 3, docx_project_end),
    Family("xlsx_member_list", 2, 3, xlsx_member_list),
    Family("pptx_phase_budget", 2, 2, pptx_phase_budget),
    Family("xml_shipment_kg", 2, 2, xml_shipment_kg),
    Family("corpus_mentor_elevation", 3, 3, corpus_mentor_elevation),
    Family("pdf_corpus_towns", 3, 2, pdf_corpus_towns),
    Family("zip_shipping_charge", 3, 3, zip_shipping_charge),
    Family("ledger_growth", 3, 2, ledger_growth),
    Family("xlsx_corpus_lengths", 3, 3, xlsx_corpus_lengths),
]


def generate(out: str | Path, seed: int = 0) -> list[dict]:
    """Write the task set under ``out`` and return the metadata rows."""
    root = Path(out)
    split_dir = root / "2023" / SPLIT
    if split_dir.exists():
        shutil.rmtree(split_dir)  # stale attachments of another seed must not linger
    split_dir.mkdir(parents=True)
    world = build_world(random.Random(f"{seed}:world"))
    write_corpus(world, split_dir / "corpus", random.Random(f"{seed}:corpus"))

    rows: list[dict] = []
    for family in FAMILIES:
        questions: set[str] = set()
        answers: set[str] = set()
        for i in range(family.count):
            # redraw (up to 20 times) until question + attachment are new and, preferably, so is the
            # answer, so a family's instances are not one task asked twice
            for retry in range(20):
                rng = random.Random(f"{seed}:{family.name}:{i}:{retry}")
                task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                made = family.make(Ctx(rng=rng, world=world, split_dir=split_dir, task_id=task_id))
                key = made.question + (hashlib.sha256(made.attachment[1]).hexdigest() if made.attachment else "")
                if key not in questions and (made.answer not in answers or retry >= 10):
                    break
            questions.add(key)
            answers.add(made.answer)
            file_name = ""
            if made.attachment is not None:
                ext, data = made.attachment
                file_name = task_id + ext
                (split_dir / file_name).write_bytes(data)
            rows.append({
                "task_id": task_id,
                "Question": made.question,
                "Level": family.level,
                "Final answer": made.answer,
                "file_name": file_name,
                "file_path": f"2023/{SPLIT}/{file_name}" if file_name else "",
                "Annotator Metadata": {
                    "Steps": "\n".join(f"{k}. {s}" for k, s in enumerate(made.steps, start=1)),
                    "Number of steps": str(len(made.steps)),
                    "Tools": "\n".join(made.tools),
                    "Number of tools": str(len(made.tools)),
                    "Family": family.name,
                },
            })
    random.Random(f"{seed}:order").shuffle(rows)
    with (split_dir / "metadata.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset root to write (the --data-dir of the benchmark)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = generate(args.out, args.seed)
    levels = {lv: sum(1 for r in rows if r["Level"] == lv) for lv in (1, 2, 3)}
    print(f"wrote {len(rows)} tasks to {Path(args.out) / '2023' / SPLIT} (levels: {levels})")


if __name__ == "__main__":
    main()
