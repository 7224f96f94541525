"""Effects, balance: nothing is published that rests on a suppressed cell, and estimates are rounded."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.outcomes.effects.estimate import COHORTS, ESTIMATE_COLUMNS, PERIODS
from pipelines.publish.disclosure import DisclosureRule
from pipelines.publish.effects import (
    HIDDEN,
    publishable_balance,
    publishable_effects,
    standardised_difference,
)

CELLS = {(c, p) for c in COHORTS for p in PERIODS}


def _estimate(**cells) -> pl.DataFrame:
    """One estimated A&E 0-17 row; ``cells`` overrides (cohort, period) -> (people, events)."""
    row = {c: None for c in ESTIMATE_COLUMNS}
    row.update(
        outcome="ae_attendance",
        age_band="0-17",
        measure="events per 100 people",
        status="estimated",
        rate_difference=-14.2649,
        rate_difference_ci_low=-22.1234,
        rate_difference_ci_high=-6.3456,
        rate_ratio=0.70449,
        rate_ratio_ci_low=0.55123,
        rate_ratio_ci_high=0.89876,
    )
    for cohort, period in CELLS:
        people, events = cells.get(f"{cohort}_{period}", (200, 60))
        row.update(
            {
                f"{cohort}_{period}_people": people,
                f"{cohort}_{period}_events": events,
                f"{cohort}_{period}_exposure": people,
            }
        )
    return pl.DataFrame([row], schema=ESTIMATE_COLUMNS)


VISIBLE = {("ae_attendance", "0-17", c, p) for c, p in CELLS}


def test_an_effect_resting_on_a_suppressed_cell_is_not_published():
    published = publishable_effects(_estimate(), VISIBLE).row(0, named=True)
    assert published["status"] == "estimated"
    assert (
        published["rate_ratio"],
        published["rate_ratio_ci_low"],
        published["rate_ratio_ci_high"],
    ) == (0.70, 0.55, 0.90)
    assert published["rate_difference"] == -14.3 and published["rate_difference_ci_high"] == -6.3

    # the programme's 'after' cell holds 5 events: redacted in the before/after table, so no estimate
    small = publishable_effects(_estimate(programme_after=(200, 5)), VISIBLE).row(0, named=True)
    # the comparison's 'before' cell is visible by its own counts but was hidden by secondary suppression
    secondary = publishable_effects(
        _estimate(), VISIBLE - {("ae_attendance", "0-17", "comparison", "before")}
    ).row(0, named=True)
    # a cell of 7 people
    few = publishable_effects(_estimate(comparison_after=(7, 30)), VISIBLE).row(0, named=True)
    for hidden in (small, secondary, few):
        assert hidden["status"] == HIDDEN
        assert all(
            hidden[k] is None
            for k in (
                "rate_ratio",
                "rate_ratio_ci_low",
                "rate_ratio_ci_high",
                "rate_difference",
                "rate_difference_ci_low",
                "rate_difference_ci_high",
            )
        )


def test_a_stricter_rule_hides_more():
    strict = DisclosureRule(threshold=100, rounding_base=5)
    assert publishable_effects(_estimate(), VISIBLE, strict)["status"][0] == HIDDEN


def test_standardised_difference_of_an_indicator():
    # 30% vs 20%: 0.1 / sqrt((0.21 + 0.16) / 2)
    assert standardised_difference(0.3, 0.2) == pytest.approx(0.1 / ((0.21 + 0.16) / 2) ** 0.5)
    assert standardised_difference(0.0, 0.0) == 0.0


def test_balance_counts_are_controlled_and_shares_hide_with_them():
    counts = pl.DataFrame(
        {
            "sample": ["programme"] * 3 + ["candidates"] * 3 + ["comparison"] * 3,
            "variable": ["prior_use"] * 9,
            "level": ["none", "one", "two or more"] * 3,
            "people": [120, 40, 3, 5000, 1800, 600, 1200, 400, 30],
        }
    )
    balance = {r["level"]: r for r in publishable_balance(counts).iter_rows(named=True)}
    assert (
        balance["two or more"]["programme_people"] is None
        and balance["two or more"]["programme_pct"] is None
    )
    assert balance["two or more"]["smd_after_matching"] is None
    # the 3 cannot be had from 'All' minus the rest: the next smallest programme cell is hidden too,
    # and every share and difference that uses it
    assert (
        balance["one"]["programme_people"] is None and balance["one"]["smd_before_matching"] is None
    )
    assert (balance["none"]["programme_people"], balance["All"]["programme_people"]) == (120, 165)
    # visible counts are rounded to 5; shares and differences come from unrounded counts
    assert balance["none"]["candidates_people"] == 5000
    assert balance["none"]["candidates_pct"] == round(100 * 5000 / 7400, 1)
    assert balance["none"]["smd_after_matching"] == round(
        standardised_difference(120 / 163, 1200 / 1630), 2
    )
