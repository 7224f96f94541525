"""Run the whole pipeline headless on Dagster's local instance (``PLACELINK_HOME/dagster``)."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from pipelines.alerts import Sent
from pipelines.delivery_months import MONTHS_TAG, parse_month
from pipelines.quality import worker as quality_worker
from pipelines.settings import Settings
from pipelines.stages import stage

DAGSTER_YAML = """# Dagster's local instance for placelink (runs, event logs, schedules).
telemetry:
  enabled: false
# The hub's warehouse takes one writer: runs launched from the UI, the inbox sensor and the
# schedules wait in the queue, one at a time (a deployment's dagster.yaml: deploy/dagster.yaml).
run_queue:
  max_concurrent_runs: 1
"""


class _SkippedCheckNotice(logging.Filter):
    """Drops Dagster's warning that a blocking check "emitted no result" and that what is downstream
    "will proceed without gating on it". In placelink a check emits no result only when its step was
    skipped, which happens only when a run has nothing new (assets/changes.py) and everything
    downstream is skipped too: the warning would tell the operator the opposite of what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "emitted no result in step" not in record.getMessage()


def ensure_dagster_home(settings: Settings) -> Path:
    """Dagster's instance folder: DAGSTER_HOME's if it is set (a deployment's, with its own
    dagster.yaml: deploy/dagster.yaml), else the local one under PLACELINK_HOME/dagster, whose
    dagster.yaml is written if missing."""
    folder = settings.dagster_home
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.exists() and not settings.dagster_home_override:
        config.write_text(DAGSTER_YAML)
    return folder


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance the UI also reads, so headless runs show there too (:func:`ensure_dagster_home`)."""
    folder = ensure_dagster_home(settings)
    # from_config, not DAGSTER_HOME: this process's environment keeps naming no instance, so a
    # later hub in the same process (the tests, the demo) never records its runs in this one.
    return dg.DagsterInstance.from_config(str(folder))


def run_pipeline(settings: Settings, retrain: bool = False, log_level: str = "INFO",
                 on_alert: Callable[[Sent], None] | None = None,
                 months: Sequence[str] = ()) -> dg.ExecuteInProcessResult:
    """Materialise every asset once; raises nothing, the result says what failed.

    ``months`` (``YYYY-MM``): reporting months to re-materialise (a backfill): each partner-month
    the hub holds for them is reported again on its landing partition, and linkage, the models and
    the published file are rebuilt even if nothing else is new. Whatever is in the inbox is received
    as in any run. Without ``months``, a run with an empty inbox and nothing else new since the last
    publication skips linkage and publication (:func:`nothing_new`).

    When the run ends, its alerts (failure, failed blocking checks, held and overdue deliveries;
    pipelines/alerting.py) go to the configured channels, as the daemon's sensors do for runs it
    launches; ``on_alert`` hears what became of each."""
    settings.ensure_dirs()
    # The assets read their settings from the environment (PlacelinkResource): name this home for
    # the run, and put the process's own environment back afterwards, so nothing later in the same
    # process (a CLI command, the next test) reads this run's home, contracts or clock.
    with _environment({"PLACELINK_HOME": str(settings.home), "PLACELINK_CONTRACTS": str(settings.contracts_dir),
                       "PLACELINK_SQL": str(settings.sql_dir),
                       "PLACELINK_AS_OF": settings.clock.as_of.isoformat() if settings.clock.as_of else None}):
        return _run(settings, retrain, log_level, on_alert, [parse_month(m) for m in months])


@contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """``values`` set in ``os.environ`` (None: left as it is) for the block, then restored."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update({name: value for name, value in values.items() if value is not None})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(settings: Settings, retrain: bool, log_level: str,
         on_alert: Callable[[Sent], None] | None, months: list[str]) -> dg.ExecuteInProcessResult:
    if settings.inbox_files():
        # Ingest will validate deliveries in a worker process; start it now, so its import of
        # Great Expectations (~2 s of one core) runs beside Dagster's start-up, not ingest's.
        quality_worker.start()
    with stage("Dagster: load definitions"):
        from pipelines.definitions import defs  # after the environment names this home

        job = defs.resolve_job_def("placelink_refresh")
    run_config = {"ops": {"linked_persons": {"config": {"retrain": retrain}}},
                  "loggers": {"console": {"config": {"log_level": log_level}}}}
    from pipelines.alerting import HEADLESS_TAG, run_alerts
    from pipelines.alerts import send_all

    notice, skipped_check = logging.getLogger("dagster._core.execution.plan.active"), _SkippedCheckNotice()
    notice.addFilter(skipped_check)
    with dagster_instance(settings) as instance:
        tags = {HEADLESS_TAG: "true", **({MONTHS_TAG: ",".join(sorted(set(months)))} if months else {})}
        try:
            result = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False,
                                            tags=tags)
        finally:
            notice.removeFilter(skipped_check)
        if settings.alerts.channels:
            run = instance.get_run_by_id(result.run_id)
            for sent in send_all(run_alerts(instance, run, settings.alerts), settings.alerts):
                if on_alert is not None:
                    on_alert(sent)
        return result


def nothing_new(result: dg.ExecuteInProcessResult) -> str | None:
    """Why a finished run skipped linkage and publication (nothing new since the last one), or None."""
    from assets.changes import nothing_new_reason

    return nothing_new_reason(result.all_events)


def partner_months(result: dg.ExecuteInProcessResult) -> list[str]:
    """The partner-months a finished run materialised on the landing partitions, as ``dataset YYYY-MM``."""
    return sorted(f"{event.asset_key.path[-1]} {event.partition}" for event in result.all_events
                  if event.is_step_materialization and event.asset_key.path[0] == "landing")


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            described = event.step_failure_data.user_failure_data
            if described is not None and described.description:
                # a dg.Failure placelink raised: its description already names the cause and the fix
                messages.append(f"{event.step_key}: {described.description.strip()}")
                continue
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:
                error = error.cause  # the library's own error (file, contract, rule), not Dagster's wrapper
            messages.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
    return messages
