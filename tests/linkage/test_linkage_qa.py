"""Linkage QA: the summary a reviewer reads, the report, and the check that blocks a bad run."""

import datetime as dt

import duckdb
import pytest

from assets.linkage import plausible_linkage
from assets.resources import PlacelinkResource
from pipelines.core.settings import Settings
from pipelines.core.warehouse import connect
from pipelines.core.warehouse_schema import migrate
from pipelines.linkage.model import TrainedModel, match_weights_chart, splink_settings
from pipelines.linkage.person_records import LINKAGE_FEATURES
from pipelines.linkage.qa import (
    check_linkage,
    linkage_qa,
    previous_link_rate,
    record_linkage_run,
    write_qa_report,
)
from tests.browser import rendered_dom


def _warehouse() -> duckdb.DuckDBPyConnection:
    """An in-memory warehouse with the hub's tables (hub.linkage_runs among them)."""
    con = duckdb.connect()
    migrate(con, dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    return con


def plant(con, persons: list[list[str]]) -> None:
    """hub.person_records and hub.person_keys for persons given as lists of partner ids."""
    rows = [
        (f"id{p}-{i}", partner, f"PK{p}")
        for p, members in enumerate(persons)
        for i, partner in enumerate(members)
    ]
    con.execute("CREATE SCHEMA IF NOT EXISTS hub")
    con.execute(
        "CREATE OR REPLACE TABLE hub.person_records (unique_id VARCHAR, partner_id VARCHAR)"
    )
    con.execute("CREATE OR REPLACE TABLE hub.person_keys (identity_id VARCHAR, person_key VARCHAR)")
    con.executemany("INSERT INTO hub.person_records VALUES (?, ?)", [(i, p) for i, p, _ in rows])
    con.executemany("INSERT INTO hub.person_keys VALUES (?, ?)", [(i, k) for i, _, k in rows])


NORMAL = (
    [["nhs", "council"]] * 30 + [["nhs"]] * 50 + [["vcs", "nhs", "council"]] * 10 + [["vcs"]] * 10
)


def test_summary_counts_match_rates_and_records_linked_to_nobody():
    con = _warehouse()
    plant(con, NORMAL)
    qa = linkage_qa(con)
    assert (qa.identity_records, qa.persons, qa.max_cluster_size) == (60 + 50 + 30 + 10, 100, 3)
    assert qa.link_rate == pytest.approx(90 / 150)
    assert dict(((a, b), r) for a, b, _, r in qa.partner_match)[("vcs", "nhs")] == pytest.approx(
        0.5
    )
    assert dict(((a, b), r) for a, b, _, r in qa.partner_match)[
        ("council", "vcs")
    ] == pytest.approx(10 / 40)
    assert qa.unlinked_share("nhs") == pytest.approx(50 / 90)
    assert qa.unlinked_share("council") == 0
    assert qa.cluster_sizes == [(1, 60), (2, 30), (3, 10)]


def test_check_fails_on_a_planted_giant_cluster_and_passes_without_it():
    con = _warehouse()
    plant(con, NORMAL)
    assert check_linkage(
        linkage_qa(con), None, max_cluster_size=40, max_link_rate_change=0.05
    ).passed
    plant(con, NORMAL + [["nhs"] * 300])  # a dummy NHS number shared by 300 registrations
    outcome = check_linkage(linkage_qa(con), None, max_cluster_size=40, max_link_rate_change=1.0)
    assert not outcome.passed
    assert "over-linking" in outcome.problems[0] and "largest: 300" in outcome.problems[0]


def test_check_fails_when_the_link_rate_moves_sharply_from_the_last_run():
    con = _warehouse()
    plant(con, NORMAL)
    record_linkage_run(con, linkage_qa(con), None, check_passed=True)
    plant(con, [["nhs", "council"]] * 90 + [["nhs"]] * 10)
    outcome = check_linkage(linkage_qa(con), previous_link_rate(con), 40, 0.05)
    assert not outcome.passed and "link rate moved from 60.0% to 94.7%" in outcome.problems[0]
    record_linkage_run(con, linkage_qa(con), None, check_passed=False)
    # Re-running does not accept the new rate: the baseline stays the last run that passed.
    assert previous_link_rate(con) == pytest.approx(0.6)
    assert previous_link_rate(con, skip_latest=True) == pytest.approx(0.6)
    assert not check_linkage(linkage_qa(con), previous_link_rate(con), 40, 0.05).passed


def test_blocking_asset_check_fails_on_a_giant_cluster_in_the_warehouse(tmp_path):
    settings = Settings.from_env({"PLACELINK_HOME": str(tmp_path)})
    con = connect(settings)
    plant(con, NORMAL + [["council"] * 45])
    # linkage checks its keys before saving them and records what it found; the asset check reports it
    qa = linkage_qa(con)
    outcome = check_linkage(qa, None, 40, 0.05)
    record_linkage_run(con, qa, None, outcome.passed, outcome=outcome)
    con.close()
    results = list(plausible_linkage(placelink=PlacelinkResource(home=str(tmp_path))))
    assert len(results) == 2 and not any(r.passed for r in results)
    assert results[0].metadata["max_cluster_size"].value == 45
    assert "over-linking" in results[0].metadata["problems"].value


def test_report_renders_in_a_browser_with_the_match_weights_chart(tmp_path):
    con = _warehouse()
    plant(con, NORMAL)
    qa = linkage_qa(con)
    columns = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in LINKAGE_FEATURES.items())
    records = con.sql(f"SELECT 'a' AS unique_id, 'nhs' AS partner_id, {columns}").to_arrow_table()
    untrained = TrainedModel(
        Settings.from_env().now(),
        0,
        "not trained",
        splink_settings().create_settings_dict("duckdb"),
    )
    chart = match_weights_chart(untrained, records)
    page = write_qa_report(
        tmp_path, qa, chart, None, check_linkage(qa, None, 40, 0.05), 0.9, "2026-11-01"
    )
    dom = rendered_dom(page)
    assert "Linkage check passed" in dom
    assert "<svg" in dom or "<canvas" in dom  # vega drew the chart offline (libraries inlined)
    assert "Records linked to nobody" in dom and "55.6%" in dom  # nhs: 50 of 90
    assert "PK" not in dom.split("<script")[0]  # no person keys on the page


def test_an_accepted_change_covers_only_the_move_it_measured_and_is_used_up_by_a_passing_run():
    from pipelines.linkage.accepted_changes import AcceptedChange

    con = _warehouse()
    plant(con, NORMAL)
    record_linkage_run(con, linkage_qa(con), None, check_passed=True)
    plant(con, [["nhs", "council"]] * 90 + [["nhs"]] * 10)  # link rate 60% -> 94.7%
    qa = linkage_qa(con)
    measured = AcceptedChange("a1", "user:ops", "new partner's first extract", 0.6, 0.947)
    elsewhere = AcceptedChange("a2", "user:ops", "another move", 0.6, 0.80)
    unmeasured = AcceptedChange(
        "a3", "service:retention", "retention deleted a dataset", None, None
    )
    assert not check_linkage(qa, previous_link_rate(con), 40, 0.05, [elsewhere]).passed
    assert check_linkage(qa, previous_link_rate(con), 40, 0.05, [unmeasured]).passed
    outcome = check_linkage(qa, previous_link_rate(con), 40, 0.05, [measured, elsewhere])
    assert outcome.passed and outcome.accepted == (
        "a1",
        "a2",
    )  # both used up: neither waives a later move
    assert "new partner's first extract (user:ops)" == outcome.metadata["accepted_change"]
    # over-linking is never accepted
    plant(con, NORMAL + [["nhs"] * 300])
    assert not check_linkage(linkage_qa(con), None, 40, 1.0, [unmeasured]).passed
