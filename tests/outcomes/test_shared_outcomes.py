"""End to end on a synthetic place (the session's 12,000-person `outcomes_hub`): linkage plus the
SQL models recover the planted effect, the effects, balance and sensitivity tables are published
under disclosure control, two runs on the same records publish the same tables, and the report
renders with its forest plot.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.linkage import threshold_in_use
from pipelines.orchestration.code_location import defs
from pipelines.outcomes.effects import write_estimates, write_linkage_sensitivity
from pipelines.outcomes.effects.estimate import COHORTS, PERIODS
from pipelines.outcomes.sql_models import HUB_SOURCES, check_graph, discover, run_model
from pipelines.publish.effects import derived_tables
from pipelines.publish.published_file import publish
from tests.browser import rendered_dom

CHILD_BANDS = ("0-4", "5-10", "11-17")


def _children_ae(con, cohort: str) -> dict[str, int | None]:
    """period -> published A&E attendances of children (the '0-17' subtotal row)."""
    return dict(
        con.execute(
            "SELECT period, events FROM outcomes_before_after "
            "WHERE outcome = 'ae_attendance' AND cohort = ? AND age_band = '0-17'",
            [cohort],
        ).fetchall()
    )


def _visible_truth(place: Path) -> dict[str, int]:
    """A&E attendances, per window, of the planted-effect children that the hub can see.

    From the synthetic truth: children in enrolled families, minus people who opted out of
    sharing NHS data (their rows never leave the NHS partner), with age judged as the models
    must judge it, from the year of birth. A perfect linkage would publish exactly these counts.
    """
    con = duckdb.connect()
    try:
        return dict(
            con.execute(f"""
            WITH children AS (
                SELECT person_id, CAST(enrolment_date AS DATE) AS index_date
                FROM read_csv('{place}/truth/people.csv', all_varchar = true)
                WHERE enrolled = 'true' AND national_data_opt_out = 'false'
                  AND year(CAST(enrolment_date AS DATE)) - year(CAST(date_of_birth AS DATE)) < 18),
            ae AS (
                SELECT g.person_id, CAST(a.arrival_date AS DATE) AS day
                FROM read_csv('{place}/raw/nhs/ae_attendances.csv', all_varchar = true) a
                JOIN read_csv('{place}/truth/ground_truth.csv', all_varchar = true) g
                  ON g.source = 'ae_attendances' AND g.record_id = a.record_id)
            SELECT CASE WHEN day < index_date THEN 'before' ELSE 'after' END, count(*)
            FROM children JOIN ae USING (person_id)
            WHERE day >= index_date - INTERVAL 12 MONTH AND day < index_date + INTERVAL 12 MONTH
            GROUP BY ALL""").fetchall()
        )
    finally:
        con.close()


def test_published_before_after_recovers_the_planted_effect(outcomes_hub):
    place, settings = outcomes_hub
    realised = json.loads((place.place / "truth" / "planted_effect.json").read_text())["realised"]
    visible = _visible_truth(place.place)
    con = duckdb.connect(str(settings.published), read_only=True)
    try:
        programme, comparison = _children_ae(con, "programme"), _children_ae(con, "comparison")
    finally:
        con.close()
    before, after = programme["before"], programme["after"]
    assert before is not None and after is not None, (
        "the children's row is redacted: place too small"
    )
    # Programme children. Tolerance: rounding to 5 moves a count by at most 2; linkage errors
    # (pairwise precision and recall above 0.99 on this place, and one missed link loses all of a
    # child's events) are allowed 3% of the count. Opt-outs and year-of-birth ages are already in
    # the visible truth, so nothing else may differ.
    rounding, linkage = 2, 0.03
    for period, published in (("before", before), ("after", after)):
        true = visible[period]
        assert true * (1 - linkage) - rounding <= published <= true * (1 + linkage) + rounding, (
            period,
            published,
            true,
        )
    # The published change is the planted one: the realised after/before ratio of the visible children
    # lies inside what the published counts allow, and the published change is a fall.
    low = (after - rounding) * (1 - linkage) / ((before + rounding) * (1 + linkage))
    high = (after + rounding) * (1 + linkage) / ((before - rounding) * (1 - linkage))
    assert low <= visible["after"] / visible["before"] <= high
    assert high < 1.0, (before, after)
    # (The realised ratio over all enrolled children, opted-out ones included, is in the truth file
    # too; opt-outs remove whole heavy users, so at this size it can differ by more than rounding.)
    assert realised["attendances_before"] >= visible["before"]
    # The comparison group must not show it: no effect is planted there, so after/before is 1 up to
    # Poisson noise: within 3.3 standard errors of the log ratio (two-sided 0.1%), plus rounding.
    # The test has power: the planted -30% lies outside that band.
    c_before, c_after = comparison["before"], comparison["after"]
    spread = 3.3 * math.sqrt(1 / c_before + 1 / c_after) + 2 * rounding / c_before
    assert abs(math.log(c_after / c_before)) <= spread, (c_before, c_after)
    assert math.log(1 - 0.30) < -spread, spread


def test_outcomes_report_renders_each_outcome_with_suppressed_cells_marked(outcomes_hub):
    _, settings = outcomes_hub
    page = settings.reports / "outcomes.html"
    dom = rendered_dom(page)
    for outcome in (
        "A&amp;E attendances",
        "Emergency admissions",
        "Mental-health referrals",
        "Children's social-care referrals",
        "Homelessness applications",
        "School absence",
    ):
        assert f"<h2>{outcome}</h2>" in dom
    assert (
        dom.count("<svg") >= 7
    )  # a chart per outcome and the forest plot, drawn without any script or network
    con = duckdb.connect(str(settings.published), read_only=True)
    try:
        redacted_rates = con.execute(
            "SELECT count(*) FROM outcomes_before_after WHERE events_per_100_people IS NULL"
        ).fetchall()[0][0]
        estimated = con.execute(
            "SELECT count(*) FROM effects WHERE status = 'estimated' "
            "AND age_band IN ('0-17', '18+', 'All ages')"
        ).fetchall()[0][0]
    finally:
        con.close()
    # every hidden rate is labelled in the tables (and drawn as a placeholder in the charts)
    assert dom.count('class="suppressed"') >= redacted_rates > 0
    assert "http://" not in dom.split("<body>", 1)[1].replace("http://www.w3.org", "")
    # the forest plot: one interval per published headline estimate, and the line of no effect
    effects = dom.split('id="effects"', 1)[1].split("</section>", 1)[0]
    forest = effects.split('class="chart forest">', 1)[1].split("</svg>", 1)[0]
    assert estimated > 0 and "rate ratio" in forest and "A&amp;E attendances · 0-17" in forest
    assert forest.count(" to ") >= estimated  # each interval labelled "0.62 (0.38 to 1.02)"
    assert 'id="balance"' in dom and "SMD after" in dom and 'id="linkage-sensitivity"' in dom
    # bands that add up other bands say so
    assert "0-17 (subtotal)" in dom and "All ages (total)" in dom
    assert "no one was in 65+, so it equals 18-64" in dom


def test_asset_graph_shows_the_path_from_extracts_to_published_tables():
    graph = defs.resolve_asset_graph()

    def upstream(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key.split("/"))).parent_keys}

    assert "landing/ae_attendances" in upstream("staging/outcome_events")
    assert "hub/record_person" in upstream("staging/outcome_events")
    assert {"cohorts/programme_cohort", "staging/persons", "staging/outcome_events"} <= upstream(
        "cohorts/matching_candidates"
    )
    assert upstream("cohorts/comparison_group") == {"cohorts/matching_candidates"}
    assert {
        "effects/estimates",
        "effects/linkage_sensitivity",
        "cohorts/matching_balance",
    } <= upstream("published/shared_outcomes")
    assert "outcomes/person_clusters" in upstream("effects/estimates")
    assert "outcomes/person_outcomes" in upstream("publish/outcomes_before_after")
    assert "publish/school_attendance_by_ward" in upstream("published/shared_outcomes")
    assert upstream("reports/outcomes") == {"published/shared_outcomes"}


def _published(settings, sql: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(settings.published), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_effects_balance_and_sensitivity_are_published_with_a_comment_on_every_column(outcomes_hub):
    _, settings = outcomes_hub
    for table in (
        "effects",
        "matching_balance",
        "effects_linkage_sensitivity",
        "_lineage",
        "_definitions",
        "_about",
    ):
        table_comment = _published(
            settings, "SELECT comment FROM duckdb_tables() WHERE table_name = ?", [table]
        )
        assert table_comment and table_comment[0][0], table
        columns = _published(
            settings,
            "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = ?",
            [table],
        )
        assert columns and all(comment for _, comment in columns), (table, columns)
    assert (
        len(_published(settings, "SELECT * FROM effects")) == 6 * 8
    )  # outcomes x (5 bands + 0-17, 18+, All ages)
    about = dict(_published(settings, "SELECT key, value FROM _about"))
    parameters = json.loads(about["effects_parameters"])
    assert parameters["confidence"] == 0.95 and "cluster" in parameters["standard_errors"]
    # the looser and stricter thresholds around the one persons were cut at (calibrated by the first run)
    assert json.loads(about["linkage_sensitivity_thresholds"]) == [
        0.5,
        threshold_in_use(settings),
        0.99,
    ]
    kinds = {k for (k,) in _published(settings, "SELECT DISTINCT kind FROM _definitions")}
    assert kinds == {"cohort", "outcome", "table", "method", "model"}
    labels = dict(
        _published(settings, "SELECT name, label FROM _definitions WHERE kind = 'outcome'")
    )
    assert labels["ae_attendance"] == "A&E attendances"
    # _lineage names the agreements behind the new tables too
    assert {"effects", "matching_balance"} <= {
        t for (t,) in _published(settings, "SELECT DISTINCT published_table FROM _lineage")
    }


def test_every_published_effect_rests_on_visible_cells_only(outcomes_hub):
    _, settings = outcomes_hub
    cells = {
        (o, b, c, p): (people, events)
        for o, b, c, p, people, events in _published(
            settings,
            "SELECT outcome, age_band, cohort, period, people, events FROM outcomes_before_after",
        )
    }
    rows = _published(
        settings,
        "SELECT outcome, age_band, rate_ratio, status FROM effects "
        "WHERE outcome <> 'school_absence'",
    )
    published = [(o, b) for o, b, ratio, _ in rows if ratio is not None]
    hidden = [(o, b) for o, b, _, status in rows if status.startswith("hidden")]
    assert published and hidden
    for outcome, band in published:
        assert all(None not in cells[outcome, band, c, p] for c in COHORTS for p in PERIODS), (
            outcome,
            band,
        )
    # and every hidden one rests on at least one redacted or too-small cell
    for outcome, band in hidden:
        assert any(
            None in cells.get((outcome, band, c, p), (None,)) for c in COHORTS for p in PERIODS
        ), (outcome, band)


def test_published_rate_ratio_is_that_of_the_published_rates(outcomes_hub):
    _, settings = outcomes_hub
    ((ratio, low, high, difference),) = _published(
        settings,
        "SELECT rate_ratio, rate_ratio_ci_low, rate_ratio_ci_high, rate_difference FROM effects "
        "WHERE outcome = 'ae_attendance' AND age_band = 'All ages'",
    )
    rates = {
        (c, p): r
        for c, p, r in _published(
            settings,
            "SELECT cohort, period, events_per_100_people FROM outcomes_before_after "
            "WHERE outcome = 'ae_attendance' AND age_band = 'All ages'",
        )
    }
    from_rates = (rates["programme", "after"] / rates["programme", "before"]) / (
        rates["comparison", "after"] / rates["comparison", "before"]
    )
    assert abs(ratio - from_rates) <= 0.01 and low < ratio < high
    change = (rates["programme", "after"] - rates["programme", "before"]) - (
        rates["comparison", "after"] - rates["comparison", "before"]
    )
    assert abs(difference - change) <= 0.1


def _rebuild(warehouse: Path, target: Path, shuffle: bool) -> None:
    """Re-run every model, the effects and the publication on a copy of ``warehouse``; with
    ``shuffle``, the landed records and the linkage output are first stored in a random order
    (the same records: a run reads them in whatever order they were written)."""
    copy = target.with_suffix(".warehouse.duckdb")
    shutil.copy(warehouse, copy)
    con = duckdb.connect(str(copy))
    try:
        if shuffle:
            for schema, name in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE schema_name IN ('landing', 'hub')"
            ).fetchall():
                con.execute(
                    f'CREATE OR REPLACE TABLE {schema}."{name}" AS '
                    f'SELECT * FROM {schema}."{name}" ORDER BY random()'
                )
        models = discover(Path(__file__).resolve().parents[2] / "dbt_like_sql")
        landed = {
            f"landing.{t}"
            for (t,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'landing'"
            ).fetchall()
        }
        for name in check_graph(models, HUB_SOURCES | landed):
            run_model(con, models[name])
        write_estimates(con, models)
        write_linkage_sensitivity(con, models, HUB_SOURCES, 0.9, (0.5, 0.99))
        publish(con, models, target, definitions=[], lineage=[], derived=derived_tables(con))
    finally:
        con.close()


def test_two_runs_on_the_same_records_publish_the_same_tables(outcomes_hub, tmp_path):
    _, settings = outcomes_hub
    first, second = tmp_path / "first.duckdb", tmp_path / "second.duckdb"
    _rebuild(settings.warehouse, first, shuffle=False)
    _rebuild(settings.warehouse, second, shuffle=True)
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{first}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{second}' AS b (READ_ONLY)")
        tables = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = 'a' "
                "AND table_name NOT IN ('_about', '_lineage', '_definitions')"
            ).fetchall()
        ]
        assert {
            "outcomes_before_after",
            "effects",
            "matching_balance",
            "effects_linkage_sensitivity",
        } <= set(tables)
        for table in tables:
            for x, y in (("a", "b"), ("b", "a")):
                differ = con.execute(
                    f'SELECT count(*) FROM (SELECT * FROM {x}."{table}" '
                    f'EXCEPT ALL SELECT * FROM {y}."{table}")'
                ).fetchall()[0][0]
                assert differ == 0, f"{table}: {differ} rows of {x} are not in {y}"
    finally:
        con.close()


def test_reclustering_at_the_main_threshold_reproduces_the_main_effects(outcomes_hub, tmp_path):
    _, settings = outcomes_hub
    sensitivity = _published(
        settings,
        "SELECT outcome, age_band, analysis, rate_ratio, rate_ratio_ci_low "
        "FROM effects_linkage_sensitivity",
    )
    main = {(o, b): (r, low) for o, b, analysis, r, low in sensitivity if analysis == "main"}
    effects = {
        (o, b): (r, low)
        for o, b, r, low in _published(
            settings, "SELECT outcome, age_band, rate_ratio, rate_ratio_ci_low FROM effects"
        )
    }
    assert main and all(effects[k] == v for k, v in main.items())
    assert {a for _, _, a, _, _ in sensitivity} == {"main", "looser", "stricter"}
    # re-clustering the kept pairs at the main threshold gives back the main run's persons exactly
    from pipelines.outcomes.effects import HEADLINE_BANDS, effect_bands
    from pipelines.outcomes.effects.sensitivity import estimates_at_threshold

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(settings.warehouse, copy)
    con = duckdb.connect(str(copy))
    try:
        models = discover(Path(__file__).resolve().parents[2] / "dbt_like_sql")
        bands = [b for b in effect_bands(con, models) if b.label in HEADLINE_BANDS]
        again, _ = estimates_at_threshold(
            con, models, HUB_SOURCES, threshold_in_use(settings), bands
        )
        stored = con.sql("SELECT outcome, age_band, rate_ratio FROM effects.estimates").fetchall()
    finally:
        con.close()
    stored = {(o, b): r for o, b, r in stored}
    compared = 0
    for row in again.iter_rows(named=True):
        expected = stored[row["outcome"], row["age_band"]]
        if expected is None:
            assert row["rate_ratio"] is None
        else:
            assert row["rate_ratio"] == pytest.approx(expected, rel=1e-9)
            compared += 1
    assert compared >= 3
