"""Effect estimates: the point estimates are the published rates', the intervals allow for families."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm

from pipelines.outcomes.effects.estimate import Band, estimate_effects, estimate_one


def _people(
    seed: int, families: int, per_family: int, family_sd: float, effect: float = 0.0
) -> pl.DataFrame:
    """Person-period rows: half the families in the programme; each family shares a rate in each
    period (log-normal with ``family_sd``: a hard year hits the whole family), and each person is
    observed before and after."""
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(families):
        cohort = "programme" if f % 2 == 0 else "comparison"
        family_rate = {
            period: 0.5 * np.exp(rng.normal(0, family_sd)) for period in ("before", "after")
        }
        for p in range(per_family):
            for period in ("before", "after"):
                rate = family_rate[period] * (
                    1 + effect if cohort == "programme" and period == "after" else 1
                )
                rows.append(
                    {
                        "outcome": "ae_attendance",
                        "cohort": cohort,
                        "period": period,
                        "age_band": "0-4",
                        "cluster_key": f"family:{f}",
                        "person": f"{f}-{p}",
                        "events": float(rng.poisson(rate)),
                        "exposure": 1.0,
                    }
                )
    return pl.DataFrame(rows)


def test_point_estimates_are_those_of_the_four_published_rates():
    frame = _people(1, 200, 3, 0.5, effect=-0.3)
    row = estimate_one(frame, "ae_attendance", "0-4")
    rates = {
        (c, p): frame.filter((pl.col("cohort") == c) & (pl.col("period") == p))["events"].mean()
        for c in ("programme", "comparison")
        for p in ("before", "after")
    }
    assert row["status"] == "estimated"
    ratio = (rates["programme", "after"] / rates["programme", "before"]) / (
        rates["comparison", "after"] / rates["comparison", "before"]
    )
    assert row["rate_ratio"] == pytest.approx(ratio, rel=1e-9)
    difference = (
        (rates["programme", "after"] - rates["programme", "before"])
        - (rates["comparison", "after"] - rates["comparison", "before"])
    ) * 100
    assert row["rate_difference"] == pytest.approx(difference, rel=1e-9)
    assert row["rate_ratio_ci_low"] < row["rate_ratio"] < row["rate_ratio_ci_high"]
    assert row["rate_difference_ci_low"] < row["rate_difference"] < row["rate_difference_ci_high"]
    assert row["programme_before_people"] == 300 and row["programme_clusters"] == 100


def test_intervals_widen_when_family_members_are_alike():
    # The same people, first treated as one cluster per family, then as if each were on their own:
    # when a family's year is good or bad for all its members, ignoring the families gives
    # intervals that are too narrow.
    frame = _people(2, 200, 4, 1.0)
    by_family = estimate_one(frame, "ae_attendance", "0-4")
    by_person = estimate_one(
        frame.with_columns(cluster_key=pl.col("person")), "ae_attendance", "0-4"
    )
    family_width = by_family["rate_ratio_ci_high"] / by_family["rate_ratio_ci_low"]
    person_width = by_person["rate_ratio_ci_high"] / by_person["rate_ratio_ci_low"]
    assert family_width > 1.2 * person_width
    assert by_family["rate_ratio"] == pytest.approx(by_person["rate_ratio"])


def test_per_cluster_totals_give_the_person_level_sandwich():
    # The estimator fits per-cluster totals; a person-level Poisson GLM with the same clusters gives
    # the same standard errors up to the CR1 small-sample factor (N - 1)/(N - K), which counts rows.
    frame = _people(3, 120, 3, 0.7, effect=-0.2)
    row = estimate_one(frame, "ae_attendance", "0-4")
    programme = (frame["cohort"] == "programme").cast(pl.Float64).to_numpy()
    after = (frame["period"] == "after").cast(pl.Float64).to_numpy()
    design = np.column_stack([np.ones(frame.height), programme, after, programme * after])
    groups = frame["cluster_key"].cast(pl.Categorical).to_physical().to_numpy()
    fit = sm.GLM(frame["events"].to_numpy(), design, family=sm.families.Poisson()).fit(
        cov_type="cluster", cov_kwds={"groups": groups}, use_t=True
    )
    low, high = np.exp(fit.conf_int()[3])
    assert row["rate_ratio_ci_low"] == pytest.approx(low, rel=0.02)
    assert row["rate_ratio_ci_high"] == pytest.approx(high, rel=0.02)


def test_no_estimate_when_a_cell_has_no_events():
    frame = _people(4, 40, 2, 0.3).with_columns(
        events=pl.when((pl.col("cohort") == "programme") & (pl.col("period") == "after"))
        .then(0.0)
        .otherwise(pl.col("events"))
    )
    row = estimate_one(frame, "ae_attendance", "0-4")
    assert row["status"].startswith("not estimable") and row["rate_ratio"] is None


def test_rows_summed_per_cluster_give_the_estimates_of_the_people():
    # The pipeline sums people to one row per cluster, cohort and period first (analysis_frame's
    # per_cluster); every estimate, interval and count must be what the people's rows give, and
    # statsmodels' own fit from its default start must agree with the closed-form start it is given.
    people = pl.concat(
        [
            _people(5, 150, 3, 0.6, effect=-0.25),
            _people(6, 90, 2, 0.4).with_columns(age_band=pl.lit("5-10")),
        ]
    )
    summed = people.group_by("outcome", "age_band", "cluster_key", "cohort", "period").agg(
        events=pl.col("events").sum(),
        exposure=pl.col("exposure").sum(),
        people=pl.len().cast(pl.Float64),
    )
    bands = [Band("0-4", ("0-4",)), Band("5-10", ("5-10",)), Band("All ages", ("0-4", "5-10"))]
    from_people = estimate_effects(people.drop("person"), bands)
    from_summed = estimate_effects(summed, bands)
    assert from_people["status"].to_list() == ["estimated"] * 3
    assert from_people["programme_before_people"].to_list() == [225.0, 90.0, 315.0]
    for column in from_people.columns:
        if from_people[column].dtype == pl.Float64:
            assert from_summed[column].to_list() == pytest.approx(
                from_people[column].to_list(), rel=1e-9
            ), column
        else:
            assert from_summed[column].to_list() == from_people[column].to_list(), column
    all_ages = (
        people.with_columns(
            programme=(pl.col("cohort") == "programme").cast(pl.Float64),
            after=(pl.col("period") == "after").cast(pl.Float64),
        )
        .group_by("cluster_key", "programme", "after")
        .agg(pl.col("events").sum(), pl.len())
    )
    design = all_ages.select(
        one=pl.lit(1.0),
        p=pl.col("programme"),
        a=pl.col("after"),
        pa=pl.col("programme") * pl.col("after"),
    ).to_numpy()
    groups = all_ages["cluster_key"].cast(pl.Categorical).to_physical().to_numpy()
    default_start = sm.GLM(
        all_ages["events"].to_numpy(),
        design,
        family=sm.families.Poisson(),
        exposure=all_ages["len"].cast(pl.Float64).to_numpy(),
    ).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    low, high = np.exp(default_start.conf_int()[3])
    row = from_summed.row(2, named=True)
    assert row["rate_ratio"] == pytest.approx(np.exp(default_start.params[3]), rel=1e-7)
    assert (row["rate_ratio_ci_low"], row["rate_ratio_ci_high"]) == pytest.approx(
        (low, high), rel=1e-6
    )
