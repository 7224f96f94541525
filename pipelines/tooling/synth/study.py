"""Fixed facts of the synthetic study: the window, the enrolment period, the planted effect.

Dates are handled as integer days since 1970-01-01 (Polars' own Date encoding) so
that whole populations can be shifted and compared with numpy.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import polars as pl

STUDY_START = date(2022, 1, 1)
STUDY_END = date(2026, 9, 30)
# Ages are drawn as at the start of the window and nobody is born or dies inside
# it, so no event can fall before a person's birth.
POPULATION_DATE = STUDY_START

# The partners send the place's extracts for October 2026 on this day. The demo and the
# benchmarks run the hub as of it (PLACELINK_AS_OF, pipelines.core.clock), so the place's agreements
# are in force and its dates plausible whatever the calendar says when someone runs them.
DELIVERY_PERIOD = "2026-10"
DELIVERED_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

ENROLMENT_FIRST = date(2023, 6, 1)
ENROLMENT_LAST = date(2025, 6, 30)

EFFECT_OUTCOME = "ae_attendances"
EFFECT_WINDOW_MONTHS = 12
EFFECT_RELATIVE_CHANGE = -0.30
EFFECT_AGE_LIMIT_YEARS = 18  # children: under 18 on their family's enrolment date

# Autumn, spring and summer terms start on these (month, day); the council's
# attendance extract holds four complete academic years, enough for twelve
# months before the first and after the last possible enrolment.
TERM_STARTS = ((9, 1), (1, 5), (4, 15))
ACADEMIC_YEARS = (2022, 2023, 2024, 2025)

DAYS_PER_YEAR = 365.25


def to_day(value: date) -> int:
    """Days since 1970-01-01."""
    return (value - date(1970, 1, 1)).days


START_DAY = to_day(STUDY_START)
END_DAY = to_day(STUDY_END)
WINDOW_DAYS = END_DAY - START_DAY + 1
WINDOW_YEARS = WINDOW_DAYS / DAYS_PER_YEAR


def offset_days(days: np.ndarray, offset: str) -> np.ndarray:
    """Shift day numbers by a calendar offset such as '12mo' or '-18y' (month ends clamp)."""
    shifted = pl.Series(days.astype(np.int32)).cast(pl.Date).dt.offset_by(offset)
    return shifted.cast(pl.Int32).to_numpy()


def day_series(name: str, days: np.ndarray) -> pl.Series:
    """A Polars Date series from day numbers."""
    return pl.Series(name, days.astype(np.int32)).cast(pl.Date)


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per generator component.

    Streams are keyed by name so that changing how one component draws does not
    reshuffle every other component for the same seed.
    """
    key = int.from_bytes(stream.encode("utf-8")[:16].ljust(16, b"\0"), "little")
    return np.random.default_rng([seed, key])
