"""Dagster side of alerts: what a finished run tells the data team, and the sensors that send it.

One function, :func:`run_alerts`, reads a run's event log (failed steps, failed blocking checks,
deliveries ingest held, deliveries the cadence check found overdue) and turns it into
:class:`~pipelines.core.alerts.Alert` s. Runs launched by the daemon (the UI, the inbox sensor, the
schedules) are reported by :data:`run_failure_alert` and :data:`run_success_alert`; a headless
``placelink run`` reports its own run the same way when it ends (:mod:`pipelines.orchestration.run`), since no
daemon watches it. Overdue deliveries are also looked for on the clock, by
:data:`overdue_deliveries_alert`, because a delivery that never arrives starts no run.

Alert facts are file names, contract ids, step and check names, counts and dates; a failed
step is reported by the kind of error, never its message (which may quote a value).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import dagster as dg

from assets.resources import PlacelinkResource
from pipelines.core.alerts import (
    CHECKS_FAILED,
    DELIVERIES_HELD,
    RUN_FAILED,
    Alert,
    AlertSettings,
    Sent,
    send_all,
)
from pipelines.governance.cadence import (
    OVERDUE_CHECK,
    DeliveryStatus,
    overdue_alert,
    overdue_deliveries,
)

# Runs of `placelink run` report their own outcome (pipelines/orchestration/run.py); sensors leave them alone.
HEADLESS_TAG = "placelink/headless"
DELIVERIES_ASSET = dg.AssetKey(["hub", "deliveries"])


def _run_link(settings: AlertSettings, run_id: str) -> str:
    return f"{settings.ui_url}/runs/{run_id}" if settings.ui_url else ""


def _events(instance: dg.DagsterInstance, run_id: str, *types: dg.DagsterEventType) -> list:
    records = instance.get_records_for_run(run_id, of_type=set(types), limit=10_000).records
    return [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event]


def _step_failure(event) -> str:
    """``step KEY failed (KIND)``: the kind of error (e.g. ConversionException, from the cause chain or
    the ``error`` a placelink dg.Failure records), never its text."""
    data = event.step_failure_data
    described = data.user_failure_data
    kind = None
    if described is not None and "error" in (described.metadata or {}):
        kind = getattr(described.metadata["error"], "value", described.metadata["error"])
    error = data.error
    while kind is None and error is not None and error.cause is not None:
        error = error.cause
    kind = kind or (error.cls_name if error is not None else None)
    return f"step {event.step_key} failed" + (f" ({kind})" if kind and kind != "Failure" else "")


def run_alerts(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    settings: AlertSettings,
    include_overdue: bool = True,
) -> list[Alert]:
    """Alerts for one finished run: failure, failed blocking checks, held and overdue deliveries."""
    alerts: list[Alert] = []
    link = _run_link(settings, run.run_id)
    short = run.run_id[:8]
    failures = [
        _step_failure(e) for e in _events(instance, run.run_id, dg.DagsterEventType.STEP_FAILURE)
    ]
    checks = [
        e.event_specific_data
        for e in _events(instance, run.run_id, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    blocking_failed = [c for c in checks if not c.passed and c.blocking]
    if run.status == dg.DagsterRunStatus.FAILURE:
        facts = failures or ["the run failed before any step ran"]
        facts += [
            f"blocking check {c.check_name} on {c.asset_key.to_user_string()} failed"
            for c in blocking_failed
        ]
        alerts.append(
            Alert(
                RUN_FAILED,
                f"Run {short} of {run.job_name} FAILED: {len(failures)} step(s) failed",
                tuple(facts),
                "open the run in the Dagster UI (or `placelink run` output) for each step's error; fix the cause "
                "and re-run: nothing from a failed step was published",
                link,
            )
        )
    elif blocking_failed:
        alerts.append(
            Alert(
                CHECKS_FAILED,
                f"Run {short} of {run.job_name}: {len(blocking_failed)} blocking check(s) failed",
                tuple(
                    f"check {c.check_name} on {c.asset_key.to_user_string()} failed"
                    for c in blocking_failed
                ),
                "the steps after a failed blocking check did not run; see the check in the Dagster UI",
                link,
            )
        )
    held = _held_deliveries(instance, run.run_id)
    if held:
        facts = tuple(
            f"{h['file']}: held by check '{h['check']}'"
            + (f" (contract {h['contract']})" if h.get("contract") else "")
            for h in held
        )
        alerts.append(
            Alert(
                DELIVERIES_HELD,
                f"{len(held)} delivery(ies) held in quarantine by run {short}",
                facts,
                "see why with `placelink hub quarantine show NAME`; the partner re-sends, or release the file "
                "after a fix with `placelink hub quarantine release NAME`",
                link,
            )
        )
    if include_overdue:
        overdue = [
            DeliveryStatus.from_metadata(c.metadata)
            for c in checks
            if c.check_name == OVERDUE_CHECK and not c.passed
        ]
        overdue = [o for o in overdue if o is not None]
        if overdue:
            alerts.append(overdue_alert(overdue, link))
    return alerts


def _held_deliveries(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    for event in _events(instance, run_id, dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == DELIVERIES_ASSET and "held" in materialization.metadata:
            value = materialization.metadata["held"].value
            return list(value) if isinstance(value, list) else json.loads(value)
    return []


def _send_and_log(alerts: list[Alert], settings: AlertSettings, log) -> list[Sent]:
    sent = send_all(alerts, settings)
    for outcome in sent:
        (log.warning if outcome.failed else log.info)(outcome.describe())
    return sent


def _report_run(context: dg.RunStatusSensorContext, placelink: PlacelinkResource) -> None:
    """Alerts for a run the daemon saw end; overdue deliveries are the hourly sensor's to report."""
    if context.dagster_run.tags.get(HEADLESS_TAG):
        return
    settings = placelink.settings().alerts
    if not settings.channels:
        return
    _send_and_log(
        run_alerts(context.instance, context.dagster_run, settings, include_overdue=False),
        settings,
        context.log,
    )


@dg.run_failure_sensor(
    name="run_failure_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends an alert (webhook, e-mail: PLACELINK_ALERT_*) when a run fails, naming "
    "the failed steps and blocking checks and any held deliveries.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, placelink: PlacelinkResource):
    _report_run(context, placelink)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="run_success_alert",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends an alert when a successful run held deliveries in quarantine or a "
    "blocking check failed.",
)
def run_success_alert(context: dg.RunStatusSensorContext, placelink: PlacelinkResource):
    _report_run(context, placelink)


def _alerted(cursor: str | None) -> set[str]:
    try:
        return set(json.loads(cursor)) if cursor else set()
    except ValueError:
        return set()


@dg.sensor(
    name="overdue_deliveries_alert",
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every hour: deliveries the contracts' cadence says are overdue (read from the audit "
    "log, never the warehouse); each overdue dataset and period is alerted once.",
)
def overdue_deliveries_alert(context: dg.SensorEvaluationContext, placelink: PlacelinkResource):
    settings = placelink.settings()
    overdue = overdue_deliveries(settings)
    already = _alerted(context.cursor)
    new = [o for o in overdue if o.key not in already]
    # Keep only keys still overdue, so the cursor stays small and a dataset that falls behind
    # again later is alerted again.
    context.update_cursor(json.dumps(sorted({o.key for o in overdue})))
    if not new:
        return dg.SkipReason(
            f"{len(overdue)} overdue delivery(ies), none new"
            if overdue
            else "no delivery is overdue"
        )
    if not settings.alerts.channels:
        return dg.SkipReason(
            f"{len(new)} delivery(ies) newly overdue; no alert channel is configured "
            "(PLACELINK_ALERT_WEBHOOK_URL, PLACELINK_ALERT_SMTP_HOST)"
        )
    sent = _send_and_log([overdue_alert(new, settings.alerts.ui_url)], settings.alerts, context.log)
    return dg.SkipReason("; ".join(s.describe() for s in sent))


alert_sensors: Iterable[dg.SensorDefinition] = (
    run_failure_alert,
    run_success_alert,
    overdue_deliveries_alert,
)
