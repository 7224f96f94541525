"""Innocuous and identifying free text to measure the identifier scan on (docs/identifier-scan.md).

Innocuous text: the Python documentation's prose (real English, with code and headings), Faker's
word lists of several languages as sentences, and case notes made from templates that mention
services, dates, times, amounts, rooms and counts in every case. Identifying text: the same
templates with a person's name (Faker, several locales), an NHS number, a postcode, a phone
number, an e-mail address or a date of birth written as people write them.
"""

from __future__ import annotations

import random
import re

from faker import Faker
from stdnum.gb import nhs

SERVICES = [
    "Early Help",
    "Family Hub",
    "CAMHS",
    "school nurse",
    "GP",
    "A&E",
    "health visitor",
    "housing team",
    "Job Centre",
    "food bank",
    "youth club",
    "SENCO",
    "social worker",
    "midwife",
    "Citizens Advice",
]
VERBS = [
    "Will attend",
    "May need",
    "Seen by",
    "Referred to",
    "Spoke with",
    "Mark as done for",
    "Hope to hear from",
    "Grace period agreed with",
    "Frank discussion with",
    "Rang",
    "Visit booked with",
    "Letter from",
]
TEMPLATES = [
    "{verb} {service} on {date} at {time}.",
    "{verb} {service}; next review {date}.",
    "Scored {n} out of {m} in {year}.",
    "{verb} {service} about rent arrears of £{amount}.",
    "Room {n}, {m} people waiting, seen at {time}.",
    "Invoice {ref} paid £{amount} on {date}.",
    "Attended {n} of {m} sessions since {date}; {service} aware.",
    "Mum says {service} will call back before {day} {date}.",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def _fill(rng: random.Random, template: str, **extra) -> str:
    return template.format(
        verb=rng.choice(VERBS),
        service=rng.choice(SERVICES),
        n=rng.randint(1, 400),
        m=rng.randint(1, 400),
        year=rng.randint(2015, 2026),
        amount=f"{rng.randint(1, 900)}.{rng.randint(0, 99):02d}",
        ref=rng.randint(10**5, 10**8),
        day=rng.choice(DAYS),
        date=rng.choice(["%02d/%02d/%d", "%d-%02d-%02d"])
        % ((rng.randint(1, 28), rng.randint(1, 12), rng.randint(2015, 2026))),
        time=f"{rng.randint(8, 18)}:{rng.choice(['00', '15', '30', '45'])}",
        **extra,
    )


def _cased(rng: random.Random, text: str) -> str:
    return rng.choice([text, text, text.upper(), text.lower()])


def case_notes(count: int, seed: int = 18) -> list[str]:
    rng = random.Random(seed)
    return [_cased(rng, _fill(rng, rng.choice(TEMPLATES))) for _ in range(count)]


def python_docs() -> list[str]:
    from pydoc_data.topics import topics

    text = "\n".join(topics.values())
    parts = re.split(r"(?<=[.!?])\s+|\n\s*\n", text)
    return [re.sub(r"\s+", " ", p.strip()) for p in parts if len(p.strip()) > 20]


LOCALES = ["en_GB", "fr_FR", "de_DE", "es_ES", "pl_PL", "ru_RU", "ar_AA", "hi_IN", "zh_CN", "it_IT"]


# Locales whose Faker word lists are words of their language (others repeat Latin lorem ipsum).
TEXT_LOCALES = [
    "fr_FR",
    "de_DE",
    "es_ES",
    "it_IT",
    "nl_NL",
    "pl_PL",
    "ru_RU",
    "uk_UA",
    "el_GR",
    "ar_AA",
    "fa_IR",
    "bn_BD",
    "zh_CN",
]


def other_languages(per_locale: int, seed: int = 18) -> list[str]:
    sentences = []
    for locale in TEXT_LOCALES:
        fake = Faker(locale)
        fake.seed_instance(seed)
        sentences += [fake.sentence(nb_words=10) for _ in range(per_locale)]
    return sentences


def valid_nhs_number(rng: random.Random) -> str:
    while True:  # one random number in eleven has a valid check digit
        number = "".join(str(rng.randint(0, 9)) for _ in range(10))
        if nhs.is_valid(number) and len(set(number)) > 1:
            return number


IDENTIFYING = {
    "personal names": [
        "Spoke with {name} about {service}.",
        "{NAME} did not attend {service}.",
        "mum {lower} rang back",
        "{surname_upper}, {given} seen by {service}",
        "Letter to {name} re {service}.",
    ],
    "NHS numbers": [
        "nhs no {nhs_spaced} confirmed",
        "NHS number: {nhs}",
        "called re nhs no {nhs_dashed}",
    ],
    "full UK postcodes": ["moved to {postcode}", "lives at flat 2, {postcode_lower}"],
    "UK phone numbers": ["ring {phone} after 5", "tel {phone}"],
    "e-mail addresses": ["email {email}", "sent to {email_upper}"],
    "dates of birth": ["DOB {dob}", "born {dob_words}", "date of birth: {dob}"],
}


def identifying(kind: str, count: int, seed: int = 18) -> list[str]:
    rng = random.Random(seed)
    fakes = {locale: Faker(locale) for locale in LOCALES}
    for i, fake in enumerate(fakes.values()):
        fake.seed_instance(seed + i)
    gb = fakes["en_GB"]
    out = []
    for _ in range(count):
        fake = fakes[rng.choice(LOCALES)] if kind == "personal names" else gb
        given, surname = fake.first_name(), fake.last_name()
        number = valid_nhs_number(rng)
        dob = gb.date_of_birth(minimum_age=0, maximum_age=90)
        out.append(
            rng.choice(IDENTIFYING[kind]).format(
                name=f"{given} {surname}",
                NAME=f"{given} {surname}".upper(),
                lower=f"{given} {surname}".lower(),
                given=given,
                surname_upper=surname.upper(),
                service=rng.choice(SERVICES),
                nhs=number,
                nhs_spaced=f"{number[:3]} {number[3:6]} {number[6:]}",
                nhs_dashed=f"{number[:3]}-{number[3:6]}-{number[6:]}",
                postcode=gb.postcode(),
                postcode_lower=gb.postcode().lower(),
                phone=rng.choice([gb.phone_number(), gb.cellphone_number()]),
                email=gb.email(),
                email_upper=gb.email().upper(),
                dob=dob.strftime("%d/%m/%Y"),
                dob_words=dob.strftime("%d %B %Y"),
            )
        )
    return out


KINDS = tuple(IDENTIFYING)


def measure(values: list[str]) -> dict[str, int]:
    """How many of ``values`` the scan flags, per kind (each value counted once per kind)."""
    import pyarrow as pa

    from pipelines.governance.contracts import DataItem, Dataset
    from pipelines.hub.identifiers import scan_for_identifiers

    # One row per value, made distinct by its position, so counts are per value.
    dataset = Dataset(
        "notes", "", (DataItem("notes", "string", "payload", False, False, "why", None),)
    )
    found = {kind: 0 for kind in KINDS}
    for suspicion in scan_for_identifiers(pa.table({"notes": values}), dataset):
        kind = next(k for k in KINDS if suspicion.kind.startswith(k))
        found[kind] = suspicion.count
    return found


if __name__ == "__main__":
    for label, values in (
        ("case notes", case_notes(5000)),
        ("Python documentation", python_docs()),
        ("13 other languages", other_languages(300)),
    ):
        found = measure(values)
        print(f"{label}: {len(values)} texts, flagged {found}")
    for kind in KINDS:
        values = identifying(kind, 1000)
        print(f"{kind}: found in {measure(values)[kind]} of {len(values)}")
