"""What of the effect estimates, the matching balance and the linkage sensitivity may be published.

The estimates are computed from unrounded person-level data, so they go through their own
control before they reach the analysts' file:

- **an estimate is published only when every cell it rests on passes the rule**: the four
  cohort x period cells of its outcome and age band must each hold more than ``threshold``
  people and no 1..``threshold`` events, and be visible (not redacted, primarily or to protect
  another cell) in the published before/after table; otherwise its row says why it is hidden;
- **estimates are rounded** (rate ratios to 2 decimals, differences to 1 decimal per 100, standardised
  differences to 2): together with the published counts, which are rounded to 5, they cannot
  pin a count down more finely than the published rates (computed from the same unrounded
  counts, to 2 decimals) already do, and a hidden cell's estimate is never published at all.
- the balance table's counts go through the same rule as any published count (primary and
  secondary suppression over the 'All' level of each variable, rounding to 5); a share or a
  standardised difference is hidden with any count it uses.
"""

from __future__ import annotations

import json
import math

import duckdb
import polars as pl

from pipelines.core.warehouse import table_exists
from pipelines.outcomes.effects.estimate import COHORTS, PERIODS, method_parameters
from pipelines.publish.disclosure import (
    DisclosureRule,
    TableSpec,
    control_table,
    differencing_attack,
    unsafe_cells,
)
from pipelines.publish.published_file import DerivedTable

# The models each table computed here reads, for _lineage.
_PERSON_LEVEL = {
    "outcomes.person_outcomes",
    "outcomes.person_school_attendance",
    "outcomes.person_clusters",
}
DERIVED_FROM = {
    "effects": _PERSON_LEVEL,
    "effects_linkage_sensitivity": _PERSON_LEVEL,
    "matching_balance": {"cohorts.matching_balance"},
}
HIDDEN = "hidden: a cell it rests on is redacted or holds too few people or events"
RATIO_DECIMALS = 2
DIFFERENCE_DECIMALS = 1
SMD_DECIMALS = 2


def _cells_pass(row: dict, rule: DisclosureRule) -> bool:
    """Every one of the estimate's four cells holds more than ``threshold`` people and no
    1..``threshold`` events (zero events never reach here: such an estimate is not estimable)."""
    for cohort in COHORTS:
        for period in PERIODS:
            people, events = (
                row.get(f"{cohort}_{period}_people"),
                row.get(f"{cohort}_{period}_events"),
            )
            if (
                people is None
                or events is None
                or people <= rule.threshold
                or 0 < events <= rule.threshold
            ):
                return False
    return True


def visible_cells(
    before_after: pl.DataFrame | None, school: pl.DataFrame | None
) -> set[tuple[str, str, str, str]]:
    """(outcome, age_band, cohort, period) of every before/after cell published whole (its people,
    counts and rate all visible), from the controlled publish tables."""
    visible = set()
    if before_after is not None:
        for row in before_after.iter_rows(named=True):
            if None not in (row["people"], row["events"], row["events_per_100_people"]):
                visible.add((row["outcome"], row["age_band"], row["cohort"], row["period"]))
    if school is not None:
        for row in school.iter_rows(named=True):
            if None not in (
                row["pupils"],
                row["sessions_possible"],
                row["sessions_missed"],
                row["absence_rate_pct"],
            ):
                visible.add(("school_absence", row["age_band"], row["cohort"], row["period"]))
    return visible


ESTIMATES = (
    "rate_difference",
    "rate_difference_ci_low",
    "rate_difference_ci_high",
    "rate_ratio",
    "rate_ratio_ci_low",
    "rate_ratio_ci_high",
)


def _controlled(row: dict, passes: bool) -> dict:
    out = {k: row[k] for k in ("outcome", "age_band", "measure")}
    estimated = row["status"] == "estimated"
    for name in ESTIMATES:
        value = row[name] if estimated and passes else None
        decimals = RATIO_DECIMALS if name.startswith("rate_ratio") else DIFFERENCE_DECIMALS
        # "+ 0.0" turns a rounded -0.0 into 0.0
        out[name] = (
            None if value is None or not math.isfinite(value) else round(value, decimals) + 0.0
        )
    out["status"] = row["status"] if not estimated else ("estimated" if passes else HIDDEN)
    return out


def publishable_effects(
    estimates: pl.DataFrame,
    visible: set[tuple[str, str, str, str]],
    rule: DisclosureRule = DisclosureRule(),
) -> pl.DataFrame:
    """The ``effects`` table: estimates rounded, and hidden unless every cell they rest on passes."""
    rows = []
    for row in estimates.iter_rows(named=True):
        cells = {(row["outcome"], row["age_band"], c, p) for c in COHORTS for p in PERIODS}
        rows.append(_controlled(row, _cells_pass(row, rule) and cells <= visible))
    return (
        pl.DataFrame(rows, schema=EFFECT_SCHEMA, orient="row")
        if rows
        else pl.DataFrame(schema=EFFECT_SCHEMA)
    )


def publishable_sensitivity(
    sensitivity: pl.DataFrame,
    visible: set[tuple[str, str, str, str]],
    rule: DisclosureRule = DisclosureRule(),
) -> pl.DataFrame:
    """The ``effects_linkage_sensitivity`` table: each threshold's estimates, under the same
    rule as ``effects`` for that threshold's own cells, and shown only where the main analysis's
    cells are published too."""
    rows = []
    for row in sensitivity.iter_rows(named=True):
        cells = {(row["outcome"], row["age_band"], c, p) for c in COHORTS for p in PERIODS}
        controlled = _controlled(row, _cells_pass(row, rule) and cells <= visible)
        rows.append(
            {
                "linkage_threshold": row["linkage_threshold"],
                "analysis": row["analysis"],
                **controlled,
            }
        )
    schema = {"linkage_threshold": pl.Float64, "analysis": pl.String, **EFFECT_SCHEMA}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


EFFECT_SCHEMA = {
    "outcome": pl.String,
    "age_band": pl.String,
    "measure": pl.String,
    **{name: pl.Float64 for name in ESTIMATES},
    "status": pl.String,
}

SAMPLES = ("programme", "candidates", "comparison")
BALANCE_SPEC = TableSpec(
    dimensions=("variable", "level", "sample"), counts=("people",), totals=(("level", "All"),)
)


def standardised_difference(p_programme: float, p_other: float) -> float | None:
    """Standardised mean difference of a 0/1 indicator between two samples (difference of the
    proportions over the root of their mean variance); None where it is undefined."""
    pooled = math.sqrt((p_programme * (1 - p_programme) + p_other * (1 - p_other)) / 2)
    if pooled == 0:
        return 0.0 if p_programme == p_other else None
    return (p_programme - p_other) / pooled


def publishable_balance(
    counts: pl.DataFrame, rule: DisclosureRule = DisclosureRule()
) -> pl.DataFrame:
    """The ``matching_balance`` table from ``cohorts.matching_balance`` (sample, variable, level,
    people): one row per variable and level with each sample's people (controlled) and share, and
    the standardised difference from the programme before matching (all candidates) and after
    (the matched comparison group). A share or difference is hidden with any count it uses."""
    raw = counts.select(
        pl.col("variable").cast(pl.String),
        pl.col("level").cast(pl.String),
        pl.col("sample").cast(pl.String),
        pl.col("people").cast(pl.Int64),
    )
    safe = control_table(raw, BALANCE_SPEC, rule)
    if unsafe_cells(safe, ["people"], rule) or differencing_attack(safe, BALANCE_SPEC, rule):
        raise ValueError("matching balance: disclosure check failed after control")
    true = {
        (r["variable"], r["level"], r["sample"]): r["people"]
        for r in pl.concat([raw, _totals(raw)]).iter_rows(named=True)
    }
    shown = {
        (r["variable"], r["level"], r["sample"]): r["people"] for r in safe.iter_rows(named=True)
    }
    rows = []
    for variable, level in sorted({(v, l) for v, l, _ in shown if l != "All"}) + sorted(
        {(v, "All") for v, _, _ in shown}
    ):
        row = {"variable": variable, "level": level}
        share = {}
        for sample in SAMPLES:
            key, total = (variable, level, sample), (variable, "All", sample)
            visible = key in shown and shown[key] is not None and shown.get(total) is not None
            row[f"{sample}_people"] = shown.get(key, 0 if true.get(total) else None)
            if key not in true:  # no one in the sample has this level: a true zero share
                share[sample] = 0.0 if true.get(total) and shown.get(total) is not None else None
            else:
                share[sample] = true[key] / true[total] if visible and true[total] else None
            row[f"{sample}_pct"] = None if share[sample] is None else round(100 * share[sample], 1)
        for name, other in (
            ("smd_before_matching", "candidates"),
            ("smd_after_matching", "comparison"),
        ):
            value = (
                standardised_difference(share["programme"], share[other])
                if level != "All" and share["programme"] is not None and share[other] is not None
                else None
            )
            row[name] = None if value is None else round(value, SMD_DECIMALS) + 0.0
        rows.append(row)
    schema = {
        "variable": pl.String,
        "level": pl.String,
        **{f"{s}_people": pl.Int64 for s in SAMPLES},
        **{f"{s}_pct": pl.Float64 for s in SAMPLES},
        "smd_before_matching": pl.Float64,
        "smd_after_matching": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def _totals(raw: pl.DataFrame) -> pl.DataFrame:
    return (
        raw.group_by("variable", "sample")
        .agg(pl.col("people").sum())
        .with_columns(level=pl.lit("All"))
        .select(raw.columns)
    )


ESTIMATE_COMMENTS = {
    "outcome": "Outcome name, as in outcomes_before_after (school_absence: school_attendance_before_after); "
    "readable names and definitions in _definitions (kind 'outcome').",
    "age_band": "Age band at the index date, or a subtotal ('0-17', '18+') or 'All ages', as in the before/after tables.",
    "measure": "Unit of the rates compared: events per 100 people in 12 months, or % of school sessions missed.",
    "rate_difference": "Difference in differences of the rates: (programme after - before) - (comparison after - "
    "before), in the measure's unit (per 100 people; school absence: percentage points); rounded "
    "to 0.1; NULL where hidden or not estimable (see status).",
    "rate_difference_ci_low": "Lower end of the 95% confidence interval of rate_difference (cluster-robust).",
    "rate_difference_ci_high": "Upper end of the 95% confidence interval of rate_difference (cluster-robust).",
    "rate_ratio": "Ratio of the programme's after/before rate ratio to the comparison group's: below 1 means the "
    "outcome fell more (or rose less) in the programme; rounded to 0.01; NULL where hidden or not "
    "estimable.",
    "rate_ratio_ci_low": "Lower end of the 95% confidence interval of rate_ratio (cluster-robust).",
    "rate_ratio_ci_high": "Upper end of the 95% confidence interval of rate_ratio (cluster-robust).",
    "status": "'estimated'; 'hidden: ...' when a cell it rests on is redacted or holds too few people or events "
    "(disclosure control); 'not estimable: ...' when a cell has no events or too few families or "
    "households.",
}

EFFECTS_DESCRIPTION = (
    "Effect of the programme on each outcome and age band: the difference in differences of the rates "
    "(programme vs matched comparison, 12 months after vs 12 months before the index date) and the ratio of "
    "the two groups' after/before rate ratios, each with a 95% confidence interval. Estimated in the hub from "
    "unrounded person-level counts with Poisson GLMs (statsmodels) whose standard errors are cluster-robust "
    "(clusters: programme families; comparison people's postcodes), so they allow for each person being "
    "observed twice and for family members being alike. Published only where every before/after cell the "
    "estimate rests on is published; rounded. Method and parameters: _about (effects_method, "
    "effects_parameters) and _definitions (kind 'method')."
)

SENSITIVITY_COMMENTS = {
    "linkage_threshold": "Splink match probability at or above which two records were taken to be one person.",
    "analysis": "'main' (the threshold the published tables use) or 'looser'/'stricter' (persons re-clustered "
    "from the same scored pairs).",
    **ESTIMATE_COMMENTS,
}

BALANCE_COMMENTS = {
    "variable": "Matching variable: age_band (at the index date), imd_quintile (1 = most deprived), prior_use "
    "(outcome events in [index - 24 months, index - 12 months)).",
    "level": "The variable's value, or 'All' (everyone in the sample).",
    "programme_people": "Programme cohort members with this value (rounded to 5; NULL = redacted).",
    "candidates_people": "Never-enrolled candidates before matching, at their drawn index dates (rounded to 5; NULL = redacted).",
    "comparison_people": "Matched comparison group members (rounded to 5; NULL = redacted).",
    "programme_pct": "Share of the programme cohort with this value, % (from unrounded counts; NULL where hidden).",
    "candidates_pct": "Share of all candidates with this value, % (from unrounded counts; NULL where hidden).",
    "comparison_pct": "Share of the matched comparison group with this value, % (from unrounded counts; NULL where hidden).",
    "smd_before_matching": "Standardised mean difference of the value's indicator, programme vs all candidates: "
    "(p1 - p0) / sqrt((p1(1 - p1) + p0(1 - p0)) / 2); |SMD| < 0.1 is usually read as balanced.",
    "smd_after_matching": "The same, programme vs the matched comparison group.",
}

BALANCE_DESCRIPTION = (
    "Matching you can inspect: for each matching variable (age band, IMD quintile, prior service use) and "
    "value, the people and share in the programme cohort, in every never-enrolled candidate before matching "
    "and in the matched comparison group, with standardised mean differences (programme vs candidates, "
    "programme vs comparison). Matching is exact within strata, so a difference after matching comes from "
    "strata with fewer than ten candidates per cohort member. Counts disclosure-controlled like every count "
    "(1-7 redacted, others rounded to 5, secondary suppression over 'All'); shares and differences from "
    "unrounded counts, hidden with any count they use."
)


def derived_tables(con: duckdb.DuckDBPyConnection, rule: DisclosureRule = DisclosureRule()):
    """A ``derived`` callback for :func:`pipelines.publish.published_file.publish`: the effects, the linkage
    sensitivity and the matching balance, read from the warehouse now and controlled against the
    publish tables once they are controlled. Tables not built yet are left out."""
    estimates = (
        con.sql("SELECT * FROM effects.estimates").pl()
        if table_exists(con, "effects", "estimates")
        else None
    )
    sensitivity = (
        con.sql("SELECT * FROM effects.linkage_sensitivity").pl()
        if table_exists(con, "effects", "linkage_sensitivity")
        else None
    )
    balance = (
        con.sql("SELECT * FROM cohorts.matching_balance").pl()
        if table_exists(con, "cohorts", "matching_balance")
        else None
    )

    def build(controlled: dict[str, pl.DataFrame]) -> list[DerivedTable]:
        visible = visible_cells(
            controlled.get("outcomes_before_after"),
            controlled.get("school_attendance_before_after"),
        )
        tables = []
        if estimates is not None:
            frame = publishable_effects(estimates, visible, rule)
            tables.append(
                DerivedTable(
                    "effects",
                    frame,
                    EFFECTS_DESCRIPTION,
                    ESTIMATE_COMMENTS,
                    redacted=int(frame["status"].str.starts_with("hidden").sum()),
                    about={
                        "effects_method": EFFECTS_DESCRIPTION,
                        "effects_parameters": json.dumps(method_parameters()),
                    },
                    definitions=[("effects", EFFECTS_DESCRIPTION)],
                )
            )
        if sensitivity is not None:
            frame = publishable_sensitivity(sensitivity, visible, rule)
            thresholds = sorted(set(sensitivity["linkage_threshold"].to_list()))
            text = (
                "The headline effects (every outcome; age bands 0-17, 18+ and All ages) re-estimated with persons "
                f"linked at other Splink match-probability thresholds ({', '.join(str(t) for t in thresholds)}): "
                "the scored pairs are re-clustered (connected components) and the cohort and outcome models "
                "re-run on those persons; the same estimation and disclosure rule as the effects table, applied to "
                "each threshold's own cells. If the estimates barely move, linkage choices do not drive the answer."
            )
            tables.append(
                DerivedTable(
                    "effects_linkage_sensitivity",
                    frame,
                    text,
                    SENSITIVITY_COMMENTS,
                    redacted=int(frame["status"].str.starts_with("hidden").sum()),
                    about={"linkage_sensitivity_thresholds": json.dumps(thresholds)},
                    definitions=[("effects_linkage_sensitivity", text)],
                )
            )
        if balance is not None:
            frame = publishable_balance(balance, rule)
            tables.append(
                DerivedTable(
                    "matching_balance",
                    frame,
                    BALANCE_DESCRIPTION,
                    BALANCE_COMMENTS,
                    counts=tuple(f"{s}_people" for s in SAMPLES),
                    redacted=sum(int(frame[f"{s}_people"].is_null().sum()) for s in SAMPLES),
                    definitions=[("matching_balance", BALANCE_DESCRIPTION)],
                )
            )
        return tables

    return build
