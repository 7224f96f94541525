"""Run the whole pipeline headless on Dagster's local instance (``PLACELINK_HOME/dagster``)."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg
import yaml

from pipelines.core.alerts import Sent
from pipelines.core.run_lock import Holder, run_lock
from pipelines.core.settings import Settings
from pipelines.core.stages import stage
from pipelines.hub.delivery_months import MONTHS_TAG, parse_month
from pipelines.hub.journal import inbox_files
from pipelines.orchestration.jobs import WAREHOUSE_TAG
from pipelines.quality import worker as quality_worker

# The run queue the hub needs: one run at a time, and at most one run tagged as a warehouse
# writer even if someone raises max_concurrent_runs for other code locations.
RUN_QUEUE = {
    "max_concurrent_runs": 1,
    "tag_concurrency_limits": [{"key": WAREHOUSE_TAG, "limit": 1}],
}
DAGSTER_YAML = f"""# Dagster's local instance for placelink (runs, event logs, schedules).
telemetry:
  enabled: false
# The hub's warehouse takes one writer: runs launched from the UI, the inbox sensor and the
# schedules wait in the queue, one at a time (a deployment's dagster.yaml: deploy/dagster.yaml).
run_queue:
  max_concurrent_runs: 1
  tag_concurrency_limits:
    - key: {WAREHOUSE_TAG}
      limit: 1
"""


def queue_problem(config: dict | None) -> str | None:
    """Why a dagster.yaml's instance would run two of the hub's runs at once (None: it would not).

    Runs launched through the instance (UI, sensor, schedules) are queued by its run coordinator:
    the queued coordinator configured by ``run_queue`` or ``run_coordinator`` must start one at a
    time."""
    config = config or {}
    coordinator = config.get("run_coordinator")
    if coordinator:
        if coordinator.get("class") != "QueuedRunCoordinator":
            return (
                f"its run_coordinator is {coordinator.get('class')!r}, which starts every run at once; use "
                "QueuedRunCoordinator with max_concurrent_runs: 1 (deploy/dagster.yaml)"
            )
        queue = coordinator.get("config") or {}
    else:
        queue = config.get("run_queue") or {}
    limit = queue.get("max_concurrent_runs")
    tagged = any(
        rule.get("key") == WAREHOUSE_TAG and rule.get("limit") == 1
        for rule in queue.get("tag_concurrency_limits") or []
        if isinstance(rule, dict)
    )
    if limit != 1 and not tagged:
        return (
            f"its run queue allows {limit if limit is not None else 'the default of 10'} runs at once and no "
            f"limit of 1 on the {WAREHOUSE_TAG} tag; set max_concurrent_runs: 1"
        )
    return None


class _SkippedCheckNotice(logging.Filter):
    """Drops Dagster's warning that a blocking check "emitted no result" and that what is downstream
    "will proceed without gating on it". In placelink a check emits no result only when its step was
    skipped, which happens only when a run has nothing new (assets/changes.py) and everything
    downstream is skipped too: the warning would tell the operator the opposite of what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "emitted no result in step" not in record.getMessage()


def ensure_dagster_home(settings: Settings, warn: Callable[[str], None] | None = None) -> Path:
    """Dagster's instance folder: DAGSTER_HOME's if it is set (a deployment's, with its own
    dagster.yaml: deploy/dagster.yaml), else the local one under PLACELINK_HOME/dagster.

    The local dagster.yaml is written if missing, and brought up to one run at a time if an older
    one lets runs overlap (its other settings are kept); a deployment's is never changed, but
    ``warn`` hears what is wrong with it."""
    folder = settings.dagster_home
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "dagster.yaml"
    if not config.exists():
        if not settings.dagster_home_override:
            config.write_text(DAGSTER_YAML)
        return folder
    try:
        content = yaml.safe_load(config.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        if warn is not None:
            warn(
                f"{config} is not valid YAML ({exc.__class__.__name__}); Dagster will not start with it"
            )
        return folder
    problem = queue_problem(content if isinstance(content, dict) else None)
    if problem is None:
        return folder
    if settings.dagster_home_override:
        if warn is not None:
            warn(
                f"{config} lets runs overlap: {problem}. Runs still take the hub's run lock one at a time, "
                "but a second one waits for it instead of queueing"
            )
        return folder
    content = dict(content) if isinstance(content, dict) else {}
    content.pop("run_coordinator", None)
    content["run_queue"] = {**(content.get("run_queue") or {}), **RUN_QUEUE}
    partial = config.with_name(".dagster.yaml.partial")
    partial.write_text(
        "# Updated by placelink: one run at a time (run_queue).\n"
        + yaml.safe_dump(content, sort_keys=False),
        encoding="utf-8",
    )
    os.replace(partial, config)
    if warn is not None:
        warn(f"{config} let runs overlap ({problem}); set run_queue to one run at a time")
    return folder


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The instance the UI also reads, so headless runs show there too (:func:`ensure_dagster_home`)."""
    folder = ensure_dagster_home(settings)
    # from_config, not DAGSTER_HOME: this process's environment keeps naming no instance, so a
    # later hub in the same process (the tests, the demo) never records its runs in this one.
    return dg.DagsterInstance.from_config(str(folder))


def run_pipeline(
    settings: Settings,
    retrain: bool = False,
    log_level: str = "INFO",
    on_alert: Callable[[Sent], None] | None = None,
    wait: float | None = 0,
    on_wait: Callable[[Holder | None], None] | None = None,
    command: str = "placelink run",
    months: Sequence[str] = (),
    full_relink: bool = False,
) -> dg.ExecuteInProcessResult:
    """Materialise every asset once, holding the hub's run lock throughout; the result says what failed.

    Another run holding the lock: wait up to ``wait`` seconds for it (None: as long as it takes,
    0: not at all; ``on_wait`` hears who holds it), then raise
    :class:`pipelines.core.run_lock.RunLockBusy`; nothing else is raised.

    ``full_relink``: score every pair of identity records, not only those touching records that
    changed since the last run (pipelines/linkage/incremental.py).

    ``months`` (``YYYY-MM``): reporting months to re-materialise (a backfill): each partner-month
    the hub holds for them is reported again on its landing partition, and linkage, the models and
    the published file are rebuilt even if nothing else is new. Whatever is in the inbox is received
    as in any run. Without ``months``, a run with an empty inbox and nothing else new since the last
    publication skips linkage and publication (:func:`nothing_new`).

    When the run ends, its alerts (failure, failed blocking checks, held and overdue deliveries;
    pipelines/orchestration/alerting.py) go to the configured channels, as the daemon's sensors do for runs it
    launches; ``on_alert`` hears what became of each."""
    settings.ensure_dirs()
    run_id = str(uuid.uuid4())  # as Dagster makes them; known before the run, so the lock names it
    with run_lock(settings.home, command, run_id=run_id, wait=wait, on_wait=on_wait):
        _fault_pause(settings)
        return _run(
            settings,
            retrain,
            log_level,
            on_alert,
            run_id,
            [parse_month(m) for m in months],
            full_relink,
        )


def _fault_pause(settings: Settings) -> None:
    """A fault hook for tests of the lock (PLACELINK_FAULT_PAUSE_AFTER_RUN_LOCK, a folder of two
    FIFOs): say "locked" with this pid, then wait until told "go" (or killed)."""
    folder = settings.fault_pause_after_run_lock
    if folder is None:
        return
    (folder / "locked").write_text(f"{os.getpid()}\n")  # a FIFO: blocks until the test reads
    (folder / "go").read_text()


def _run(
    settings: Settings,
    retrain: bool,
    log_level: str,
    on_alert: Callable[[Sent], None] | None,
    run_id: str,
    months: list[str],
    full_relink: bool = False,
) -> dg.ExecuteInProcessResult:
    if inbox_files(settings):
        # Ingest will validate deliveries in a worker process; start it now, so its import of
        # Great Expectations (~2 s of one core) runs beside Dagster's start-up, not ingest's.
        quality_worker.start()
    with stage("Dagster: load definitions"):
        from pipelines.orchestration.definitions import placelink_definitions

        # This hub's graph and resource, from its settings: nothing in the process's environment
        # (which may name another home, or none) is read or changed.
        job = placelink_definitions(settings).resolve_job_def("placelink_refresh")
    run_config = {
        "ops": {"linked_persons": {"config": {"retrain": retrain, "full_relink": full_relink}}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    from pipelines.core.alerts import send_all
    from pipelines.orchestration.alerting import HEADLESS_TAG, run_alerts

    notice, skipped_check = (
        logging.getLogger("dagster._core.execution.plan.active"),
        _SkippedCheckNotice(),
    )
    notice.addFilter(skipped_check)
    with dagster_instance(settings) as instance:
        fail_abandoned_runs(instance)
        tags = {
            HEADLESS_TAG: "true",
            **process_tags(),
            **({MONTHS_TAG: ",".join(sorted(set(months)))} if months else {}),
        }
        try:
            result = job.execute_in_process(
                instance=instance,
                run_config=run_config,
                raise_on_error=False,
                tags=tags,
                run_id=run_id,
            )
        finally:
            notice.removeFilter(skipped_check)
        if settings.alerts.channels:
            run = instance.get_run_by_id(result.run_id)
            for sent in send_all(run_alerts(instance, run, settings.alerts), settings.alerts):
                if on_alert is not None:
                    on_alert(sent)
        return result


# Which process runs a headless run, so that the next start can tell a run whose process was
# killed (it stays STARTED in Dagster's instance for ever) from one still running.
PID_TAG, PROCESS_START_TAG, HOST_TAG = (
    "placelink/pid",
    "placelink/process_started",
    "placelink/host",
)


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22), None if it
    is not running: with the pid, it names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def process_tags() -> dict[str, str]:
    """Tags naming this process, put on each headless run (:func:`fail_abandoned_runs`)."""
    return {
        PID_TAG: str(os.getpid()),
        PROCESS_START_TAG: _process_start(os.getpid()) or "",
        HOST_TAG: socket.gethostname(),
    }


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every headless run of this machine still STARTING or STARTED whose process is
    gone (killed: it could not say so itself); returns their run ids. Runs of other machines, and
    runs whose process is alive, are left alone."""
    abandoned = []
    for run in instance.get_runs(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
    ):
        tags = run.tags
        if PID_TAG not in tags or tags.get(HOST_TAG) != socket.gethostname():
            continue
        started = _process_start(int(tags[PID_TAG]))
        if started is not None and started == tags.get(PROCESS_START_TAG):
            continue
        instance.report_run_failed(
            run,
            message=(
                f"run {run.run_id} stopped without finishing: its process ({tags[PID_TAG]}) ended while the run was "
                f"{run.status.value} (killed, or the machine restarted). Marked failed when the next run started; the "
                "next run finished or undid what it left in ingest (docs/ingest-states.md)"
            ),
        )
        abandoned.append(run.run_id)
    return abandoned


def nothing_new(result: dg.ExecuteInProcessResult) -> str | None:
    """Why a finished run skipped linkage and publication (nothing new since the last one), or None."""
    from assets.changes import nothing_new_reason

    return nothing_new_reason(result.all_events)


def partner_months(result: dg.ExecuteInProcessResult) -> list[str]:
    """The partner-months a finished run materialised on the landing partitions, as ``dataset YYYY-MM``."""
    return sorted(
        f"{event.asset_key.path[-1]} {event.partition}"
        for event in result.all_events
        if event.is_step_materialization and event.asset_key.path[0] == "landing"
    )


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
                error = (
                    error.cause
                )  # the library's own error (file, contract, rule), not Dagster's wrapper
            messages.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
    return messages
