"""`placelink bench linkage` end to end on a small place (slow: three linkages and two trainings)."""

import datetime as dt
import json

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.warehouse_schema import migrate
from pipelines.linkage.person_keys import assign_person_keys
from pipelines.tooling.bench.linkage import _reset_keys


def test_the_benchs_next_month_starts_from_no_keys_on_the_hubs_own_tables():
    """The key-stability step forgets every key and links again, as a new hub would. It used to
    drop the key tables, and the next linkage failed on the missing register (the slow test below
    is the only one that reaches that step end to end)."""
    con = duckdb.connect()
    migrate(con, dt.datetime(2026, 10, 1))
    clusters = pl.DataFrame(
        {"identity_id": ["a", "b", "c"], "cluster_id": ["c1", "c1", "c2"]},
        schema={"identity_id": pl.String, "cluster_id": pl.String},
    )
    assign_person_keys(con, clusters, now=dt.datetime(2026, 10, 1))
    _reset_keys(con)
    for table in ("person_keys", "person_key_register", "person_key_events", "linkage_runs"):
        assert con.execute(f"SELECT count(*) FROM hub.{table}").fetchone() == (0,)
    changes = assign_person_keys(con, clusters, now=dt.datetime(2026, 11, 1))
    assert changes.new == 2
    assert con.execute("SELECT count(DISTINCT person_key) FROM hub.person_keys").fetchone() == (2,)


@pytest.mark.slow
def test_bench_linkage_compares_tokens_with_both_baselines(tmp_path):
    out = tmp_path / "bench.json"
    # Not the default seed: at this size it gives the VCS partner 8 enrolments and not one NHS
    # number, and the hub's quality gate holds an extract with an all-empty column.
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "linkage",
            "--people",
            "1500",
            "--seed",
            "11",
            "--work",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "clear text" in result.output and "NHS number only" in result.output
    (bench,) = json.loads(out.read_text())
    methods = bench["methods"]
    tokens, clear, nhs = (
        methods[m]["identity_records"]["f1"] for m in ("tokens", "clear_text", "nhs_number_only")
    )
    assert abs(tokens - clear) < 0.02 and tokens > nhs + 0.1
    assert methods["tokens"]["vcs"]["f1"] > methods["nhs_number_only"]["vcs"]["f1"] + 0.3
    assert bench["stability"]["unchanged inputs: identity records with a changed key"] == 0
