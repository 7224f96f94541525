"""End to end on a synthetic place: linkage plus the SQL models recover the planted effect, the
analysts' README examples run against the published file, and the report renders.

The place has 12,000 people (the session's `small_place` of 3,000 has too few enrolled children
for a before/after comparison to mean anything once counts are rounded to 5).
"""
from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.definitions import defs
from pipelines.resources import PlacelinkResource
from pipelines.settings import REPO_ROOT
from tests.browser import rendered_dom
from tests.conftest import prepare_place

CHILD_BANDS = ("0-4", "5-10", "11-17")


@pytest.fixture(scope="module")
def outcomes_hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("outcomes_place")
    place = prepare_place(people=12_000, seed=23, root=root)
    settings = place.stage_hub(root / "hub")
    result = dg.materialize(list(defs.assets), resources={"placelink": PlacelinkResource(
        home=str(settings.home), contracts_dir=str(settings.contracts_dir))})
    assert result.success
    return place, settings


def _children_ae(con, cohort: str) -> dict[str, int | None]:
    """period -> published A&E attendances of children (the '0-17' subtotal row)."""
    return dict(con.execute(
        "SELECT period, events FROM outcomes_before_after "
        "WHERE outcome = 'ae_attendance' AND cohort = ? AND age_band = '0-17'", [cohort]).fetchall())


def _visible_truth(place: Path) -> dict[str, int]:
    """A&E attendances, per window, of the planted-effect children that the hub can see.

    From the synthetic truth: children in enrolled families, minus people who opted out of
    sharing NHS data (their rows never leave the NHS partner), with age judged as the models
    must judge it, from the year of birth. A perfect linkage would publish exactly these counts.
    """
    con = duckdb.connect()
    try:
        return dict(con.execute(f"""
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
            GROUP BY ALL""").fetchall())
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
    assert before is not None and after is not None, "the children's row is redacted: place too small"
    # Programme children. Tolerance: rounding to 5 moves a count by at most 2; linkage errors
    # (pairwise precision and recall above 0.99 on this place, and one missed link loses all of a
    # child's events) are allowed 3% of the count. Opt-outs and year-of-birth ages are already in
    # the visible truth, so nothing else may differ.
    rounding, linkage = 2, 0.03
    for period, published in (("before", before), ("after", after)):
        true = visible[period]
        assert true * (1 - linkage) - rounding <= published <= true * (1 + linkage) + rounding, (period, published, true)
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


def _readme_examples(published: Path) -> list[tuple[str, str]]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## For analysts", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(sh|python)\n(.*?)```", section, re.DOTALL)
    return [(kind, code.replace(".placelink/published/shared_outcomes.duckdb", str(published)))
            for kind, code in blocks]


def test_readme_examples_for_analysts_run_against_the_published_file(outcomes_hub, capsys):
    _, settings = outcomes_hub
    examples = _readme_examples(settings.published)
    assert {k for k, _ in examples} == {"sh", "python"} and len(examples) >= 3
    for kind, code in examples:
        if kind == "sh":
            # `duckdb -readonly FILE "SQL"`: the same query through DuckDB's Python API.
            words = shlex.split(code.replace("\\\n", " "))
            assert words[:3] == ["duckdb", "-readonly", str(settings.published)], code
            con = duckdb.connect(words[2], read_only=True)
            try:
                assert con.execute(words[3]).fetchall(), f"README query returned no rows: {words[3]}"
            finally:
                con.close()
        else:
            exec(compile(code, "README.md (For analysts)", "exec"), {})
    shown = capsys.readouterr().out
    assert "redacted_cells" in shown and "disclosure_rule" in shown and "absence_rate_pct" in shown


def test_outcomes_report_renders_each_outcome_with_suppressed_cells_marked(outcomes_hub):
    _, settings = outcomes_hub
    page = settings.reports / "outcomes.html"
    dom = rendered_dom(page)
    for outcome in ("ae attendance", "emergency admission", "mental health referral",
                    "childrens social care referral", "homelessness application", "school absence"):
        assert f"<h2>{outcome}</h2>" in dom
    assert dom.count("<svg") >= 6  # a chart per outcome, drawn without any script or network
    con = duckdb.connect(str(settings.published), read_only=True)
    try:
        redacted_rates = con.execute("SELECT count(*) FROM outcomes_before_after "
                                     "WHERE events_per_100_people IS NULL").fetchall()[0][0]
    finally:
        con.close()
    # every hidden rate is labelled in the tables (and drawn as a placeholder in the charts)
    assert dom.count('class="suppressed"') >= redacted_rates > 0
    assert "http://" not in dom.split("<body>", 1)[1].replace("http://www.w3.org", "")


def test_asset_graph_shows_the_path_from_extracts_to_published_tables():
    graph = defs.resolve_asset_graph()

    def upstream(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key.split("/"))).parent_keys}

    assert "landing/ae_attendances" in upstream("staging/outcome_events")
    assert "hub/record_person" in upstream("staging/outcome_events")
    assert {"cohorts/programme_cohort", "staging/persons", "staging/outcome_events"} <= upstream("cohorts/comparison_group")
    assert "outcomes/person_outcomes" in upstream("publish/outcomes_before_after")
    assert "publish/school_attendance_by_ward" in upstream("published/shared_outcomes")
    assert upstream("reports/outcomes") == {"published/shared_outcomes"}
