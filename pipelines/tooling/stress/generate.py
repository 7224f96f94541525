"""Generate a profile's two partner files, with the truth (which person each record is).

People live in households that share a family name, a postcode, an address and a UPRN (the
hard non-matches: parents and children, twins); names come from Faker pools of several
locales. Each file holds a share of the people (some twice), each record written from the
person's true identity with the profile's errors (:mod:`pipelines.tooling.stress.profiles`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl
from faker import Faker

from pipelines.tooling.stress.profiles import ALL_FIELDS, Profile
from pipelines.tooling.synth.names import ascii_fold, nicknames_for

POOL_SIZE = {"en_GB": 1500}
DEFAULT_POOL = 250
# A valid-looking postcode a system records when it does not know one (the NHS's own
# pseudo-postcodes, ZZ99 ..., fail the UK format check and would simply be missing).
PLACEHOLDER_POSTCODE = "NS1 9ZZ"
# Dates of birth are drawn up to this day, a fixed point: the data must not change with today's date.
BORN_BY = dt.date(2025, 12, 31)
# Romanisations of the same sounds (applied once, where the name has the pattern).
VARIANTS = (
    ("OHAMM", "UHAMM"),
    ("UHAMM", "OHAMM"),
    ("MM", "M"),
    ("EE", "I"),
    ("OO", "U"),
    ("KH", "K"),
    ("Q", "K"),
    ("V", "W"),
    ("W", "V"),
    ("AI", "AY"),
    ("SH", "S"),
    ("ZH", "J"),
    ("X", "SH"),
    ("IA", "YA"),
    ("OU", "U"),
    ("U", "OO"),
    ("A", "E"),
    ("I", "Y"),
    ("E", "A"),
)
TRANSLITERATED = ("en_IN", "en_PK", "zh_CN")
STREETS = (
    "Road",
    "Street",
    "Avenue",
    "Lane",
    "Close",
    "Drive",
    "Grove",
    "Way",
    "Crescent",
    "Gardens",
)


@dataclass(frozen=True)
class StressFiles:
    """The two partners' raw files (record_id, the profile's fields) and the truth."""

    first: pl.DataFrame
    second: pl.DataFrame
    truth: pl.DataFrame  # file, record_id, person_id, origin


@lru_cache(maxsize=8)
def _pools(
    seed: int, locales: tuple[str, ...]
) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """Per locale: female given names, male given names, family names (romanised for zh_CN)."""
    pools = {}
    for offset, locale in enumerate(locales):
        faker = Faker(locale)
        faker.seed_instance(seed * 31 + offset)
        size = POOL_SIZE.get(locale, DEFAULT_POOL)
        if locale == "zh_CN":
            # Faker romanises only a couple of dozen given names; Chinese given names are mostly
            # two syllables written as one word (Xiaoming, Jianguo), so most are composed of two.
            syllables = sorted({faker.first_romanized_name() for _ in range(500)})
            given = [
                syllables[i] + (syllables[j].lower() if k < 0.7 else "")
                for i, j, k in zip(
                    faker.random.choices(range(len(syllables)), k=size),
                    faker.random.choices(range(len(syllables)), k=size),
                    (faker.random.random() for _ in range(size)),
                )
            ]
            pools[locale] = (given, given, [faker.last_romanized_name() for _ in range(size)])
        elif locale == "en_NG":
            # en_NG alone has 40 given and 20 family names: add Faker's Yoruba names (yo_NG).
            yoruba = Faker("yo_NG")
            yoruba.seed_instance(seed * 31 + offset)
            pools[locale] = tuple(
                [getattr(f, method)() for f in (faker, yoruba) for _ in range(size // 2)]
                for method in ("first_name_female", "first_name_male", "last_name")
            )
        else:
            pools[locale] = (
                [faker.first_name_female() for _ in range(size)],
                [faker.first_name_male() for _ in range(size)],
                [faker.last_name() for _ in range(size)],
            )
    return pools


def _nhs_number(rng: np.random.Generator) -> str:
    while True:
        digits = rng.integers(0, 10, 9)
        check = 11 - int(sum((10 - i) * d for i, d in enumerate(digits))) % 11
        check = 0 if check == 11 else check
        if check != 10 and len(set(digits)) > 1:
            return "".join(map(str, digits)) + str(check)


def _people(profile: Profile, rng: np.random.Generator, seed: int) -> list[dict]:
    locales = tuple(profile.origins)
    pools = _pools(seed, locales)
    shares = np.array(list(profile.origins.values()))
    shares = shares / shares.sum()
    postcodes = [
        f"NS{d} {s}{a}{b}"
        for d in range(2, 10)
        for s in range(1, 10)
        for a, b in zip("ABDEFGHJLNPQRSTUWXY", "ZYXWUTSRQPNLJHGFEDB")
    ]
    rng.shuffle(postcodes)
    postcodes = postcodes[: max(10, profile.people // 40)]
    if profile.postcodes_abroad:  # the same homes, each with a 4-digit code (no rng drawn)
        postcodes = [str(2000 + 7 * i) for i in range(len(postcodes))]
    streets = [f"{Faker('en_GB').last_name()} {STREETS[i % len(STREETS)]}" for i in range(60)]
    people: list[dict] = []
    household = 0
    while len(people) < profile.people:
        household += 1
        origin = locales[rng.choice(len(locales), p=shares)]
        female, male, family = pools[origin]
        surname = family[rng.integers(len(family))]
        size = int(rng.choice([1, 2, 3, 4, 5], p=[0.3, 0.3, 0.2, 0.15, 0.05]))
        postcode = postcodes[rng.integers(len(postcodes))]
        address = f"{rng.integers(1, 200)} {streets[rng.integers(len(streets))]}"
        uprn = str(rng.integers(10**9, 10**12))
        twins = size >= 4 and rng.random() < 0.1
        for member in range(size):
            adult = member < 2 or size <= 2
            age_days = int(rng.integers(18 * 365, 90 * 365) if adult else rng.integers(0, 18 * 365))
            if twins and member == 3:
                born = people[-1]["born"]
            else:
                born = BORN_BY - dt.timedelta(days=age_days)
            sex = "F" if rng.random() < 0.5 else "M"
            names = female if sex == "F" else male
            given = names[rng.integers(len(names))]
            middle = (
                names[rng.integers(len(names))]
                if rng.random() < 0.25 and origin != "zh_CN"
                else None
            )
            people.append(
                {
                    "person_id": f"P{len(people):06d}",
                    "household": household,
                    "origin": origin,
                    "given_name": given,
                    "middle_name": middle,
                    "family_name": surname,
                    "born": born,
                    "sex": sex,
                    "postcode": postcode,
                    "address_line": address,
                    "uprn": uprn,
                    "nhs_number": _nhs_number(rng),
                    "adult": adult,
                    "previous": (
                        postcodes[rng.integers(len(postcodes))],
                        f"{rng.integers(1, 200)} {streets[rng.integers(len(streets))]}",
                        str(rng.integers(10**9, 10**12)),
                    ),
                    "other_surname": family[rng.integers(len(family))],
                }
            )
    return people[: profile.people]


def _transposed_characters(code: str, rng: np.random.Generator) -> str:
    """Two neighbouring characters of a code swapped (6062 -> 6602), as a keying error makes."""
    positions = [
        i for i in range(len(code) - 1) if code[i] != code[i + 1] and " " not in code[i : i + 2]
    ]
    if not positions:
        return code
    i = positions[int(rng.integers(len(positions)))]
    return code[:i] + code[i + 1] + code[i] + code[i + 2 :]


def _changed_digit(code: str, rng: np.random.Generator) -> str:
    """One digit of a code keyed as another (6062 -> 6082)."""
    positions = [i for i, c in enumerate(code) if c.isdigit()]
    if not positions:
        return code
    i = positions[int(rng.integers(len(positions)))]
    other = str((int(code[i]) + 1 + int(rng.integers(9))) % 10)
    return code[:i] + other + code[i + 1 :]


def _typo(name: str, rng: np.random.Generator) -> str:
    if len(name) < 3:
        return name
    pos = int(rng.integers(0, len(name) - 1))
    letter = "abcdefghijklmnopqrstuvwxyz"[rng.integers(26)]
    op = rng.random()
    if op < 0.25:
        return name[:pos] + name[pos + 1 :]
    if op < 0.5:
        return name[:pos] + letter + name[pos:]
    if op < 0.75 and name[pos] != name[pos + 1]:
        return name[:pos] + name[pos + 1] + name[pos] + name[pos + 2 :]
    return name[:pos] + (letter if letter != name[pos].lower() else "z") + name[pos + 1 :]


def _variant(name: str, origin: str, rng: np.random.Generator) -> str:
    """Another way of writing the name: a romanisation, or Polish letters flattened."""
    if origin == "pl_PL":
        return ascii_fold(name)
    upper = name.upper()
    options = [(a, b) for a, b in VARIANTS if a in upper]
    if not options:
        return name
    a, b = options[rng.integers(len(options))]
    return upper.replace(a, b, 1).title()


def _changed_name(name: str, origin: str, rng: np.random.Generator) -> str:
    """A name written differently: a variant where the origin has them, else a typo."""
    if origin in TRANSLITERATED and rng.random() < 0.5:
        changed = _variant(name, origin, rng)
        if changed.upper() != name.upper():
            return changed
    return _typo(name, rng)


def _date(born: dt.date, e, scale: float, rng: np.random.Generator) -> str | None:
    u = rng.random()
    y, m, d = born.year, born.month, born.day
    edges = np.cumsum([e.dob_missing, e.dob_swap, e.dob_year, e.dob_digits, e.dob_other]) * scale
    try:
        if u < edges[0]:
            return None
        if u < edges[1] and d <= 12 and d != m:
            m, d = d, m
        elif u < edges[2]:
            y += 1 if rng.random() < 0.5 else -1
            d = min(d, 28)
        elif u < edges[3]:
            if d % 10 != 0 and d // 10 != d % 10 and (d % 10) * 10 + d // 10 <= 28:
                d = (d % 10) * 10 + d // 10
            else:
                y = (y // 100) * 100 + (y % 10) * 10 + (y % 100) // 10
        elif u < edges[4]:
            if rng.random() < 0.5:
                m = m % 12 + 1
                d = min(d, 28)
            else:
                d = d % 28 + 1
        return dt.date(y, m, d).isoformat()
    except ValueError:
        return born.isoformat()


def _record(
    person: dict,
    profile: Profile,
    scale: float,
    rng: np.random.Generator,
    nicknames: dict[str, list[str]],
) -> dict:
    e, origin = profile.errors, person["origin"]
    given, family = person["given_name"], person["family_name"]

    def chance(rate: float) -> bool:
        return rng.random() < rate * scale

    if person["middle_name"] and rng.random() < 0.5:
        given = f"{given} {person['middle_name']}"
    if person["middle_name"] and chance(e.middle_name):
        given = person["middle_name"]
    if person["adult"] and chance(e.surname_change):
        family = person["other_surname"]
    if chance(e.double_barrel):
        family = family.split("-")[0] if "-" in family else f"{family}-{person['other_surname']}"
    if chance(e.nickname) and given in nicknames:
        options = nicknames[given]
        given = options[rng.integers(len(options))]
    if (origin in TRANSLITERATED or origin == "pl_PL") and chance(e.transliteration):
        given = _variant(given, origin, rng)
    if (origin in TRANSLITERATED or origin == "pl_PL") and chance(e.transliteration):
        family = _variant(family, origin, rng)
    if chance(e.typo):
        given = _typo(given, rng)
    if chance(e.typo):
        family = _typo(family, rng)
    if chance(e.both_names):
        given, family = _changed_name(given, origin, rng), _changed_name(family, origin, rng)
    if chance(e.initial_only):
        given = given[0]
    if chance(e.transposed * (e.transposed_zh_factor if origin == "zh_CN" else 1.0)):
        given, family = family, given
    postcode, address, uprn = person["postcode"], person["address_line"], person["uprn"]
    if chance(e.moved):
        postcode, address, uprn = person["previous"]
    if chance(e.postcode_missing):
        postcode = address = None
    # Drawn only where the profile asks for it, so every other profile's records stay as they were.
    if e.postcode_typo and postcode and chance(e.postcode_typo):
        postcode = _transposed_characters(postcode, rng)
    if e.postcode_digit and postcode and chance(e.postcode_digit):
        postcode = _changed_digit(postcode, rng)
    if rng.random() < e.postcode_placeholder * (scale == 1.0):
        postcode = PLACEHOLDER_POSTCODE
    style = rng.random()
    case = str.upper if style < 0.15 else (str.lower if style < 0.2 else str)
    return {
        "nhs_number": None if chance(e.nhs_missing) else person["nhs_number"],
        "given_name": case(given),
        "family_name": case(family),
        "date_of_birth": _date(person["born"], e, scale, rng),
        "sex": None if chance(e.sex_missing) else person["sex"],
        "postcode": postcode,
        "address_line": address,
        "uprn": uprn,
    }


def generate(profile: Profile, seed: int = 2026) -> StressFiles:
    """The profile's two files. The same profile and seed give the same files."""
    rng = np.random.default_rng(seed)
    people = _people(profile, rng, seed)
    nicknames = nicknames_for(sorted({p["given_name"] for p in people}))
    files, truth = [], []
    for index, (share, fields, scale) in enumerate(
        (
            (profile.in_first, profile.first_fields, 0.5),
            (profile.in_second, profile.second_fields, 1.0),
        )
    ):
        rows = []
        for person in people:
            if rng.random() >= share:
                continue
            for _ in range(2 if rng.random() < profile.duplicates else 1):
                record = _record(person, profile, scale, rng, nicknames)
                if index == 1 and profile.second_district_only and record["postcode"]:
                    record["postcode"] = record["postcode"].split(" ")[0]
                record_id = f"F{index + 1}-{len(rows):06d}"
                rows.append({"record_id": record_id, **{f: record[f] for f in fields}})
                truth.append(
                    {
                        "file": index + 1,
                        "record_id": record_id,
                        "person_id": person["person_id"],
                        "origin": person["origin"],
                    }
                )
        schema = {"record_id": pl.String, **{f: pl.String for f in ALL_FIELDS if f in fields}}
        files.append(pl.DataFrame(rows, schema=schema))
    return StressFiles(files[0], files[1], pl.DataFrame(truth))
