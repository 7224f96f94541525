"""A run killed while Dagster's instance says STARTED is marked failed when the next run starts."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg

from pipelines.core.settings import REPO_ROOT
from pipelines.orchestration.run import dagster_instance, fail_abandoned_runs, process_tags


def test_a_killed_run_is_marked_failed_at_the_next_start(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "home", datasets=["emergency_admissions"])
    env = {**os.environ, "PLACELINK_HOME": str(settings.home), "PLACELINK_FAULT": "ingest:landed"}
    env.pop("PLACELINK_CONTRACTS", None)
    with open(tmp_path / "run.log", "w") as output:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("placelink")), "run"],
            env=env,
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
    assert done.returncode == -signal.SIGKILL, (tmp_path / "run.log").read_text()[-3000:]

    with dagster_instance(settings) as instance:
        (killed,) = instance.get_runs()
        assert killed.status == dg.DagsterRunStatus.STARTED  # what the UI showed, for ever

        # A run whose process is alive (this one) is left as it is.
        living = instance.create_run_for_job(
            dg.JobDefinition(
                name="probe", graph_def=dg.GraphDefinition(name="probe", node_defs=[])
            ),
            tags=process_tags(),
            status=dg.DagsterRunStatus.STARTED,
        )

        assert fail_abandoned_runs(instance) == [killed.run_id]
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(living.run_id).status == dg.DagsterRunStatus.STARTED
        failure = instance.get_records_for_run(
            killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
        assert "stopped without finishing" in failure[0].event_log_entry.dagster_event.message
        assert fail_abandoned_runs(instance) == []  # once
