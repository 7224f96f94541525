"""The README's deployment code location: every step in its own process, linkage on Spark.

Slow (a few minutes: each of the ~27 steps starts its own Python process, and the linkage
step its own Spark); run with `make test-slow`.
"""

import os
import re
import subprocess
import sys

import dagster as dg
import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.orchestration.run import dagster_instance
from tests.conftest import prepare_place


def readme_deployment_block() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(# deployment/definitions\.py.*?)```", readme, flags=re.S)
    return block


@pytest.mark.slow
def test_the_readme_deployment_runs_each_step_in_its_own_process_with_linkage_on_spark(
    tmp_path, monkeypatch
):
    place = prepare_place(people=1000, seed=23, root=tmp_path / "partners")
    settings = place.stage_hub(tmp_path / "home")
    deployment = tmp_path / "deployment_definitions.py"
    deployment.write_text(readme_deployment_block(), encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(settings.home / "dagster"))
    with dagster_instance(settings):  # writes the instance's dagster.yaml
        pass
    env = dict(
        os.environ,
        PLACELINK_HOME=str(settings.home),
        PLACELINK_LINKAGE_BACKEND="spark",
        DAGSTER_HOME=str(settings.home / "dagster"),
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-f",
            str(deployment),
            "-j",
            "placelink_refresh",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    with dagster_instance(settings) as instance:
        (record,) = instance.get_runs()
        assert record.status == dg.DagsterRunStatus.SUCCESS
        starts = instance.all_logs(record.run_id, of_type=dg.DagsterEventType.STEP_START)
        assert len(starts) > 20
        assert len({entry.dagster_event.pid for entry in starts}) == len(
            starts
        )  # a process per step
        linkage = instance.get_latest_materialization_event(dg.AssetKey(["hub", "person_keys"]))
        assert linkage.asset_materialization.metadata["linkage_backend"].value == "spark"
    assert settings.published.exists()
