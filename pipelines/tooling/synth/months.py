"""The same synthetic place, month after month: what its partners record in each later month.

Month 1 is the place as :func:`~pipelines.tooling.synth.generate_place` writes it (events to the end of
the study window, delivered as period :data:`~pipelines.tooling.synth.study.DELIVERY_PERIOD`). Month ``n``
is the ``n - 1``-th calendar month after it. In each month:

- some people are born (into an existing household, with their mother's surname and address) and
  some move into the borough (new names, NHS numbers and addresses);
- some households move within the borough (a new postcode; the old one becomes the previous one)
  and some adults change their family name (the old one becomes the previous one);
- each dataset gets the month's new events, drawn for the people who used that service before
  (weighted by how often) plus a small chance for anyone eligible; payloads are drawn from the
  place's own extracts; school attendance adds a row per pupil in a month a term starts;
- every record goes through the same recording noise as month 1 (pipelines/tooling/synth/noise.py).

Written under ``PLACE/months/<period>/``: ``raw/<partner>/<dataset>.csv`` (the month's new
records, in the month-1 layout, record ids unique across months), ``truth/ground_truth.csv`` and
``truth/people.csv`` (everyone as at the month's end), ``reference/national_data_opt_outs.csv``
and ``manifest.json``. A partner that sends full snapshots sends :func:`snapshot` (month 1 and every
month since, concatenated). The same place and seed give the same bytes for every month, whichever
months are asked for: months are simulated in order from month 2, each with its own random streams.
Vectorised with numpy and Polars, so many months of a large place are cheap next to linkage.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.partner_kit.features import IDENTIFIERS
from pipelines.tooling.synth.generate import DatasetsManifest, DatasetSummary
from pipelines.tooling.synth.nhs_numbers import draw_nhs_numbers
from pipelines.tooling.synth.noise import draw_registrations, recorded_identities
from pipelines.tooling.synth.partners import DATASETS, DatasetLayout
from pipelines.tooling.synth.population import OPT_OUT_SHARE
from pipelines.tooling.synth.study import (
    DAYS_PER_YEAR,
    DELIVERED_AT,
    DELIVERY_PERIOD,
    END_DAY,
    START_DAY,
    rng_for,
)

# Shares of the population per month (a UK borough: ~11 births per 1,000 a year, a few per cent
# moving in or moving home each year, marriages and divorces changing some surnames).
MONTHLY_BIRTHS = 0.0009
MONTHLY_IN_MOVERS = 0.002
MONTHLY_HOUSEHOLD_MOVES = 0.004
MONTHLY_NAME_CHANGES = 0.0004
# Anyone eligible may use a service for the first time: this weight against 1 per past event.
NEW_USER_WEIGHT = 0.05
TERM_START_MONTHS = {9: 1, 1: 5, 4: 15}  # month -> day a term starts (study.TERM_STARTS)
WINDOW_MONTHS = (END_DAY - START_DAY + 1) / (DAYS_PER_YEAR / 12)
MONTHS_DIR = "months"


def _index(period: str) -> int:
    year, month = period.split("-")
    return int(year) * 12 + int(month) - 1


def period_of(month: int) -> str:
    """The reporting period of month ``month`` (1 = DELIVERY_PERIOD)."""
    index = _index(DELIVERY_PERIOD) + month - 1
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def delivered_at(month: int) -> dt.datetime:
    """When month ``month``'s extracts are delivered: the same day of the month after its period."""
    index = _index(period_of(month)) + 1
    return DELIVERED_AT.replace(year=index // 12, month=index % 12 + 1)


def month_folder(place: Path, month: int) -> Path:
    return Path(place) if month == 1 else Path(place) / MONTHS_DIR / period_of(month)


@dataclass(frozen=True)
class MonthManifest(DatasetsManifest):
    """What one later month added; the same content is written to its manifest.json."""

    month: int
    period: str
    seed: int
    people: int  # everyone at the month's end
    born: int
    moved_in: int
    households_moved: int
    names_changed: int
    datasets: tuple[DatasetSummary, ...]
    out: Path = field(compare=False)


@dataclass
class _Place:
    """The place as it stands at the end of the month simulated last."""

    seed: int
    people: pl.DataFrame  # truth/people.csv columns, one row per person, in person order
    postcodes: pl.DataFrame  # postcode, lsoa_code, ward_code
    weights: dict[str, np.ndarray]  # dataset -> past events per person
    payloads: dict[str, pl.DataFrame]  # dataset -> the month-1 extract's payload rows, to draw from
    base_rows: dict[str, int]


def _load(place: Path) -> _Place:
    manifest = json.loads((place / "manifest.json").read_text())
    people = pl.read_csv(
        place / "truth" / "people.csv",
        try_parse_dates=True,
        schema_overrides={"nhs_number": pl.Int64, "enrolment_date": pl.Date},
    )
    truth = pl.read_csv(place / "truth" / "ground_truth.csv")
    order = people.select("person_id").with_row_index("person_idx")
    counts = truth.group_by("source", "person_id").len().join(order, on="person_id")
    weights, payloads, base_rows = {}, {}, {}
    for layout in DATASETS:
        mine = counts.filter(pl.col("source") == layout.dataset)
        w = np.zeros(people.height)
        w[mine["person_idx"].to_numpy()] = mine["len"].to_numpy()
        weights[layout.dataset] = w
        raw = pl.read_csv(
            place / layout.path, columns=list(layout.payload), infer_schema_length=10_000
        )
        payloads[layout.dataset], base_rows[layout.dataset] = raw, raw.height
    postcodes = pl.read_csv(place / "reference" / "postcode_lookup.csv")
    return _Place(manifest["seed"], people, postcodes, weights, payloads, base_rows)


def _age_at(people: pl.DataFrame, day: dt.date) -> np.ndarray:
    born = people["date_of_birth"].cast(pl.Int32).to_numpy()
    return ((day - dt.date(1970, 1, 1)).days - born) / DAYS_PER_YEAR


def _pick(rng: np.random.Generator, column: pl.Series, n: int) -> pl.Series:
    return column.gather(rng.integers(0, column.len(), n)) if n else column.clear()


def _new_people(
    rng: np.random.Generator, place: _Place, month: int, first: dt.date, days: int
) -> tuple[pl.DataFrame, int, int]:
    people = place.people
    n_people = people.height
    age = _age_at(people, first)
    mothers = np.flatnonzero((people["sex"].to_numpy() == "F") & (age >= 18) & (age < 45))
    born = min(int(rng.poisson(n_people * MONTHLY_BIRTHS)), len(mothers))
    movers = int(rng.poisson(n_people * MONTHLY_IN_MOVERS))
    n = born + movers
    if n == 0:
        return people.clear(), 0, 0
    numbers = draw_nhs_numbers(rng, n + 64)
    numbers = numbers[~np.isin(numbers, people["nhs_number"].to_numpy())][:n]
    mother = people[rng.choice(mothers, born, replace=False)] if born else people.clear()
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    first_day = (first - dt.date(1970, 1, 1)).days
    birth_day = first_day + rng.integers(0, days, born)
    adult_day = first_day - np.floor(rng.uniform(18, 70, movers) * DAYS_PER_YEAR).astype(np.int64)
    place_rows = place.postcodes[rng.integers(0, place.postcodes.height, movers)]
    female, male = (
        people.filter(pl.col("sex") == "F")["given_name"],
        people.filter(pl.col("sex") == "M")["given_name"],
    )
    given = pl.select(
        pl.when(pl.Series(sex == "F")).then(_pick(rng, female, n)).otherwise(_pick(rng, male, n))
    ).to_series()
    period = period_of(month).replace("-", "")
    frame = pl.DataFrame(
        {
            "person_id": [f"P{period}{i:06d}" for i in range(1, n + 1)],
            "household_id": pl.concat(
                [
                    mother["household_id"],
                    pl.Series([f"H{period}{i:06d}" for i in range(1, movers + 1)], dtype=pl.String),
                ]
            ),
            "sex": sex,
            "date_of_birth": pl.Series(
                np.concatenate([birth_day, adult_day]).astype(np.int32)
            ).cast(pl.Date),
            "lsoa_code": pl.concat([mother["lsoa_code"], place_rows["lsoa_code"]]),
            "ward_code": pl.concat([mother["ward_code"], place_rows["ward_code"]]),
            "given_name": given,
            "family_name": pl.concat(
                [mother["family_name"], _pick(rng, people["family_name"], movers)]
            ),
            "nhs_number": numbers,
            "postcode": pl.concat([mother["postcode"], place_rows["postcode"]]),
            "national_data_opt_out": rng.random(n) < OPT_OUT_SHARE,
        }
    )
    return frame, born, movers


def _advance(
    rng: np.random.Generator, place: _Place, month: int, first: dt.date, days: int
) -> tuple[int, int, int, int]:
    """Move households, change names and add the month's new people to ``place``."""
    people = place.people
    households = people["household_id"].unique(maintain_order=True)
    moving = households.filter(pl.Series(rng.random(households.len()) < MONTHLY_HOUSEHOLD_MOVES))
    destination = place.postcodes[
        rng.integers(0, place.postcodes.height, moving.len())
    ].with_columns(household_id=moving)
    people = (
        people.join(
            destination.rename(
                {"postcode": "new_postcode", "lsoa_code": "new_lsoa", "ward_code": "new_ward"}
            ),
            on="household_id",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            previous_postcode=pl.when(pl.col("new_postcode").is_not_null())
            .then("postcode")
            .otherwise("previous_postcode"),
            postcode=pl.coalesce("new_postcode", "postcode"),
            lsoa_code=pl.coalesce("new_lsoa", "lsoa_code"),
            ward_code=pl.coalesce("new_ward", "ward_code"),
        )
        .drop("new_postcode", "new_lsoa", "new_ward")
    )
    adult = _age_at(people, first) >= 18
    renamed = adult & (rng.random(people.height) < MONTHLY_NAME_CHANGES)
    new_name = _pick(rng, people["family_name"], people.height)
    people = people.with_columns(
        previous_family_name=pl.when(pl.Series(renamed))
        .then("family_name")
        .otherwise("previous_family_name"),
        family_name=pl.when(pl.Series(renamed)).then(new_name).otherwise("family_name"),
    )
    newcomers, born, moved_in = _new_people(
        rng, _Place(place.seed, people, place.postcodes, {}, {}, {}), month, first, days
    )
    place.people = pl.concat([people, newcomers], how="diagonal_relaxed")
    # People new to the place use its services as those already there of their age do: a newborn
    # starts with the past events of the average child (under 10), someone moving in with the
    # average adult's. Starting from none, a newborn was about fifty times less likely to visit
    # A&E than a child already in the place, so the first children born in a history started
    # school known to no other partner (1 in 9 of them at 20,000 people, against 4 in 5 of all pupils).
    age, new_age = _age_at(people, first), _age_at(newcomers, first)
    child, adult = age < 10, age >= 18
    place.weights = {
        k: np.concatenate(
            [
                w,
                np.where(
                    new_age < 18,
                    w[child].mean() if child.any() else 0.0,
                    w[adult].mean() if adult.any() else 0.0,
                ),
            ]
        )
        for k, w in place.weights.items()
    }
    return born, moved_in, moving.len(), int(renamed.sum())


def _eligible(layout: DatasetLayout, age: np.ndarray) -> np.ndarray:
    if layout.dataset == "csc_referrals":
        return age < 18
    if layout.dataset == "mental_health_referrals":
        return age >= 12
    if layout.dataset == "homelessness_applications":
        return age >= 18
    return np.ones(len(age), dtype=bool)


def _events(
    rng: np.random.Generator, place: _Place, first: dt.date, days: int
) -> dict[str, pl.DataFrame]:
    """Each dataset's new events this month: person_idx, event_day and the payload columns."""
    people = place.people
    age = _age_at(people, first)
    first_day = (first - dt.date(1970, 1, 1)).days
    events = {}
    for layout in DATASETS:
        payload = place.payloads[layout.dataset]
        if layout.dataset == "family_support_enrolments":
            person, day = (
                np.empty(0, np.int64),
                np.empty(0, np.int64),
            )  # the programme enrols no more
        elif layout.dataset == "school_attendance":
            start = TERM_START_MONTHS.get(first.month)
            august = dt.date(first.year if first.month >= 9 else first.year - 1, 8, 31)
            pupil_age = _age_at(people, august)
            person = (
                np.flatnonzero((pupil_age >= 4) & (pupil_age < 16))
                if start
                else np.empty(0, np.int64)
            )
            day = np.full(len(person), first_day + (start or 1) - 1)
        else:
            weight = (place.weights[layout.dataset] + NEW_USER_WEIGHT) * _eligible(layout, age)
            count = int(rng.poisson(place.base_rows[layout.dataset] / WINDOW_MONTHS))
            person = (
                rng.choice(people.height, count, p=weight / weight.sum())
                if count and weight.sum()
                else np.empty(0, np.int64)
            )
            day = first_day + rng.integers(0, days, len(person))
        rows = (
            payload[rng.integers(0, payload.height, len(person))]
            if len(person)
            else payload.clear()
        )
        events[layout.dataset] = pl.concat(
            [
                pl.DataFrame(
                    {"person_idx": person.astype(np.int64), "event_day": day.astype(np.int32)}
                ),
                rows,
            ],
            how="horizontal",
        )
        place.weights[layout.dataset] = place.weights[layout.dataset] + np.bincount(
            person, minlength=people.height
        )
    return events


def _simulate(place: _Place, month: int) -> tuple[dict[str, pl.DataFrame], dict]:
    """Advance ``place`` through ``month`` and return its records per dataset and the month's counts."""
    period = period_of(month)
    first = dt.date(int(period[:4]), int(period[5:]), 1)
    days = ((first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - first).days
    seed = place.seed
    born, moved_in, moved, renamed = _advance(
        rng_for(seed, f"month/{month}/people"), place, month, first, days
    )
    events = _events(rng_for(seed, f"month/{month}/events"), place, first, days)
    registrations, tagged = draw_registrations(
        rng_for(seed, f"month/{month}/registrations"), events, place.people.height
    )
    persons = place.people.with_columns(age=pl.Series(_age_at(place.people, first)))
    identities = recorded_identities(rng_for(seed, f"month/{month}/noise"), registrations, persons)
    records = {}
    for layout in DATASETS:
        mine = identities.filter(pl.col("dataset") == layout.dataset).drop("dataset")
        frame = tagged[layout.dataset].join(
            mine, on=["person_idx", "reg_no"], how="left", maintain_order="left"
        )
        frame = frame.sort("event_day", "person_idx")
        record_id = pl.lit(f"{layout.record_prefix}{period.replace('-', '')}") + pl.int_range(
            1, frame.height + 1
        ).cast(pl.String).str.zfill(6)
        records[layout.dataset] = frame.select(
            record_id.alias("record_id"),
            *IDENTIFIERS,
            pl.col("event_day").cast(pl.Date).alias(layout.date_column),
            *layout.payload,
            person_id=place.people["person_id"].gather(frame["person_idx"]),
        )
    return records, {
        "born": born,
        "moved_in": moved_in,
        "households_moved": moved,
        "names_changed": renamed,
    }


def generate_months(place: Path, last: int, first: int = 2) -> list[MonthManifest]:
    """Write months ``first``..``last`` (2 or later) of the place generated in ``place``; months
    before ``first`` are simulated, not written. Same place, same bytes."""
    place = Path(place)
    if first < 2 or last < first:
        raise ValueError(
            f"months run from 2 (month 1 is the place itself); asked for {first} to {last}"
        )
    if not (place / "manifest.json").exists():
        raise FileNotFoundError(
            f"{place} holds no synthetic place (manifest.json): generate month 1 first "
            "with `placelink synth --out DIR`"
        )
    state = _load(place)
    written = []
    for month in range(2, last + 1):
        records, counts = _simulate(state, month)
        if month < first:
            continue
        out = month_folder(place, month)
        summaries, truth = [], []
        for layout in DATASETS:
            path = out / layout.path
            path.parent.mkdir(parents=True, exist_ok=True)
            frame = records[layout.dataset]
            frame.drop("person_id").write_csv(path)
            truth.append(
                frame.select(
                    source=pl.lit(layout.dataset), record_id="record_id", person_id="person_id"
                )
            )
            summaries.append(
                DatasetSummary(layout.partner, layout.dataset, layout.path, frame.height)
            )
        (out / "truth").mkdir(parents=True, exist_ok=True)
        pl.concat(truth).write_csv(out / "truth" / "ground_truth.csv")
        state.people.write_csv(out / "truth" / "people.csv")
        (out / "reference").mkdir(parents=True, exist_ok=True)
        (
            state.people.filter(pl.col("national_data_opt_out"))
            .select(pl.col("nhs_number").cast(pl.String))
            .sort("nhs_number")
            .write_csv(out / "reference" / "national_data_opt_outs.csv")
        )
        manifest = MonthManifest(
            month,
            period_of(month),
            state.seed,
            state.people.height,
            datasets=tuple(summaries),
            out=out,
            **counts,
        )
        (out / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        written.append(manifest)
    return written


def snapshot(place: Path, dataset: str, month: int) -> pl.DataFrame:
    """A full snapshot of ``dataset`` as its partner holds it at the end of ``month``: month 1's
    records and every later month's, up to ``month`` (generated with :func:`generate_months`)."""
    layout = next(d for d in DATASETS if d.dataset == dataset)
    frames = [
        pl.read_csv(month_folder(place, m) / layout.path, infer_schema_length=0)
        for m in range(1, month + 1)
    ]
    return pl.concat(frames)
