"""Difference-in-differences of rates and rate ratios, with cluster-robust 95% intervals.

For one outcome and one age band, every cohort and comparison person is observed twice (the
12 months before the index date and the 12 months from it), and people come in clusters that
can be alike (a programme family; a comparison household's postcode: see
``dbt_like_sql/outcomes/person_clusters.sql``). Two Poisson GLMs (statsmodels) with the
saturated design ``1 + programme + after + programme:after`` are fitted:

- log link, exposure = people (or sessions possible): ``exp(programme:after)`` is the **rate
  ratio**, (programme after / before) / (comparison after / before);
- identity link on the rate, weighted by the exposure: ``programme:after`` is the
  **difference in differences** of the rates, (programme after - before) - (comparison after -
  before), reported per 100 people (or in percentage points of sessions missed).

The design is saturated, so both point estimates are exactly those of the four published
rates; only the intervals come from the model. Their standard errors are cluster-robust (CR1
sandwich, statsmodels ``cov_type="cluster"``) with a t distribution on clusters - 1 degrees of
freedom, so they allow for overdispersion, for each person's two periods being alike and for
people of one family being alike. The model is fitted on per-cluster totals (events and
exposure of each cluster, cohort and period): for this design the estimating equations are the
sums of the people's, so the estimates and the sandwich are the person-level ones (the CR1
factor (N - 1)/(N - K) counts cluster rows instead of person rows and is a shade larger), and
the cost grows with clusters, not people.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from pipelines.core.stages import stage

CONFIDENCE = 0.95
# Fewer clusters than this in either group and a sandwich estimate is too unstable to print.
MIN_CLUSTERS = 10
COHORTS = ("programme", "comparison")
PERIODS = ("before", "after")
# Count outcomes are events per 100 people in 12 months; school absence is % of sessions missed.
RATE_SCALE = 100.0


@dataclass(frozen=True)
class Band:
    """An age band the effects are estimated for: a published band, or a subtotal/total of several."""

    label: str
    members: tuple[str, ...]


def method_parameters() -> dict:
    """The method's parameters, as published in ``_about.effects_parameters``."""
    return {
        "design": "difference in differences: programme vs matched comparison, 12 months after vs 12 months "
        "before the index date",
        "model": "Poisson GLM (statsmodels), saturated design 1 + programme + after + programme:after",
        "rate_ratio": "exp(programme:after) from the log-link model with exposure = people (school absence: "
        "sessions possible)",
        "rate_difference": "programme:after from the identity-link model on the rate, weighted by the exposure; "
        "per 100 people (school absence: percentage points of sessions missed)",
        "confidence": CONFIDENCE,
        "standard_errors": "cluster-robust sandwich (CR1), t distribution with clusters - 1 degrees of freedom",
        "clusters": "programme: the family of the first enrolment; comparison: the most often recorded postcode "
        "(a household proxy); person alone when none",
        "min_clusters_per_group": MIN_CLUSTERS,
        "estimated_from": "unrounded person-level counts in the hub (outcomes.person_outcomes, "
        "outcomes.person_school_attendance)",
    }


def analysis_frame(con: duckdb.DuckDBPyConnection, per_cluster: bool = False) -> pl.DataFrame:
    """Per person, period and outcome: cohort, age band, cluster, events and exposure.

    Count outcomes have exposure 1 (one 12-month window per person and period); school absence
    has sessions missed as events and sessions possible as exposure. ``per_cluster``: summed to
    one row per outcome, age band, cluster, cohort and period, with its count of ``people``
    (everything :func:`estimate_effects` reads is such a sum; at 3M people 5.8M rows become
    2.0M, summed here by DuckDB rather than again for every band).
    """
    people = """
        SELECT o.outcome, o.cohort, o.period, o.age_band, c.cluster_key,
               CAST(o.events AS DOUBLE) AS events, 1.0 AS exposure
        FROM outcomes.person_outcomes o JOIN outcomes.person_clusters c USING (person_key)
        UNION ALL
        SELECT 'school_absence', s.cohort, s.period, s.age_band, c.cluster_key,
               CAST(s.sessions_missed AS DOUBLE), CAST(s.sessions_possible AS DOUBLE)
        FROM outcomes.person_school_attendance s JOIN outcomes.person_clusters c USING (person_key)
    """
    if per_cluster:
        people = f"""
            SELECT outcome, cohort, period, age_band, cluster_key, sum(events) AS events,
                   sum(exposure) AS exposure, CAST(count(*) AS DOUBLE) AS people
            FROM ({people}) GROUP BY ALL"""
    return pl.from_arrow(con.sql(people).to_arrow_table())


def measure_label(outcome: str) -> str:
    return "% of sessions missed" if outcome == "school_absence" else "events per 100 people"


ESTIMATE_COLUMNS = {
    "outcome": pl.String,
    "age_band": pl.String,
    "measure": pl.String,
    "status": pl.String,
    "rate_difference": pl.Float64,
    "rate_difference_ci_low": pl.Float64,
    "rate_difference_ci_high": pl.Float64,
    "rate_ratio": pl.Float64,
    "rate_ratio_ci_low": pl.Float64,
    "rate_ratio_ci_high": pl.Float64,
    "programme_clusters": pl.Int64,
    "comparison_clusters": pl.Int64,
    **{
        f"{c}_{p}_{k}": pl.Float64
        for c in COHORTS
        for p in PERIODS
        for k in ("people", "events", "exposure")
    },
}


@stage("effects: estimate")
def estimate_effects(frame: pl.DataFrame, bands: list[Band]) -> pl.DataFrame:
    """From :func:`analysis_frame` (best ``per_cluster``), one row per outcome and band
    (``ESTIMATE_COLUMNS``), unrounded: the estimates, their intervals, and the people, events
    and exposure of the four cells each rests on.

    ``status`` is ``estimated``, or says why there is no estimate (no events in a cell, too few
    clusters); disclosure control comes later (:func:`pipelines.publish.effects.publishable_effects`).
    """
    rows = []
    for outcome in sorted(frame["outcome"].unique().to_list()):
        of_outcome = frame.filter(pl.col("outcome") == outcome)
        for band in bands:
            subset = of_outcome.filter(pl.col("age_band").is_in(list(band.members)))
            rows.append(estimate_one(subset, outcome, band.label))
    return (
        pl.DataFrame(rows, schema=ESTIMATE_COLUMNS, orient="row")
        if rows
        else pl.DataFrame(schema=ESTIMATE_COLUMNS)
    )


def estimate_one(subset: pl.DataFrame, outcome: str, band: str) -> dict:
    """The estimate for one outcome and band from its person-period rows, or from rows that
    each sum several people of one cluster, cohort and period (with their count in ``people``)."""
    row: dict = {c: None for c in ESTIMATE_COLUMNS}
    row.update(outcome=outcome, age_band=band, measure=measure_label(outcome))
    people = pl.col("people").sum() if "people" in subset.columns else pl.len().cast(pl.Float64)
    cells = subset.group_by("cohort", "period").agg(
        people=people,
        events=pl.col("events").sum(),
        exposure=pl.col("exposure").sum(),
    )
    for cohort, period, people, events, exposure in cells.iter_rows():
        row.update(
            {
                f"{cohort}_{period}_people": people,
                f"{cohort}_{period}_events": events,
                f"{cohort}_{period}_exposure": exposure,
            }
        )
    clusters = subset.group_by("cohort").agg(pl.col("cluster_key").n_unique())
    counted = dict(clusters.iter_rows())
    row["programme_clusters"], row["comparison_clusters"] = (
        counted.get("programme", 0),
        counted.get("comparison", 0),
    )
    if any(not row[f"{c}_{p}_events"] for c in COHORTS for p in PERIODS):
        row["status"] = "not estimable: a cell has no events (or no one)"
        return row
    if min(row["programme_clusters"], row["comparison_clusters"]) < MIN_CLUSTERS:
        row["status"] = (
            f"not estimable: fewer than {MIN_CLUSTERS} families or households in a group"
        )
        return row
    totals = (
        subset.group_by("cluster_key", "cohort", "period")
        .agg(events=pl.col("events").sum(), exposure=pl.col("exposure").sum())
        .filter(pl.col("exposure") > 0)
        .sort("cluster_key", "cohort", "period")
    )
    programme = (totals["cohort"] == "programme").cast(pl.Float64).to_numpy()
    after = (totals["period"] == "after").cast(pl.Float64).to_numpy()
    design = np.column_stack([np.ones(totals.height), programme, after, programme * after])
    groups = totals["cluster_key"].cast(pl.Categorical).to_physical().to_numpy()
    events, exposure = totals["events"].to_numpy(), totals["exposure"].to_numpy()
    fit = {"cov_type": "cluster", "cov_kwds": {"groups": groups}, "use_t": True}
    # Imported here, not with the module: statsmodels (and the scipy.stats it loads) was a fifth of
    # the code location's import, paid by every Dagster process that loads it (dagster dev, each
    # step process, `placelink run`) though only the effects step fits a model.
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import (
        DomainWarning,
        PerfectSeparationWarning,
        SpecificationWarning,
    )

    try:
        with warnings.catch_warnings():
            # The identity link is outside the Poisson family's canonical domain, and statsmodels
            # warns that cluster covariances with var_weights are "not fully supported": for this
            # saturated design they equal the person-level sandwich (checked in
            # tests/effects/test_estimate.py), so both warnings are expected here.
            warnings.simplefilter("ignore", DomainWarning)
            warnings.simplefilter("ignore", SpecificationWarning)
            warnings.simplefilter("error", PerfectSeparationWarning)
            rates = _cell_rates(events, exposure, programme, after)
            log = sm.GLM(events, design, family=sm.families.Poisson(), exposure=exposure).fit(
                start_params=_saturated(np.log(rates)), **fit
            )
            identity = sm.GLM(
                events / exposure,
                design,
                family=sm.families.Poisson(link=sm.families.links.Identity()),
                var_weights=exposure,
            ).fit(start_params=_saturated(rates), **fit)
    except (ValueError, np.linalg.LinAlgError, PerfectSeparationWarning) as exc:
        row["status"] = f"not estimable: the model did not fit ({type(exc).__name__})"
        return row
    alpha = 1 - CONFIDENCE
    low, high = log.conf_int(alpha=alpha)[3]
    row.update(
        rate_ratio=float(np.exp(log.params[3])),
        rate_ratio_ci_low=float(np.exp(low)),
        rate_ratio_ci_high=float(np.exp(high)),
    )
    low, high = identity.conf_int(alpha=alpha)[3]
    row.update(
        rate_difference=float(identity.params[3]) * RATE_SCALE,
        rate_difference_ci_low=float(low) * RATE_SCALE,
        rate_difference_ci_high=float(high) * RATE_SCALE,
    )
    row["status"] = "estimated"
    return row


def _cell_rates(events, exposure, programme, after) -> np.ndarray:
    """The four cells' rates (events over exposure): comparison before, programme before,
    comparison after, programme after."""
    return np.array(
        [
            events[(programme == p) & (after == a)].sum()
            / exposure[(programme == p) & (after == a)].sum()
            for a in (0.0, 1.0)
            for p in (0.0, 1.0)
        ]
    )


def _saturated(link_rates: np.ndarray) -> np.ndarray:
    """The saturated design's parameters from the cells' rates on the link scale: the maximum
    likelihood estimates exactly, given to statsmodels as its starting point, so IRLS stops
    after one step instead of iterating from a mean-only start (the fits were 40% of the
    effects' time at 3M people); the standard errors are computed by statsmodels as before."""
    before_c, before_p, after_c, after_p = link_rates
    return np.array(
        [
            before_c,
            before_p - before_c,
            after_c - before_c,
            (after_p - before_p) - (after_c - before_c),
        ]
    )
