"""A fictional region (towns, engineers, companies, structures) and the archive documents describing it.

Multi-hop questions are asked about this world; the documents are the only place the facts are
written down, in a few sentence variants with distractor numbers (renovation years, older census
figures), so a solver has to search and read rather than pattern-match.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

_ONSETS = ["Br", "C", "Dr", "F", "Gr", "H", "K", "L", "M", "N", "P", "Qu", "R", "S", "Th", "V", "W", "Z", "St",
           "Mor", "Tal", "Vin", "Cor", "Del", "Ost", "Alb"]
_MIDDLES = ["aren", "evik", "amar", "odol", "esel", "atan", "ibri", "elem", "onor", "agav", "ohol", "eris",
            "awen", "udar", "eket"]
_TOWN_ENDS = ["holm", "ford", "wick", "stead", "mere", "by", "haven", "ridge", "dale", "moor"]
_SURNAME_ENDS = ["sen", "ström", "ley", "ard", "ovic", "ton", "well", "rick", "mann", "ais"]
_FIRST_NAMES = ["Maren", "Oskar", "Ilse", "Tobias", "Greta", "Anselm", "Linnea", "Casimir", "Hedda", "Rune",
                "Sigrid", "Evander", "Thea", "Bastian", "Ottilie", "Jorah", "Mirela", "Konrad", "Liv", "Albin"]
_REGIONS = ["Drefford", "Ammelvale", "Northreach", "Selwyn Coast"]
_RIVERS = ["Ammel", "Cresk", "Velder", "Oune", "Tarrow", "Glim"]
_KINDS = ["steel truss bridge", "stone arch bridge", "suspension bridge", "water tower", "lighthouse",
          "covered market hall", "railway viaduct"]
_COMPANY_ENDS = ["Ironworks", "Masonry Guild", "Construction Company", "Foundry", "Engineering Works"]
_STRUCTURE_ENDS = {"bridge": "Bridge", "water tower": "Water Tower", "lighthouse": "Light",
                   "covered market hall": "Market Hall", "railway viaduct": "Viaduct"}


@dataclass
class Town:
    name: str
    region: str
    river: str
    founded: int
    elevation_m: int
    population_2021: int
    population_2011: int


@dataclass
class Person:
    name: str
    born: int
    died: int
    birth_town: str
    profession: str
    mentor: str | None = None


@dataclass
class Company:
    name: str
    founded: int
    founder: str
    hq_town: str


@dataclass
class Structure:
    name: str
    kind: str
    town: str
    designer: str
    builder: str
    completed: int
    renovated: int
    length_m: int


@dataclass
class World:
    towns: list[Town] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    companies: list[Company] = field(default_factory=list)
    structures: list[Structure] = field(default_factory=list)

    def town(self, name: str) -> Town:
        return next(t for t in self.towns if t.name == name)

    def person(self, name: str) -> Person:
        return next(p for p in self.people if p.name == name)

    def company(self, name: str) -> Company:
        return next(c for c in self.companies if c.name == name)


class _Names:
    """Unique names: nothing in the world shares a name or a word with another entity's surname."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _stem(self) -> str:
        while True:
            stem = self.rng.choice(_ONSETS) + self.rng.choice(_MIDDLES)
            if stem not in self.used:
                self.used.add(stem)
                return stem

    def town(self) -> str:
        return self._stem() + self.rng.choice(_TOWN_ENDS)

    def surname(self) -> str:
        return self._stem() + self.rng.choice(_SURNAME_ENDS)

    def word(self) -> str:
        return self._stem()


def build_world(rng: random.Random) -> World:
    names = _Names(rng)
    world = World()
    for i in range(12):
        pop2011 = rng.randint(2_000, 60_000)
        world.towns.append(Town(
            name=names.town(), region=_REGIONS[i % len(_REGIONS)], river=rng.choice(_RIVERS),
            founded=rng.randint(1150, 1700), elevation_m=rng.randint(12, 980),
            population_2021=pop2011 + rng.randint(-1_500, 6_000), population_2011=pop2011,
        ))
    first_names = rng.sample(_FIRST_NAMES, 14)
    for i in range(14):
        born = rng.randint(1790, 1880)
        mentor = world.people[rng.randrange(i)].name if i >= 3 else None
        if mentor is not None:  # a mentor is older than the student
            born = max(born, world.person(mentor).born + rng.randint(15, 35))
        world.people.append(Person(
            name=f"{first_names[i]} {names.surname()}", born=born, died=born + rng.randint(48, 90),
            birth_town=rng.choice(world.towns).name, profession=rng.choice(["civil engineer", "architect"]),
            mentor=mentor,
        ))
    for _ in range(8):
        founder = rng.choice(world.people)
        world.companies.append(Company(
            name=f"{names.word()} {rng.choice(_COMPANY_ENDS)}", founded=rng.randint(1820, 1900),
            founder=founder.name, hq_town=rng.choice(world.towns).name,
        ))
    for _ in range(16):
        kind = rng.choice(_KINDS)
        designer = rng.choice(world.people)
        completed = designer.born + rng.randint(28, 45)
        suffix = _STRUCTURE_ENDS["bridge" if kind.endswith("bridge") else kind]
        world.structures.append(Structure(
            name=f"{names.word()} {suffix}", kind=kind, town=rng.choice(world.towns).name, designer=designer.name,
            builder=rng.choice(world.companies).name, completed=completed,
            renovated=completed + rng.randint(30, 90), length_m=rng.randint(40, 900),
        ))
    return world


def _town_doc(t: Town, rng: random.Random) -> str:
    opening = rng.choice([
        f"{t.name} is a market town in the {t.region} region, on the River {t.river}.",
        f"Lying on the River {t.river}, {t.name} is one of the older towns of the {t.region} region.",
    ])
    elevation = rng.choice([
        f"The town centre stands at an elevation of {t.elevation_m} metres above sea level.",
        f"It lies at an elevation of {t.elevation_m} metres above sea level.",
    ])
    census = rng.choice([
        f"The 2021 census recorded a population of {t.population_2021:,}, compared with {t.population_2011:,} in 2011.",
        f"At the 2011 census it had {t.population_2011:,} inhabitants; the 2021 census recorded a population of "
        f"{t.population_2021:,}.",
    ])
    return (f"# {t.name}\n\n{opening} A charter of {t.founded} is the earliest record of the settlement. "
            f"{elevation}\n\n{census} The weekly market and the river crossing remain the town's landmarks.\n")


def _person_doc(p: Person, world: World, rng: random.Random) -> str:
    works = [s.name for s in world.structures if s.designer == p.name]
    born = rng.choice([
        f"{p.name} ({p.born}–{p.died}) was {'an' if p.profession[0] in 'aeiou' else 'a'} {p.profession} born in {p.birth_town}.",
        f"Born in {p.birth_town} in {p.born}, {p.name} became one of the region's best-known {p.profession}s; "
        f"{p.name.split()[0]} died in {p.died}.",
    ])
    text = f"# {p.name}\n\n{born}"
    if p.mentor:
        text += " " + rng.choice([
            f"{p.name.split()[-1]} trained under {p.mentor}.",
            f"As a young draughtsman, {p.name.split()[-1]} studied under {p.mentor}.",
        ])
    if works:
        text += f"\n\nWorks attributed to {p.name.split()[-1]} include the {', the '.join(works)}."
    return text + "\n"


def _company_doc(c: Company, rng: random.Random) -> str:
    founded = rng.choice([
        f"{c.name} was founded in {c.founded} by {c.founder}.",
        f"{c.founder} founded {c.name} in {c.founded}.",
    ])
    return (f"# {c.name}\n\n{founded} Its works and offices were in {c.hq_town}. The firm expanded after "
            f"{c.founded + 25} and built structures across the region.\n")


def _structure_doc(s: Structure, rng: random.Random) -> str:
    built = rng.choice([
        f"The {s.name} is a {s.kind} in {s.town}. It was designed by {s.designer} and built by {s.builder}.",
        f"Designed by {s.designer} and built by {s.builder}, the {s.name} is a {s.kind} in {s.town}.",
    ])
    completed = rng.choice([
        f"Construction was completed in {s.completed}; the structure was renovated in {s.renovated}.",
        f"It was completed in {s.completed} and renovated in {s.renovated}.",
    ])
    return (f"# {s.name}\n\n{built} {completed}\n\nThe structure has an overall length of {s.length_m} metres "
            f"and is a listed monument.\n")


def write_corpus(world: World, folder: Path, rng: random.Random) -> list[str]:
    """One markdown document per entity; returns the file names written."""
    folder.mkdir(parents=True, exist_ok=True)
    docs: list[tuple[str, str]] = []
    for t in world.towns:
        docs.append((f"town_{_slug(t.name)}.md", _town_doc(t, rng)))
    for p in world.people:
        docs.append((f"person_{_slug(p.name)}.md", _person_doc(p, world, rng)))
    for c in world.companies:
        docs.append((f"company_{_slug(c.name)}.md", _company_doc(c, rng)))
    for s in world.structures:
        docs.append((f"structure_{_slug(s.name)}.md", _structure_doc(s, rng)))
    for name, text in docs:
        (folder / name).write_text(text, encoding="utf-8")
    return [name for name, _ in docs]


def _slug(name: str) -> str:
    return "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in name.lower()).strip("_")
