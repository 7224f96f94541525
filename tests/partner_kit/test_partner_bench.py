"""`placelink bench kit` on a small place: every dataset measured, the time split by step."""

from __future__ import annotations

import json

from click.testing import CliRunner

from pipelines.cli import main
from pipelines.partner_kit.steps import STEPS


def test_bench_kit_reports_every_dataset_and_where_the_time_goes(tmp_path):
    out, work = tmp_path / "kit.json", tmp_path / "work"
    args = [
        "bench",
        "kit",
        "--people",
        "300",
        "--repeats",
        "2",
        "--work",
        str(work),
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Generating a synthetic place of 300 people" in result.output
    bench = json.loads(out.read_text())
    datasets = {d["dataset"] for d in bench["datasets"]}
    assert {"ae_attendances", "school_attendance", "family_support_enrolments"} <= datasets
    total = bench["total"]
    assert total["records"] == sum(d["records"] for d in bench["datasets"]) > 0
    assert len(total["wall_s_runs"]) == 2 and total["records_per_s_per_core"] > 0
    assert total["peak_rss_mb"] > 0
    # The steps account for the run: most of it is claimed by a named step. (A loose bound: on a
    # loaded machine the scheduler's pauses land in "other", and a tight one failed under load 16.)
    assert set(total["steps_s"]) == set(STEPS)
    assert abs(sum(total["steps_s"].values()) - total["wall_s"]) < 0.05 * total["wall_s"] + 0.01
    assert total["steps_s"]["other"] < 0.5 * total["wall_s"]
    for line in ("ae_attendances", "total", "HMAC tokens", "Bloom", "write"):
        assert line in result.output
    # A second run reuses the place instead of generating it again.
    again = CliRunner().invoke(main, args[:-2])
    assert again.exit_code == 0 and "Reusing the synthetic place" in again.output
