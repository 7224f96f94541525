"""Run the whole pipeline headless on Dagster's local instance (``PLACELINK_HOME/dagster``)."""
from __future__ import annotations

import os

import dagster as dg

from pipelines.quality import worker as quality_worker
from pipelines.settings import Settings
from pipelines.stages import stage

DAGSTER_YAML = """# Dagster's local instance for placelink (runs, event logs, schedules).
telemetry:
  enabled: false
"""


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The local instance the UI (`make ui`) also reads, so headless runs show there too."""
    folder = settings.home / "dagster"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(folder)
    return dg.DagsterInstance.get()


def run_pipeline(settings: Settings, retrain: bool = False,
                 log_level: str = "INFO") -> dg.ExecuteInProcessResult:
    """Materialise every asset once; raises nothing, the result says what failed."""
    settings.ensure_dirs()
    os.environ["PLACELINK_HOME"] = str(settings.home)
    os.environ["PLACELINK_CONTRACTS"] = str(settings.contracts_dir)
    os.environ["PLACELINK_SQL"] = str(settings.sql_dir)
    if settings.clock.as_of is not None:
        os.environ["PLACELINK_AS_OF"] = settings.clock.as_of.isoformat()
    if settings.inbox_files():
        # Ingest will validate deliveries in a worker process; start it now, so its import of
        # Great Expectations (~2 s of one core) runs beside Dagster's start-up, not ingest's.
        quality_worker.start()
    with stage("Dagster: load definitions"):
        from pipelines.definitions import defs  # after the environment names this home

        job = defs.resolve_job_def("placelink_refresh")
    run_config = {"ops": {"linked_persons": {"config": {"retrain": retrain}}},
                  "loggers": {"console": {"config": {"log_level": log_level}}}}
    with dagster_instance(settings) as instance:
        return job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause  # the library's own error (file, contract, rule), not Dagster's wrapper
            messages.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
    return messages
