import json
import os
import subprocess
import sys

import dagster as dg

from assets.resources import PlacelinkResource
from pipelines.core.settings import REPO_ROOT
from pipelines.orchestration.sensors import inbox_sensor


def _evaluate(sensor, context):
    """``sensor`` evaluated in ``context``, its resource open as the daemon opens it."""
    with context:
        return sensor(context)


# Run in a fresh interpreter: other test modules import the definitions while pytest collects,
# so a warning raised at import time would never reach a check made in this process.
_LOAD = """
import datetime as dt, json
from pipelines.orchestration.code_location import defs
graph = defs.resolve_asset_graph()
# The one moment the partitions are read at, and reported with them (Dagster's partitions follow
# the calendar, so the test compares with this, not with its own reading of the calendar).
now = dt.datetime.now(dt.UTC)
cohort = graph.get(__import__("dagster").AssetKey(["cohorts", "programme_cohort"]))
print(json.dumps({
    "keys": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
    "cohort_upstream": sorted(k.to_user_string() for k in cohort.parent_keys),
    "jobs": sorted(j.name for j in defs.resolve_all_job_defs()),
    "monthly_refresh": defs.resolve_schedule_def("monthly_refresh").cron_schedule,
    "months": [(p := graph.get(__import__("dagster").AssetKey(["landing", "ae_attendances"])).partitions_def)
               .get_first_partition_key(), p.get_partition_keys(current_time=now)[-1]],
    "calendar_month": f"{now:%Y-%m}",
}))
"""


def test_definitions_load_and_resolve_without_warnings(tmp_path):
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _LOAD],
        capture_output=True,
        text=True,
        env={**os.environ, "PLACELINK_HOME": str(tmp_path / "home")},
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert {
        "hub/deliveries",
        "landing/ae_attendances",
        "hub/person_keys",
        "cohorts/programme_cohort",
        "published/shared_outcomes",
    } <= set(loaded["keys"])
    # lineage read from the SQL: the cohort depends on linked persons through staging
    assert loaded["cohort_upstream"] == ["hub/record_person", "landing/family_support_enrolments"]
    assert "placelink_refresh" in loaded["jobs"]
    assert loaded["monthly_refresh"] == "0 6 2 * *"
    # reporting months: from the month before the agreements begin (April 2026) to the calendar's month
    # when the partitions were read (the suite's clock, November 2026, is not later than it)
    assert loaded["calendar_month"] >= "2026-11"
    assert loaded["months"] == ["2026-03", loaded["calendar_month"]]


def test_the_landing_partitions_reach_a_clock_set_after_the_calendar(tmp_path):
    later = subprocess.run(
        [sys.executable, "-c", _LOAD],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        env={
            **os.environ,
            "PLACELINK_HOME": str(tmp_path / "home"),
            "PLACELINK_AS_OF": "2131-02-10",
        },
    )
    assert later.returncode == 0, later.stderr[-3000:]
    assert json.loads(later.stdout.strip().splitlines()[-1])["months"] == ["2026-03", "2131-02"]


def test_inbox_sensor_requests_one_run_per_new_set_of_files(tmp_path):
    hub = {"placelink": PlacelinkResource(home=str(tmp_path))}
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    assert isinstance(
        _evaluate(inbox_sensor, dg.build_sensor_context(resources=hub)), dg.SkipReason
    )

    (inbox / "a.parquet").write_bytes(b"x")
    first = _evaluate(inbox_sensor, dg.build_sensor_context(resources=hub))
    assert isinstance(first, dg.RunRequest)

    again = _evaluate(
        inbox_sensor,
        dg.build_sensor_context(cursor=first.run_key.removeprefix("inbox-"), resources=hub),
    )
    assert isinstance(again, dg.SkipReason)

    (inbox / "b.parquet").write_bytes(b"y")
    second = _evaluate(
        inbox_sensor,
        dg.build_sensor_context(cursor=first.run_key.removeprefix("inbox-"), resources=hub),
    )
    assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key


def test_jobs_run_in_one_process_because_the_warehouse_has_one_writer():
    from pipelines.orchestration.code_location import defs

    for name in ("placelink_refresh", "placelink_retention"):
        assert defs.resolve_job_def(name).executor_def.name == "in_process"


def test_without_a_contract_its_models_are_left_out_with_a_message_not_a_traceback(tmp_path):
    # A partnership without the family-support partner: only the council's and the NHS's contracts.
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    for name in ("council-place-services.yaml", "nhs-acute-mental-health.yaml"):
        (contracts / name).write_bytes((REPO_ROOT / "contracts" / name).read_bytes())
    load = (
        "import json\nfrom pipelines.orchestration.code_location import defs\n"
        "print(json.dumps(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())))"
    )
    done = subprocess.run(
        [sys.executable, "-c", load],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        env={
            **os.environ,
            "PLACELINK_HOME": str(tmp_path / "home"),
            "PLACELINK_CONTRACTS": str(contracts),
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    keys = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert {"staging/persons", "staging/outcome_events", "published/shared_outcomes"} <= keys
    assert not keys & {
        "cohorts/programme_cohort",
        "publish/outcomes_by_ward",
        "landing/family_support_enrolments",
    }
    (left_out,) = [line for line in done.stderr.splitlines() if "cohorts.programme_cohort" in line]
    assert left_out.endswith("left out: no contract provides landing.family_support_enrolments")
    assert "publish.outcomes_by_ward" in left_out and "add the partners' contracts" in done.stderr
