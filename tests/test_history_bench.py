"""`placelink bench history`: the same place's monthly runs, each measured and reported."""

import csv
import json

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.tooling.bench.history import MonthRun, chart_svg, format_table


def test_three_months_of_a_small_place_are_each_run_and_reported(tmp_path):
    out = tmp_path / "figures"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "history",
            "--people",
            "2000",
            "--months",
            "3",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "history.json").read_text())["runs"]
    assert [r["month"] for r in runs] == [1, 2, 3]
    assert [r["period"] for r in runs] == ["2026-10", "2026-11", "2026-12"]
    assert all(r["succeeded"] for r in runs)
    # Each run ran as of its own month's delivery day, one month apart.
    assert runs[0]["as_of"] < runs[1]["as_of"] < runs[2]["as_of"]
    for r in runs:
        assert r["run_seconds"] > 0 and r["peak_mb"] > 100
        assert r["stages"]["ingest and verification"] > 0 and r["stages"]["linkage: predict"] > 0
        # The stages and the rest of the run add up to its wall time.
        assert abs(sum(r["stages"].values()) - r["run_seconds"]) < 0.01
        assert r["extracts"] > 0 and r["records_sent"] > 0
    # What the hub holds grows: later months add records and people.
    landed = [r["records_landed"] for r in runs]
    assert landed[0] < landed[1] < landed[2]
    assert runs[0]["rows_delivered"] == runs[0]["records_sent"] == landed[0]
    assert runs[2]["rows_delivered"] == sum(r["records_sent"] for r in runs)
    assert runs[0]["identity_records"] < runs[2]["identity_records"]
    assert 1000 < runs[0]["persons"] <= runs[0]["identity_records"]
    # The first month is the place's whole first delivery; a later one sends far less.
    assert runs[1]["records_sent"] < runs[0]["records_sent"]
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["month"]) for r in rows] == [1, 2, 3] and float(rows[2]["run_seconds"]) > 0
    assert (out / "history.svg").read_text().count("<rect x=") == 3
    table = (out / "history.md").read_text()
    assert "Last month ÷ first month" in table
    for month in ("month   1", "month   2", "month   3"):
        assert month in result.output
    assert "history.svg" in result.output


def _run(month: int, seconds: float, predict: float) -> MonthRun:
    return MonthRun(
        month,
        f"2027-{month:02d}",
        f"2027-{month:02d}-07",
        extracts=3,
        records_sent=100,
        run_seconds=seconds,
        stages={"linkage: predict": predict, "ingest and verification": 1.0},
        peak_mb=500.0,
        records_landed=1000 * month,
        identity_records=900 * month,
        persons=800 * month,
    )


def test_the_table_gives_the_ratio_and_what_grew_most():
    table = format_table([_run(1, 10.0, 2.0), _run(2, 5.0, 1.0), _run(3, 8.0, 3.5)])
    assert "**0.80×** (8.0 s ÷ 10.0 s" in table
    assert "Last month ÷ month 2 (the first monthly delta): **1.60×**" in table
    assert "by stage (seconds): predict 1.00 → 3.50" in table


def test_a_month_whose_check_failed_counts_both_its_runs_in_the_ratio():
    # The second run of a month whose linkage check failed lands nothing new: alone it would make
    # the last month look cheap (the 100k x 60 history printed 0.53x from such a row).
    last = _run(3, 8.0, 3.5)
    last.failed_run_seconds, last.accepted_link_rate = 6.0, (0.80, 0.81)
    table = format_table([_run(1, 10.0, 2.0), _run(2, 5.0, 1.0), last])
    assert "**1.40×** (14.0 s ÷ 10.0 s (both of a † month's runs)" in table
    assert "Last month ÷ month 2 (the first monthly delta): **2.80×**" in table


def test_the_chart_draws_a_bar_per_month_scaled_to_the_slowest():
    svg = chart_svg([_run(1, 10.0, 2.0), _run(2, 5.0, 1.0)], "t")
    heights = [float(part.split('height="')[1].split('"')[0]) for part in svg.split("<rect x=")[1:]]
    assert len(heights) == 2 and heights[0] == pytest.approx(2 * heights[1], abs=0.2)


def _shortened(folder, expires: str):
    """The repo's agreements, ending on ``expires`` (review date the same day): a term that ends
    inside a short history."""
    import re
    import shutil

    from pipelines.core.settings import REPO_ROOT

    shutil.copytree(REPO_ROOT / "contracts", folder)
    for path in folder.glob("*.yaml"):
        text = path.read_text()
        text = re.sub(r"(?m)^(\s+)expires: '[^']*'", rf"\1expires: '{expires}'", text)
        text = re.sub(r"(?m)^(\s+)review_by: '[^']*'", rf"\1review_by: '{expires}'", text)
        path.write_text(text)
    return folder


def test_a_history_past_the_agreements_end_renews_them_and_goes_on_delivering(tmp_path):
    import duckdb

    from pipelines.tooling.bench.history import run_history

    # Month 1 is delivered on 2026-11-02, month 2 on 2026-12-02: the agreements end between them.
    contracts = _shortened(tmp_path / "contracts", "2026-11-30")
    said = []
    runs = run_history(2000, 2, tmp_path / "work", echo=said.append, contracts_dir=contracts)
    assert [r.succeeded for r in runs] == [True, True], [r.failures for r in runs]
    # Month 2, after the old end, was delivered, landed and linked.
    assert runs[1].extracts > 0 and runs[1].records_landed > runs[0].records_landed
    renewals = [line for line in said if line.startswith("renewed ")]
    assert len(renewals) == 3 and all("expires 2029-11-30" in line for line in renewals)
    home = tmp_path / "work" / "hub"
    con = duckdb.connect(str(home / "published" / "shared_outcomes.duckdb"), read_only=True)
    try:
        published_versions = {
            v for (v,) in con.execute("SELECT DISTINCT contract_version FROM _lineage").fetchall()
        }
        excluded = con.execute("SELECT value FROM _about WHERE key = 'excluded_flows'").fetchone()
    finally:
        con.close()
    # Month 2's extracts came under the renewed versions and are in the published lineage.
    assert "1.1.0" in published_versions
    assert json.loads(excluded[0]) == []  # no flow left out as expired
    events = [
        json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()
    ]
    signed = [
        e for e in events if e["event"] == "contract_signed" and e["contract_version"] == "1.1.0"
    ]
    # every required role signed each renewal again
    assert len({e["contract"] for e in signed}) == 3 and len(signed) >= 6
