"""The production configuration in deploy/: the Dagster instance on a real PostgreSQL server
(runs, event logs and schedules stored there; one run at a time), and the systemd units."""

import configparser
import shutil

import dagster as dg
import pytest

from pipelines.core.settings import REPO_ROOT, Settings
from tests.postgres_server import postgres_server

DEPLOY = REPO_ROOT / "deploy"


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as server:
        yield server


@pytest.fixture
def dagster_home(postgres, tmp_path, monkeypatch):
    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    return home


@dg.asset
def small_table() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 3})


def test_the_production_instance_stores_runs_in_postgres_and_queues_one_run_at_a_time(
    dagster_home, postgres
):
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        assert coordinator.get_run_queue_config().max_concurrent_runs == 1
        assert instance.run_monitoring_enabled
        result = dg.materialize([small_table], instance=instance)
        assert result.success
    with postgres.connect() as con, con.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", [result.run_id])
        assert cursor.fetchone() == ("SUCCESS",)
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = "
            "'ASSET_MATERIALIZATION'",
            [result.run_id],
        )
        assert cursor.fetchone() == (1,)


@pytest.mark.slow
def test_the_demo_job_runs_to_success_on_the_postgres_backed_instance(
    dagster_home, postgres, small_place, tmp_path
):
    from pipelines.orchestration.run import run_pipeline

    staged = small_place.stage_hub(tmp_path / "hub")
    settings = Settings.from_env(
        {
            "PLACELINK_HOME": str(staged.home),
            "DAGSTER_HOME": str(dagster_home),
            "PLACELINK_AS_OF": "2026-11-02T09:00:00+00:00",
        }
    )
    result = run_pipeline(settings, log_level="WARNING")
    assert result.success
    assert not (staged.home / "dagster").exists()  # the deployment's instance, not a local one
    with postgres.connect() as con, con.cursor() as cursor:
        cursor.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", [result.run_id])
        assert cursor.fetchone() == ("placelink_refresh", "SUCCESS")
        cursor.execute(
            "SELECT count(DISTINCT asset_key) FROM event_logs WHERE run_id = %s AND "
            "dagster_event_type = 'ASSET_MATERIALIZATION'",
            [result.run_id],
        )
        assert cursor.fetchone()[0] >= 30


@pytest.mark.parametrize(
    "unit, program",
    [
        ("placelink-webserver.service", "dagster-webserver"),
        ("placelink-daemon.service", "dagster-daemon"),
    ],
)
def test_the_systemd_units_start_dagster_from_the_project_venv_with_the_shared_environment(
    unit, program
):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / unit)
    service = parser["Service"]
    command = service["ExecStart"].split()
    assert command[0] == f"/opt/placelink/.venv/bin/{program}"
    assert (REPO_ROOT / ".venv" / "bin" / program).exists()  # what `make install` puts there
    assert command[command.index("--workspace") + 1] == "/opt/placelink/workspace.yaml"
    assert service["EnvironmentFile"] == "/etc/placelink/placelink.env"
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    documented = (DEPLOY / "placelink.env.example").read_text()
    for variable in (
        "DAGSTER_HOME",
        "PLACELINK_HOME",
        "PLACELINK_DAGSTER_PG_PASSWORD",
        "PLACELINK_ALERT_WEBHOOK_URL",
    ):
        assert f"\n{variable}=" in documented
