"""The planted programme effect can be found in the raw A&E data, and only where planted.

Tolerances: for one child, A&E counts in the 12 months before and after the index
date are independent Poisson counts with the same rate (times 0.70 after, in the
treated group), so given the total n of both, the after count is binomial with
p = r / (1 + r). The ratio's standard error is then about (1 + r)^2 * sqrt(p(1-p)/n)
whatever the spread of rates between children. We allow 3 standard errors; in the
200,000-person place n is about 1,400, so that is about ±0.11 around 0.70, while
a missing effect (ratio 1.0) would sit 8 standard errors away.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest


def _attendances(place) -> pl.DataFrame:
    truth = place.ground_truth().filter(pl.col("source") == "ae_attendances")
    return (
        place.raw("ae_attendances")
        .select("record_id", pl.col("arrival_date").str.to_date())
        .join(truth, on="record_id")
        .select("person_id", "arrival_date")
    )


def _before_after(attendances: pl.DataFrame, index: pl.DataFrame) -> tuple[int, int]:
    """Attendances in [index - 12 months, index) and [index, index + 12 months)."""
    events = attendances.join(index, on="person_id")
    day, at = pl.col("arrival_date"), pl.col("index_date")
    before = events.filter((day >= at.dt.offset_by("-12mo")) & (day < at)).height
    after = events.filter((day >= at) & (day < at.dt.offset_by("12mo"))).height
    return before, after


def _ratio_and_standard_error(before: int, after: int) -> tuple[float, float]:
    ratio = after / before
    p = after / (before + after)
    return ratio, (1 + ratio) ** 2 * math.sqrt(p * (1 - p) / (before + after))


def _children_at(people: pl.DataFrame, index: pl.Expr) -> pl.Expr:
    return pl.col("date_of_birth").str.to_date().dt.offset_by("18y") > index


@pytest.fixture(scope="module")
def large(large_place):
    return large_place, large_place.people(), _attendances(large_place)


def test_statement_says_exactly_what_was_planted(large):
    place, _, _ = large
    statement = json.loads((place.root / "truth" / "planted_effect.json").read_text())
    assert statement["outcome"] == "ae_attendances"
    assert statement["relative_change"] == -0.30
    assert statement["window_months"] == 12
    assert "under 18" in statement["population"]
    assert all(v["relative_change"] == 0.0 for v in statement["no_effect_planted"].values())


def test_published_realised_counts_match_the_raw_data(large):
    place, people, attendances = large
    statement = json.loads((place.root / "truth" / "planted_effect.json").read_text())
    enrolment = pl.col("enrolment_date").str.to_date()
    children = people.filter((pl.col("enrolled") == "true") & _children_at(people, enrolment))
    before, after = _before_after(attendances, children.select("person_id", index_date=enrolment))
    realised = statement["realised"]
    published = (
        realised["children"],
        realised["attendances_before"],
        realised["attendances_after"],
    )
    assert published == (children.height, before, after)


def test_children_of_enrolled_families_attend_a_and_e_about_30_percent_less_after(large):
    _, people, attendances = large
    enrolment = pl.col("enrolment_date").str.to_date()
    children = people.filter((pl.col("enrolled") == "true") & _children_at(people, enrolment))
    before, after = _before_after(attendances, children.select("person_id", index_date=enrolment))
    ratio, se = _ratio_and_standard_error(before, after)
    assert before + after > 1_000
    assert abs(ratio - 0.70) < 3 * se
    assert ratio < 0.85


def test_no_change_for_similar_unenrolled_children_at_a_matched_pseudo_index_date(large):
    _, people, attendances = large
    index_dates = people.filter(pl.col("enrolled") == "true")["enrolment_date"].unique().sort()
    comparison = people.filter(
        (pl.col("enrolled") == "false") & (pl.col("family_with_need") == "true")
    )
    # Each comparison family gets the enrolment date of a random enrolled family.
    families = comparison["household_id"].unique().sort()
    picks = np.random.default_rng(0).integers(0, index_dates.len(), families.len())
    pseudo = pl.DataFrame({"household_id": families, "pseudo": index_dates.gather(picks)})
    comparison = comparison.join(pseudo, on="household_id").with_columns(
        index_date=pl.col("pseudo").str.to_date()
    )
    children = comparison.filter(_children_at(comparison, pl.col("index_date")))
    before, after = _before_after(attendances, children.select("person_id", "index_date"))
    ratio, se = _ratio_and_standard_error(before, after)
    assert before + after > 1_000
    assert abs(ratio - 1.0) < 3 * se
