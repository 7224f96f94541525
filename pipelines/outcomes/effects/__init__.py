"""Effect estimates an analyst can stand behind: how much the programme changed each outcome,
with a 95% interval, how well the comparison group was matched, and how much the answer moves
with the linkage threshold. Computed in the hub from unrounded person-level data; published only
through :mod:`pipelines.publish.effects`."""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.outcomes.effects.estimate import Band, analysis_frame, estimate_effects
from pipelines.outcomes.effects.sensitivity import estimates_at_threshold
from pipelines.outcomes.margins import declared_margins
from pipelines.outcomes.sql_models import SqlModel

# The model whose age bands, subtotals and totals the effects follow (one estimate per published row group).
BANDS_FROM = "publish.outcomes_before_after"
# The bands re-estimated at other linkage thresholds: the subtotals and the total.
HEADLINE_BANDS = ("0-17", "18+", "All ages")


def effect_bands(con: duckdb.DuckDBPyConnection, models: dict[str, SqlModel]) -> list[Band]:
    """Every age band of ``staging.age_bands``, then the subtotals and total that the published
    before/after table declares, so each estimate matches a group of published rows."""
    fine = [
        b
        for (b,) in con.execute(
            "SELECT age_band FROM staging.age_bands ORDER BY sort_order"
        ).fetchall()
    ]
    bands = [Band(b, (b,)) for b in fine]
    if BANDS_FROM in models:
        totals, subtotals = declared_margins(models[BANDS_FROM])
        bands += [Band(label, members) for dim, label, members in subtotals if dim == "age_band"]
        bands += [Band(label, tuple(fine)) for dim, label in totals if dim == "age_band"]
    return bands


def _write(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> int:
    con.execute("CREATE SCHEMA IF NOT EXISTS effects")
    con.register("incoming_effects", frame.to_arrow())
    try:
        con.execute(f"CREATE OR REPLACE TABLE effects.{name} AS SELECT * FROM incoming_effects")
    finally:
        con.unregister("incoming_effects")
    return frame.height


def write_estimates(con: duckdb.DuckDBPyConnection, models: dict[str, SqlModel]) -> pl.DataFrame:
    """Estimate every outcome and band from the warehouse's outcome models into ``effects.estimates``
    (unrounded, with the counts of the cells each estimate rests on: hub only)."""
    estimates = estimate_effects(analysis_frame(con, per_cluster=True), effect_bands(con, models))
    _write(con, "estimates", estimates)
    return estimates


def write_linkage_sensitivity(
    con: duckdb.DuckDBPyConnection,
    models: dict[str, SqlModel],
    hub_sources: set[str],
    threshold: float,
    other_thresholds: tuple[float, ...],
) -> pl.DataFrame:
    """``effects.linkage_sensitivity``: the headline bands' estimates at the main linkage
    ``threshold`` (from ``effects.estimates``) and re-estimated at each of ``other_thresholds``."""
    bands = [b for b in effect_bands(con, models) if b.label in HEADLINE_BANDS]
    main = (
        con.sql("SELECT * FROM effects.estimates")
        .pl()
        .filter(pl.col("age_band").is_in(HEADLINE_BANDS))
    )
    frames = [main.with_columns(linkage_threshold=pl.lit(threshold), analysis=pl.lit("main"))]
    for other in sorted(set(other_thresholds) - {threshold}):
        estimates, _ = estimates_at_threshold(con, models, hub_sources, other, bands)
        frames.append(
            estimates.with_columns(
                linkage_threshold=pl.lit(other),
                analysis=pl.lit("looser" if other < threshold else "stricter"),
            )
        )
    frame = pl.concat(frames, how="diagonal_relaxed").sort(
        "outcome", "age_band", "linkage_threshold"
    )
    _write(con, "linkage_sensitivity", frame)
    return frame
