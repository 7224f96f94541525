"""Publishing: only described, disclosure-controlled aggregates reach the analysts' file, atomically."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import duckdb
import pytest

import pipelines.publish.published_file as publish_module
from pipelines.outcomes.sql_models import check_graph, discover, run_model
from pipelines.publish.published_file import PublishRefused, publish

GOOD = """/*
description: People by cohort and age band.
dimensions: [cohort, age_band]
counts: [people]
totals: {age_band: All ages}
columns:
  cohort: The cohort.
  age_band: Age band, or 'All ages'.
  people: People (rounded to 5; NULL = redacted).
*/
SELECT cohort, age_band, count(*) AS people FROM src.persons GROUP BY ALL
"""


def _models(folder: Path, **publish_sql: str):
    for name, sql in publish_sql.items():
        path = folder / "publish" / f"{name}.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql)
    return discover(folder)


@pytest.fixture()
def warehouse():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA src; CREATE SCHEMA publish")
    con.execute("""CREATE TABLE src.persons AS
        SELECT 'P' || i AS person_key, CASE WHEN i % 2 = 0 THEN 'programme' ELSE 'comparison' END AS cohort,
               CASE WHEN i < 6 THEN '0-4' WHEN i < 60 THEN '5-10' ELSE '11-17' END AS age_band
        FROM range(200) t(i)""")
    yield con
    con.close()


def _build(con, models, target, now=None):
    for name in check_graph(models, {"src.persons"}):
        run_model(con, models[name])
    return publish(
        con,
        models,
        target,
        definitions=list(models.values()),
        lineage=[{"contract_id": "c1"}],
        now=now,
    )


def test_published_tables_carry_comments_versions_and_definitions(warehouse, tmp_path):
    models = _models(tmp_path / "sql", by_age=GOOD)
    target = tmp_path / "published" / "shared.duckdb"
    [table] = _build(warehouse, models, target)
    assert (
        table.name == "by_age" and table.redacted_cells >= 2
    )  # the 3 small cells and their complements
    con = duckdb.connect(str(target), read_only=True)
    try:
        comments = dict(
            con.execute(
                "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'by_age'"
            ).fetchall()
        )
        assert comments["people"] == "People (rounded to 5; NULL = redacted)."
        assert con.execute(
            "SELECT comment FROM duckdb_tables() WHERE table_name = 'by_age'"
        ).fetchall() == [("People by cohort and age band.",)]
        about = dict(con.execute("SELECT key, value FROM _about").fetchall())
        sha = hashlib.sha256(
            (tmp_path / "sql" / "publish" / "by_age.sql").read_bytes()
        ).hexdigest()[:16]
        assert json.loads(about["model_versions"]) == {"publish.by_age": sha}
        assert json.loads(about["disclosure_parameters"]) == {"threshold": 7, "rounding_base": 5}
        assert json.loads(about["disclosure_margins"])["by_age"]["totals"] == {
            "age_band": "All ages"
        }
        assert "secondary suppression" in about["disclosure_rule"]
        # no cell can be recovered by subtraction from 'All ages'
        rows = con.execute("SELECT cohort, age_band, people FROM by_age").fetchall()
        for cohort in ("programme", "comparison"):
            redacted = [r for r in rows if r[0] == cohort and r[2] is None]
            assert len(redacted) != 1
    finally:
        con.close()


@pytest.mark.parametrize(
    "sql, message",
    [
        (
            "/*\ndescription: rows\ndimensions: [person_key]\ncounts: [people]\ncolumns: {person_key: k, people: n}\n*/\n"
            "SELECT person_key, 1 AS people FROM src.persons",
            r"person_key identify people",
        ),
        (
            "/*\ndescription: rows\ndimensions: [cohort]\ncounts: [people]\ncolumns: {cohort: c, people: n}\n*/\n"
            "SELECT cohort, age_band, count(*) AS people FROM src.persons GROUP BY ALL",
            r"age_band are neither a declared",
        ),
        (
            "/*\ndescription: rows\ndimensions: [row_no]\ncounts: [people]\ncolumns: {row_no: r, people: n}\n*/\n"
            "SELECT row_number() OVER () AS row_no, 10 AS people FROM src.persons",
            r"'row_no' has a different value on every",
        ),
        (
            "/*\ndescription: rows\ndimensions: [cohort, age_band, k]\ncounts: [people]\npopulation: people\n"
            "columns: {cohort: c, age_band: a, k: k, people: n}\n*/\n"
            "SELECT cohort, age_band, hash(person_key) % 50 AS k, 1 AS people FROM src.persons",
            r"at most one person",
        ),
        (
            "/*\ndescription: rows\ndimensions: [cohort]\ncounts: [people]\ncolumns: {cohort: c}\n*/\n"
            "SELECT cohort, count(*) AS people FROM src.persons GROUP BY ALL",
            r"column\(s\) people has no description",
        ),
        (
            "-- description: no counts\nSELECT cohort FROM src.persons GROUP BY ALL",
            r"must declare its count columns",
        ),
        (
            "/*\ndescription: x\ndimensions: [cohort]\ncounts: [people]\ntotals: [cohort]\ncolumns: {cohort: c, people: n}\n*/\n"
            "SELECT cohort, count(*) AS people FROM src.persons GROUP BY ALL",
            r"'totals' must look like",
        ),
        (
            "/*\ndescription: x\ndimensions: [cohort]\ncounts: [people]\nrates: ['r = people per 100']\n"
            "columns: {cohort: c, people: n}\n*/\nSELECT cohort, count(*) AS people FROM src.persons GROUP BY ALL",
            r"numerator / denominator",
        ),
    ],
)
def test_row_level_or_undeclared_tables_are_refused_and_nothing_is_published(
    warehouse, tmp_path, sql, message
):
    models = _models(tmp_path / "sql", good=GOOD, bad=sql)
    target = tmp_path / "published" / "shared.duckdb"
    with pytest.raises(PublishRefused, match=r"publish/bad\.sql: .*" + message):
        _build(warehouse, models, target)
    assert not target.exists()


def test_an_analyst_reading_the_file_keeps_working_while_it_is_republished(
    warehouse, tmp_path, monkeypatch
):
    models = _models(tmp_path / "sql", by_age=GOOD)
    target = tmp_path / "published" / "shared.duckdb"
    first = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    _build(warehouse, models, target, now=first)
    analyst = duckdb.connect(str(target), read_only=True)
    query = "SELECT value FROM _about WHERE key = 'built_at'"
    assert analyst.execute(query).fetchall() == [("2026-10-01T00:00:00+00:00",)]

    seen_during_build = []
    real_replace = os.replace

    def replace_and_look(src, dst):
        # Just before the swap the new file is complete, and the published one is still the old one:
        # a new reader opens it read-only and sees the old build, whole.
        reader = duckdb.connect(str(dst), read_only=True)
        seen_during_build.append(reader.execute(query).fetchall()[0][0])
        reader.close()
        seen_during_build.append(analyst.execute("SELECT count(*) FROM by_age").fetchall()[0][0])
        real_replace(src, dst)

    monkeypatch.setattr(publish_module.os, "replace", replace_and_look)
    _build(warehouse, models, target, now=first + dt.timedelta(days=31))
    assert seen_during_build[0] == "2026-10-01T00:00:00+00:00" and seen_during_build[1] > 0
    # the analyst's open connection still answers (from the build it opened) ...
    assert analyst.execute(query).fetchall() == [("2026-10-01T00:00:00+00:00",)]
    assert (
        analyst.execute("SELECT sum(people) FROM by_age WHERE age_band = 'All ages'").fetchall()[0][
            0
        ]
        == 200
    )
    analyst.close()
    # ... and a new connection sees the new build; no half-written file is left behind
    fresh = duckdb.connect(str(target), read_only=True)
    assert fresh.execute(query).fetchall() == [("2026-11-01T00:00:00+00:00",)]
    fresh.close()
    assert sorted(p.name for p in target.parent.iterdir()) == ["shared.duckdb"]
