"""Programme enrolment and the planted effect on A&E attendances.

Each person has a stable latent A&E rate (gamma frailty scaled by age band,
deprivation and family need). The only change over time anywhere in the place is
the planted one: children (under 18 on their family's enrolment date) in enrolled
families attend A&E at (1 + EFFECT_RELATIVE_CHANGE) times their own rate for the
12 months from enrolment. Enrolment depends on family need and deprivation, never
on recent events, so there is no pre-enrolment spike and no regression to the mean.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.tooling.synth import study
from pipelines.tooling.synth.study import (
    DAYS_PER_YEAR,
    EFFECT_AGE_LIMIT_YEARS,
    EFFECT_OUTCOME,
    EFFECT_RELATIVE_CHANGE,
    EFFECT_WINDOW_MONTHS,
    START_DAY,
    WINDOW_DAYS,
    offset_days,
    to_day,
)

ENROLMENT_SHARE = 0.04  # of families with children
AE_RATE_PER_YEAR = 0.30
AE_FRAILTY_SHAPE = 2.0
PROGRAMME_TYPES = ("intensive_family_support", "parenting", "early_help")
ARRIVAL_MODES = ("ambulance", "walk_in", "other")


def enrol_families(
    rng: np.random.Generator,
    households: pl.DataFrame,
    decile: np.ndarray,
    enrolment_share: float = ENROLMENT_SHARE,
) -> pl.DataFrame:
    """Add enrolled, enrolment_day, programme_type and vcs_family_id to households.

    `decile` is the IMD decile of each household's LSOA. About `enrolment_share` of
    families with children enrol; higher need and deprivation make enrolment likelier.
    """
    need = households["need"].to_numpy()
    eligible = households["n_children"].to_numpy() > 0
    weight = np.exp(1.1 * need + 0.08 * (10 - decile)) * eligible
    mean_weight = weight[eligible].mean() if eligible.any() else 1.0
    probability = np.clip(enrolment_share * weight / mean_weight, 0.0, 0.9)
    enrolled = rng.random(len(need)) < probability
    first, last = to_day(study.ENROLMENT_FIRST), to_day(study.ENROLMENT_LAST)
    enrolment_day = rng.integers(first, last + 1, len(need))
    high_need = need > 1.5
    choice = rng.random(len(need))
    programme = np.where(
        high_need,
        np.select([choice < 0.55, choice < 0.75], [0, 1], 2),
        np.select([choice < 0.15, choice < 0.55], [0, 1], 2),
    )
    family_numbers = rng.choice(900_000, size=int(enrolled.sum()), replace=False) + 100_000
    family_number = np.zeros(len(need), dtype=np.int64)
    family_number[enrolled] = family_numbers
    is_enrolled = pl.col("enrolled")
    return households.with_columns(
        enrolled=pl.Series(enrolled),
        enrolment_day=pl.Series(enrolment_day).cast(pl.Int32),
        programme_type=pl.Series(np.array(PROGRAMME_TYPES)[programme]),
        vcs_family_id=pl.lit("FS") + pl.Series(family_number).cast(pl.String),
    ).with_columns(
        pl.when(is_enrolled).then(pl.col(name)).alias(name)
        for name in ("enrolment_day", "programme_type", "vcs_family_id")
    )


def latent_ae_rates(
    rng: np.random.Generator, age: np.ndarray, decile: np.ndarray, need: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stable per-person A&E rates (per year, mean AE_RATE_PER_YEAR) and the gamma frailty."""
    age_factor = np.select(
        [age < 5, age < 16, age < 25, age < 65, age < 80], [2.0, 0.9, 1.3, 0.8, 1.0], 1.8
    )
    frailty = rng.gamma(AE_FRAILTY_SHAPE, 1.0 / AE_FRAILTY_SHAPE, len(age))
    raw = age_factor * (1 + 0.06 * (10 - decile)) * np.exp(0.25 * need) * frailty
    return AE_RATE_PER_YEAR * raw / raw.mean(), frailty


def effect_windows(enrolment_day: np.ndarray, dob_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) day of each person's effect window; end == start where no effect applies.

    `enrolment_day` is the family's enrolment day, or negative for people not enrolled.
    """
    enrolled = enrolment_day > 0
    safe_enrolment = np.where(enrolled, enrolment_day, START_DAY)
    child = offset_days(dob_day, f"{EFFECT_AGE_LIMIT_YEARS}y") > safe_enrolment
    treated = enrolled & child
    end = offset_days(safe_enrolment, f"{EFFECT_WINDOW_MONTHS}mo")
    start = np.where(treated, safe_enrolment, START_DAY + WINDOW_DAYS)
    return start, np.where(treated, end, start)


def ae_attendances(
    rng: np.random.Generator,
    rate: np.ndarray,
    age: np.ndarray,
    window_start: np.ndarray,
    window_end: np.ndarray,
    relative_change: float = EFFECT_RELATIVE_CHANGE,
) -> pl.DataFrame:
    """A&E attendances: person_idx, arrival_date, arrival_mode (constant rates, plus the effect:
    ``rate * (1 + relative_change)`` inside each person's effect window)."""
    inside_days = window_end - window_start
    outside_days = WINDOW_DAYS - inside_days
    inside = rng.poisson(rate * (1 + relative_change) * inside_days / DAYS_PER_YEAR)
    outside = rng.poisson(rate * outside_days / DAYS_PER_YEAR)

    person_out = np.repeat(np.arange(len(rate)), outside)
    day_out = START_DAY + np.floor(rng.random(len(person_out)) * outside_days[person_out]).astype(
        np.int64
    )
    # Days of the effect window are skipped, so outside events stay outside it.
    day_out = np.where(
        day_out >= window_start[person_out], day_out + inside_days[person_out], day_out
    )
    person_in = np.repeat(np.arange(len(rate)), inside)
    day_in = window_start[person_in] + np.floor(
        rng.random(len(person_in)) * inside_days[person_in]
    ).astype(np.int64)

    person = np.concatenate([person_out, person_in])
    day = np.concatenate([day_out, day_in])
    older = age[person] >= 65
    mode = rng.random(len(person))
    ambulance = np.where(older, 0.45, 0.12)
    arrival = np.select([mode < ambulance, mode < ambulance + 0.08], [0, 2], 1)
    return pl.DataFrame(
        {
            "person_idx": person.astype(np.int64),
            "event_day": day.astype(np.int32),
            "arrival_mode": np.array(ARRIVAL_MODES)[arrival],
        }
    )


def planted_effect_statement(
    people: pl.DataFrame, ae: pl.DataFrame, relative_change: float = EFFECT_RELATIVE_CHANGE
) -> dict:
    """The planted effect, stated precisely, with the realised before/after counts.

    `people` needs person_idx, enrolled, enrolment_day, date_of_birth; `ae` needs
    person_idx and event_day. Before = [index - 12 months, index), after =
    [index, index + 12 months), index = the family's enrolment date.
    """
    enrolled = people.filter(pl.col("enrolled"))
    enrolment = pl.col("enrolment_day").cast(pl.Date)
    children = enrolled.filter(
        pl.col("date_of_birth").dt.offset_by(f"{EFFECT_AGE_LIMIT_YEARS}y") > enrolment
    ).select(
        "person_idx",
        "household_idx",
        index_day=pl.col("enrolment_day"),
        before_day=enrolment.dt.offset_by(f"-{EFFECT_WINDOW_MONTHS}mo").cast(pl.Int32),
        after_day=enrolment.dt.offset_by(f"{EFFECT_WINDOW_MONTHS}mo").cast(pl.Int32),
    )
    events = ae.join(children, on="person_idx", how="inner")
    before = events.filter(
        (pl.col("event_day") >= pl.col("before_day")) & (pl.col("event_day") < pl.col("index_day"))
    ).height
    after = events.filter(
        (pl.col("event_day") >= pl.col("index_day")) & (pl.col("event_day") < pl.col("after_day"))
    ).height
    no_effect = [
        "emergency_admissions",
        "mental_health_referrals",
        "csc_referrals",
        "school_attendance",
        "homelessness_applications",
    ]
    return {
        "outcome": EFFECT_OUTCOME,
        "dataset": "nhs/ae_attendances",
        "measure": "count of A&E attendances (rows of raw/nhs/ae_attendances.csv)",
        "population": (
            f"children aged under {EFFECT_AGE_LIMIT_YEARS} on their family's enrolment date, in "
            "families enrolled in the VCS family support programme (truth/people.csv: "
            "enrolled = true); all members of an enrolled household share its enrolment_date"
        ),
        "index_date": "enrolment_date (truth/people.csv)",
        "window_months": EFFECT_WINDOW_MONTHS,
        "before_window": "[index_date - 12 months, index_date)",
        "after_window": "[index_date, index_date + 12 months)",
        "relative_change": relative_change,
        "mechanism": (
            "each person has a constant latent A&E rate (gamma frailty x age band x "
            "deprivation x family need); for the population above it is multiplied by "
            f"{1 + relative_change:.2f} during the after window only; there is no "
            "secular trend and enrolment does not depend on recent events"
        ),
        "enrolment_model": (
            "about 4% of families with children enrol, with probability rising with family "
            "need (a household-level latent score) and LSOA deprivation; non-enrolled "
            "families of similar need and deprivation form the comparison pool"
        ),
        "realised": {
            "children": children.height,
            "families": children["household_idx"].n_unique(),
            "attendances_before": before,
            "attendances_after": after,
            "after_to_before_ratio": round(after / before, 4) if before else None,
        },
        "no_effect_planted": {name: {"relative_change": 0.0} for name in no_effect}
        | {"ae_attendances (everyone outside the population above)": {"relative_change": 0.0}},
    }
