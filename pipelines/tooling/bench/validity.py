"""Proof by simulation: do the published 95% intervals cover the truth 95% of the time?

For each seed, a small synthetic place is generated with a known planted effect on enrolled
children's A&E attendances (``effect``; 0 plants none), every partner's kit prepares its
extracts, and the hub's estimation path runs on them: the landed extracts, the identity
records, the SQL models (cohorts, matching, outcomes, clusters) and
:func:`pipelines.outcomes.effects.estimate.estimate_effects`, exactly as in a pipeline run. Two steps
are replaced, to make hundreds of places affordable on a small machine:

- **linkage** is the ground truth (each record's person from the synthetic truth), so the
  estimand is the truth *the hub could see*: the effect among the people it would have linked
  perfectly. What linkage errors do to the answer is what the published
  ``effects_linkage_sensitivity`` table and tests/outcomes show;
- the envelope, ingest and quality gate are skipped: they pass rows through unchanged.

The truth for each place, from its ``truth/people.csv``: the rate ratio of children (0-17) is
``1 + effect`` (each child's expected after/before ratio, whatever their own rate; the
comparison group's is 1); the difference in differences is ``effect`` x the mean latent A&E
rate of the programme's children as the hub sees them (zero for those whose NHS records were
withheld under the National Data Opt-out), per 100 people; for adults (18+) the same
computation finds the few who were still 17 on the enrolment date. Outcomes with nothing
planted (emergency admissions, mental-health referrals) have a rate ratio of 1 and a
difference of 0.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import load_contracts
from pipelines.hub.area_reference import AREA_REFERENCE_FILE, load_area_reference
from pipelines.linkage.person_records import build_person_records
from pipelines.outcomes.effects.estimate import Band, analysis_frame, estimate_one
from pipelines.outcomes.record_attributes import build_record_attributes
from pipelines.outcomes.sql_models import HUB_SOURCES, check_graph, discover, run_model
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.partner_side import contract_datasets, prepare_place_dataset
from pipelines.tooling.synth import generate_place
from pipelines.tooling.synth.study import DELIVERED_AT

CHILDREN = Band("0-17", ("0-4", "5-10", "11-17"))
ADULTS = Band("18+", ("18-64", "65+"))


@dataclass(frozen=True)
class Estimate:
    """One interval from one place, against that place's truth."""

    seed: int
    effect: float  # the planted relative change
    target: str  # what is estimated: "A&E 0-17", or a null outcome
    measure: str  # "rate_ratio" or "rate_difference"
    truth: float
    estimate: float | None
    low: float | None
    high: float | None
    programme_families: int

    @property
    def covered(self) -> bool | None:
        return None if self.estimate is None else self.low <= self.truth <= self.high


def _landing(con: duckdb.DuckDBPyConnection, place: Path, work: Path) -> list[tuple]:
    """Every contract's datasets through the partner kit into ``landing``; the lookups for the truth."""
    contracts, problems = load_contracts(REPO_ROOT / "contracts")
    if problems:
        raise RuntimeError(f"contracts do not load: {sorted(str(p) for p in problems)}")
    key = LinkageKey.generate()
    sources, lookups = [], []
    for contract, dataset in contract_datasets(contracts.values()):
        prepared = prepare_place_dataset(contract, dataset, place, work / "outbox", key)
        columns = ", ".join(
            f'CAST("{c}" AS BIT) AS "{c}"' if c.endswith("_bloom") else f'"{c}"'
            for c in contract.datasets[dataset].columns
        )
        # The two columns ingest adds to every landed row (pipelines/hub/ingest.py).
        con.execute(
            f"CREATE TABLE landing.{dataset} AS SELECT {columns}, 'bench' AS _extract_id, "
            f"CAST(? AS TIMESTAMP) AS _received_at FROM read_parquet('{prepared.extract_path}')",
            [DELIVERED_AT.replace(tzinfo=None)],
        )
        sources.append((contract, dataset))
        lookups.append((dataset, prepared.lookup_path))
    build_person_records(con, sources)
    build_record_attributes(con, sources)
    return lookups


def build_hub(place: Path, work: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse for ``place`` with perfect linkage and every non-publish model run."""
    con = duckdb.connect()
    for schema in ("landing", "hub", "staging", "cohorts", "outcomes"):
        con.execute(f"CREATE SCHEMA {schema}")
    lookups = _landing(con, place, work)
    union = " UNION ALL ".join(
        f"SELECT '{d}' AS dataset, CAST(record_id AS VARCHAR) AS record_id, record_token "
        f"FROM read_parquet('{p}')"
        for d, p in lookups
    )
    con.execute(f"""
        CREATE TABLE hub.record_person AS
        SELECT r.dataset, r.partner_id, r.record_token, t.person_id AS person_key
        FROM hub.record_identity r
        JOIN ({union}) l USING (dataset, record_token)
        JOIN read_csv('{place / "truth" / "ground_truth.csv"}', all_varchar = true) t
          ON t.source = l.dataset AND t.record_id = l.record_id""")
    load_area_reference(con, place / "reference" / AREA_REFERENCE_FILE)
    models = {
        n: m for n, m in discover(REPO_ROOT / "dbt_like_sql").items() if m.schema != "publish"
    }
    landed = {
        f"landing.{t}"
        for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'landing'"
        ).fetchall()
    }
    for name in check_graph(models, HUB_SOURCES | landed):
        run_model(con, models[name])
    return con


def truth_for(
    con: duckdb.DuckDBPyConnection, place: Path, effect: float, band: Band
) -> dict[str, float]:
    """The true A&E effects in ``band`` on the hub's own programme cohort (see the module docstring).

    A programme member's expected after/before ratio is ``1 + effect`` if they were under 18 on
    their family's enrolment date (by exact date of birth: a few of the hub's 18-64 band were
    still 17), else 1; their latent rate weighs them in the band's ratio, and is zero where their
    NHS records were withheld."""
    rate, treated_rate, people = con.execute(
        f"""
        WITH truth AS (
            SELECT person_id,
                   CASE WHEN national_data_opt_out = 'true' THEN 0 ELSE CAST(ae_rate_per_year AS DOUBLE) END AS rate,
                   CAST(date_of_birth AS DATE) + INTERVAL 18 YEAR > CAST(enrolment_date AS DATE) AS treated
            FROM read_csv('{place / "truth" / "people.csv"}', all_varchar = true)
            WHERE enrolled = 'true')
        SELECT sum(rate), sum(CASE WHEN treated THEN rate ELSE 0 END), count(*)
        FROM (SELECT DISTINCT person_key FROM outcomes.person_periods
              WHERE cohort = 'programme' AND age_band IN (SELECT unnest(?))) p
        JOIN truth t ON t.person_id = p.person_key
    """,
        [list(band.members)],
    ).fetchall()[0]
    if not people or not rate:
        return {"rate_ratio": math.nan, "rate_difference": math.nan}
    return {
        "rate_ratio": (rate + effect * treated_rate) / rate,
        "rate_difference": effect * treated_rate / people * 100,
    }


TARGETS = (
    ("A&E 0-17", "ae_attendance", CHILDREN),
    ("A&E 18+", "ae_attendance", ADULTS),
    ("emergency admissions 0-17 (null)", "emergency_admission", CHILDREN),
    ("mental-health referrals 18+ (null)", "mental_health_referral", ADULTS),
)


def one_place(
    seed: int, people: int, effect: float, enrolment_share: float, root: Path
) -> list[Estimate]:
    work = root / f"place-{seed}"
    try:
        generate_place(
            people=people,
            seed=seed,
            out=work / "place",
            effect=effect,
            enrolment_share=enrolment_share,
        )
        con = build_hub(work / "place", work)
        try:
            truth = {
                band.label: truth_for(con, work / "place", effect, band)
                for band in (CHILDREN, ADULTS)
            }
            frame = analysis_frame(con)
        finally:
            con.close()
        found = []
        for target, outcome, band in TARGETS:
            subset = frame.filter(
                (pl.col("outcome") == outcome) & pl.col("age_band").is_in(list(band.members))
            )
            row = estimate_one(subset, outcome, band.label)
            for measure in ("rate_ratio", "rate_difference"):
                value = (
                    truth[band.label][measure]
                    if outcome == "ae_attendance"
                    else (1.0 if measure == "rate_ratio" else 0.0)
                )
                ok = row["status"] == "estimated"
                found.append(
                    Estimate(
                        seed,
                        effect,
                        target,
                        measure,
                        value,
                        row[measure] if ok else None,
                        row[f"{measure}_ci_low"] if ok else None,
                        row[f"{measure}_ci_high"] if ok else None,
                        int(row["programme_clusters"] or 0),
                    )
                )
        return found
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarise(estimates: list[Estimate]) -> pl.DataFrame:
    """Coverage, bias and interval width per planted effect, target and measure."""
    frame = pl.DataFrame([asdict(e) | {"covered": e.covered} for e in estimates])
    return summarise_frame(frame)


def summarise_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """:func:`summarise` on the per-place rows (as written to the JSON-lines file).

    ``bias`` is the mean of estimate - truth; for rate ratios ``log_bias`` is the mean of
    log(estimate) - log(truth), the scale the model works on (a ratio estimated from few events
    is skewed upwards on its own scale even when its logarithm is unbiased)."""
    ratio = pl.col("measure") == "rate_ratio"
    return (
        frame.group_by("effect", "target", "measure", maintain_order=True)
        .agg(
            places=pl.len(),
            estimated=pl.col("estimate").is_not_null().sum(),
            coverage=pl.col("covered").cast(pl.Float64).mean(),
            mean_truth=pl.col("truth").mean(),
            bias=(pl.col("estimate") - pl.col("truth")).mean(),
            log_bias=pl.when(ratio).then(pl.col("estimate").log() - pl.col("truth").log()).mean(),
            mean_width=(pl.col("high") - pl.col("low")).mean(),
            median_families=pl.col("programme_families").median(),
        )
        .sort("effect", "target", "measure")
    )


def coverage_interval(covered: int, places: int) -> tuple[float, float]:
    """Wilson 95% interval of a coverage proportion (statsmodels)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(covered, places, alpha=0.05, method="wilson")
    return float(low), float(high)


def markdown(summary: pl.DataFrame, people: int, enrolment_share: float, seconds: float) -> str:
    """The coverage table for docs/outcomes.md. ``bias / effect`` compares the bias with the size
    of the planted effect on that measure (rate ratio: on the log scale)."""
    lines = [
        f"{people:,} people per place, enrolment share {enrolment_share:g}; {seconds / 60:.0f} min.",
        "",
        "| planted effect | target | measure | places | estimated | coverage (95% CI) | mean truth | bias "
        "| bias of log | \\|bias\\| / effect | mean CI width | median families |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary.iter_rows(named=True):
        covered = round(r["coverage"] * r["estimated"]) if r["coverage"] is not None else 0
        low, high = (
            coverage_interval(covered, r["estimated"]) if r["estimated"] else (math.nan, math.nan)
        )
        ratio = r["measure"] == "rate_ratio"
        size = abs(math.log(r["mean_truth"])) if ratio else abs(r["mean_truth"])
        bias = r["log_bias"] if ratio else r["bias"]
        planted = (
            r["target"] == "A&E 0-17" and r["effect"] != 0
        )  # the one effect large enough to compare with
        share = f"{abs(bias) / size:.3f}" if planted and bias is not None else "-"
        log_bias = f"{r['log_bias']:+.3f}" if ratio else ""
        lines.append(
            f"| {r['effect']:+.2f} | {r['target']} | {r['measure']} | {r['places']} | {r['estimated']} | "
            f"{r['coverage']:.3f} ({low:.3f}-{high:.3f}) | {r['mean_truth']:.3f} | {r['bias']:+.3f} | {log_bias} | "
            f"{share} | {r['mean_width']:.3f} | {r['median_families']:.0f} |"
        )
    return "\n".join(lines)


def run(
    seeds: range,
    people: int,
    effects: tuple[float, ...],
    enrolment_share: float,
    out: Path | None = None,
    echo=print,
) -> pl.DataFrame:
    """Every seed at every planted effect; writes the per-place estimates (JSON lines) to ``out``
    as it goes, so a long run can be followed and resumed figures are not lost."""
    started = time.perf_counter()
    estimates: list[Estimate] = []
    with tempfile.TemporaryDirectory(prefix="placelink-validity-") as tmp:
        for i, seed in enumerate(seeds):
            for effect in effects:
                found = one_place(seed, people, effect, enrolment_share, Path(tmp))
                estimates += found
                if out is not None:
                    with out.open("a", encoding="utf-8") as f:
                        for e in found:
                            f.write(json.dumps(asdict(e) | {"covered": e.covered}) + "\n")
            if (i + 1) % 10 == 0:
                echo(f"{i + 1} seeds done ({time.perf_counter() - started:.0f} s)")
    summary = summarise(estimates)
    echo(markdown(summary, people, enrolment_share, time.perf_counter() - started))
    return summary
