"""The three partner systems, their seven extracts, and how each system records identity.

Record layouts follow INTERFACES.md: identity columns, then the dataset's payload.
The recording habits (how often an NHS number is captured, whether the system
keeps accents, how often staff type a known-as name) are what make the same
person look different from one system to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

# The layout the partner kit reads.
from pipelines.partner_kit.features import IDENTITY_COLUMNS


@dataclass(frozen=True)
class DatasetLayout:
    partner: str
    dataset: str
    date_column: str
    payload: tuple[str, ...]  # payload columns after the date column
    record_prefix: str
    nhs_number_recorded: float  # share of registrations holding an NHS number
    nickname: float  # share of given names recorded as a known-as name
    ascii_only: bool  # system drops accents and often apostrophes
    upper_family_name: float  # share of registrations with the surname in capitals

    @property
    def path(self) -> str:
        return f"raw/{self.partner}/{self.dataset}.csv"

    @property
    def columns(self) -> tuple[str, ...]:
        return IDENTITY_COLUMNS + (self.date_column,) + self.payload


DATASETS: tuple[DatasetLayout, ...] = (
    DatasetLayout(
        "council",
        "csc_referrals",
        "referral_date",
        ("referral_source",),
        "CSC",
        0.60,
        0.08,
        True,
        0.0,
    ),
    DatasetLayout(
        "council",
        "school_attendance",
        "term_start_date",
        ("sessions_possible", "sessions_attended"),
        "SCH",
        0.60,
        0.08,
        False,
        0.0,
    ),
    DatasetLayout(
        "council",
        "homelessness_applications",
        "application_date",
        ("duty_type",),
        "HOM",
        0.60,
        0.08,
        True,
        0.2,
    ),
    DatasetLayout(
        "nhs", "ae_attendances", "arrival_date", ("arrival_mode",), "AE", 0.985, 0.01, False, 0.5
    ),
    DatasetLayout(
        "nhs",
        "emergency_admissions",
        "admission_date",
        ("length_of_stay_days",),
        "EA",
        0.985,
        0.01,
        False,
        0.3,
    ),
    DatasetLayout(
        "nhs",
        "mental_health_referrals",
        "referral_date",
        ("service",),
        "MH",
        0.985,
        0.02,
        False,
        0.0,
    ),
    DatasetLayout(
        "vcs",
        "family_support_enrolments",
        "enrolment_date",
        ("programme_type", "family_id"),
        "VCS",
        0.10,
        0.10,
        False,
        0.0,
    ),
)

DATASET_BY_NAME = {layout.dataset: layout for layout in DATASETS}
