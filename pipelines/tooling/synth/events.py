"""Service events for every dataset except A&E (see effect.py), at constant rates.

Each function returns a frame with person_idx, event_day (days since 1970) and the
dataset's payload columns. Rates are per person-year over the study window and
are normalised so the place-wide mean matches the stated figure.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from pipelines.tooling.synth.study import (
    ACADEMIC_YEARS,
    DAYS_PER_YEAR,
    START_DAY,
    TERM_STARTS,
    WINDOW_DAYS,
    offset_days,
    to_day,
)

ADMISSION_RATE = 0.08
MENTAL_HEALTH_RATE = 0.03  # among people aged 12 and over
CSC_REFERRAL_RATE = 0.05  # among children, concentrated in families with need
HOMELESSNESS_RATE = 0.01  # applications per household per year

REFERRAL_SOURCES = ("school", "police", "health", "family_self", "other")
DUTY_TYPES = ("prevention", "relief", "main")
ADULT_SERVICES = ("adult_community", "talking_therapies", "crisis")


def _poisson_days(rng: np.random.Generator, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = rng.poisson(rate * WINDOW_DAYS / DAYS_PER_YEAR)
    person = np.repeat(np.arange(len(rate)), counts)
    day = START_DAY + np.floor(rng.random(len(person)) * WINDOW_DAYS).astype(np.int64)
    return person, day


def _normalised(weight: np.ndarray, target: float, among: np.ndarray | None = None) -> np.ndarray:
    mean = weight[among].mean() if among is not None and among.any() else weight.mean()
    return target * weight / mean if mean > 0 else weight


def emergency_admissions(rng, age, decile, frailty) -> pl.DataFrame:
    """Emergency admissions: admission_date, length_of_stay_days (longer for older people)."""
    age_factor = np.select([age < 5, age < 18, age < 65, age < 80], [1.5, 0.4, 0.6, 1.8], 4.0)
    rate = _normalised(age_factor * (1 + 0.05 * (10 - decile)) * np.sqrt(frailty), ADMISSION_RATE)
    person, day = _poisson_days(rng, rate)
    older = age[person] >= 65
    same_day = rng.random(len(person)) < 0.25
    stay = rng.geometric(np.where(older, 1 / 8, 1 / 3))
    stay = np.where(same_day, 0, np.minimum(stay, 120))
    return pl.DataFrame(
        {
            "person_idx": person,
            "event_day": day.astype(np.int32),
            "length_of_stay_days": stay.astype(np.int32),
        }
    )


def mental_health_referrals(rng, age, need, dob_day) -> pl.DataFrame:
    """Referrals from age 12: camhs before the 18th birthday, adult services after."""
    eligible = age >= 6  # anyone who turns 12 inside the window
    age_factor = np.select([age < 18, age < 65], [1.6, 1.0], 0.5)
    rate = _normalised(age_factor * np.exp(0.4 * need) * eligible, MENTAL_HEALTH_RATE, age >= 12)
    person, day = _poisson_days(rng, rate)
    twelfth, eighteenth = offset_days(dob_day, "12y"), offset_days(dob_day, "18y")
    keep = day >= twelfth[person]
    person, day = person[keep], day[keep]
    adult_service = np.array(ADULT_SERVICES)[
        np.searchsorted([0.4, 0.85], rng.random(len(person)), side="right")
    ]
    service = np.where(day < eighteenth[person], "camhs", adult_service)
    return pl.DataFrame(
        {"person_idx": person, "event_day": day.astype(np.int32), "service": service}
    )


def csc_referrals(rng, is_child_age, need, dob_day) -> pl.DataFrame:
    """Children's social care referrals before the 18th birthday; family need drives the rate."""
    weight = np.exp(1.3 * need) * is_child_age
    rate = _normalised(weight, CSC_REFERRAL_RATE, is_child_age)
    person, day = _poisson_days(rng, rate)
    keep = day < offset_days(dob_day, "18y")[person]
    person, day = person[keep], day[keep]
    source = np.array(REFERRAL_SOURCES)[
        np.searchsorted([0.2, 0.5, 0.65, 0.75], rng.random(len(person)), side="right")
    ]
    return pl.DataFrame(
        {"person_idx": person, "event_day": day.astype(np.int32), "referral_source": source}
    )


def school_attendance(rng, dob_day, need) -> pl.DataFrame:
    """One row per pupil per term: pupils are Reception to Year 11 (aged 4-15 on 31 August)."""
    pupil_effect = rng.standard_normal(len(dob_day))  # persistent absence runs in pupils
    absence = np.clip(0.04 * np.exp(0.45 * need + 0.55 * pupil_effect), 0.0, 0.95)
    fourth, sixteenth = offset_days(dob_day, "4y"), offset_days(dob_day, "16y")
    frames = []
    for year in ACADEMIC_YEARS:
        cutoff = to_day(date(year, 8, 31))
        pupils = np.flatnonzero((fourth <= cutoff) & (sixteenth > cutoff))
        for month, day in TERM_STARTS:
            term_day = to_day(date(year if month >= 9 else year + 1, month, day))
            possible = rng.integers(120, 131, len(pupils))
            attended = rng.binomial(possible, 1.0 - absence[pupils])
            frames.append(
                pl.DataFrame(
                    {
                        "person_idx": pupils.astype(np.int64),
                        "event_day": np.full(len(pupils), term_day, dtype=np.int32),
                        "sessions_possible": possible.astype(np.int32),
                        "sessions_attended": attended.astype(np.int32),
                    }
                )
            )
    return pl.concat(frames)


def homelessness_applications(
    rng, household_need, household_decile, head_of_household, head_age
) -> pl.DataFrame:
    """Applications by households (recorded against the household's first adult)."""
    age_factor = np.select([head_age < 30, head_age < 60], [2.0, 1.0], 0.3)
    weight = np.exp(0.8 * household_need) * (1 + 0.05 * (10 - household_decile)) * age_factor
    rate = _normalised(weight, HOMELESSNESS_RATE)
    household, day = _poisson_days(rng, rate)
    duty = np.array(DUTY_TYPES)[
        np.searchsorted([0.55, 0.9], rng.random(len(household)), side="right")
    ]
    return pl.DataFrame(
        {
            "person_idx": head_of_household[household],
            "event_day": day.astype(np.int32),
            "duty_type": duty,
        }
    )


def family_support_enrolments(people: pl.DataFrame) -> pl.DataFrame:
    """One enrolment record per member of each enrolled family (family_id shared)."""
    return people.filter(pl.col("enrolled")).select(
        "person_idx",
        event_day=pl.col("enrolment_day"),
        programme_type="programme_type",
        family_id="vcs_family_id",
    )
