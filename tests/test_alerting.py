"""Alerts from runs and from the clock arrive at a real webhook and a real SMTP server on localhost:
a failed run (from the daemon's sensor and from a headless `placelink run`), held deliveries, and
overdue deliveries (the hourly sensor, once per late period)."""

import datetime as dt
import json
import os

import dagster as dg
import pytest

from assets.resources import PlacelinkResource
from pipelines.core.settings import Settings
from pipelines.governance.audit import AuditLog
from pipelines.orchestration.alerting import (
    overdue_deliveries_alert,
    run_failure_alert,
    run_success_alert,
)
from pipelines.orchestration.run import failure_messages, run_pipeline
from tests.alert_servers import alert_env, smtp_server, webhook_server
from tests.approvers import signed_hub_contracts

TOKEN = "0123456789abcdef0123456789abcdef"
# The sensors read the hub's settings from their resource: here, the environment each test sets.
FROM_THE_ENVIRONMENT = {"placelink": PlacelinkResource()}


def _evaluate(sensor, context):
    """``sensor`` evaluated in ``context``, its resource open as the daemon opens it."""
    with context:
        return sensor(context)


@pytest.fixture
def servers(monkeypatch):
    with webhook_server() as hook, smtp_server() as mail:
        for name, value in alert_env(hook, mail).items():
            monkeypatch.setenv(name, value)
        yield hook, mail


def _both(servers):
    hook, mail = servers
    posted = hook.next()["json"]
    _, _, message = mail.next()
    return posted, message


@dg.asset
def broken_model(placelink: PlacelinkResource) -> None:
    """A step whose SQL fails on a value, as a model reading a bad column would."""
    with placelink.warehouse() as con:
        con.execute(f"SELECT CAST('{TOKEN}' AS INTEGER)")


def test_a_failed_run_alerts_from_the_daemons_sensor_with_the_step_and_no_value(
    servers, tmp_path, monkeypatch
):
    monkeypatch.setenv("PLACELINK_HOME", str(tmp_path / "home"))
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [broken_model],
            instance=instance,
            raise_on_error=False,
            resources={"placelink": PlacelinkResource(home=str(tmp_path / "home"))},
        )
        assert not result.success
        # the failed step says what went wrong, without the value, instead of a generic error
        (message,) = failure_messages(result)
        assert message.startswith(
            "broken_model: a warehouse query failed: ConversionException: Conversion "
            "Error: Could not convert string '…' to INT32. What to do:"
        )
        _alert_on_failure(instance, result)
    posted, email = _both(servers)
    title = f"Run {result.run_id[:8]} of __ephemeral_asset_job__ FAILED: 1 step(s) failed"
    assert posted["blocks"][0]["text"]["text"] == title
    assert email["Subject"].strip() == f"[test hub] {title}"
    assert "step broken_model failed (ConversionException)" in posted["text"]
    assert f"http://127.0.0.1:3000/runs/{result.run_id}" in email.get_content()
    assert TOKEN not in json.dumps(posted) and TOKEN not in email.as_string()


def _alert_on_failure(instance, result) -> None:
    """The run-failure sensor, evaluated on the failure of ``result``'s run as the daemon would."""
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources=FROM_THE_ENVIRONMENT,
    ).for_run_failure()
    _evaluate(run_failure_alert, context)


def test_the_sensors_leave_headless_runs_to_report_themselves(servers, tmp_path):
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [broken_model],
            instance=instance,
            raise_on_error=False,
            tags={"placelink/headless": "true"},
            resources={"placelink": PlacelinkResource(home=str(tmp_path / "home"))},
        )
        _alert_on_failure(instance, result)
    hook, mail = servers
    assert hook.received.empty() and mail.received.empty()


def _hub(tmp_path) -> Settings:
    home = tmp_path / "home"
    signed_hub_contracts(
        home
    )  # approved agreements: a draft is in force nowhere, so nothing is due
    return home


def test_an_overdue_delivery_alerts_once_from_the_hourly_sensor(servers, tmp_path, monkeypatch):
    home = _hub(tmp_path)
    AuditLog(home / "audit").append(
        "extract_accepted",
        at=dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
        file="nhs__ae.plx",
        extract_id="e1",
        contract="nhs-acute-mental-health",
        dataset="ae_attendances",
        rows=20,
        reporting_period="2026-11",
    )
    monkeypatch.setenv("PLACELINK_HOME", str(home))
    monkeypatch.setenv("PLACELINK_AS_OF", "2026-12-14")
    first = _evaluate(
        overdue_deliveries_alert, dg.build_sensor_context(resources=FROM_THE_ENVIRONMENT)
    )  # no cursor: nothing alerted yet
    posted, email = _both(servers)
    assert posted["blocks"][0]["text"]["text"] == "6 delivery(ies) overdue"
    assert email["Subject"].strip() == "[test hub] 6 delivery(ies) overdue"
    assert (
        "council-place-services / csc_referrals: period 2026-11 due by 2026-12-10, 4 day(s) overdue "
        "(last delivered: " not in posted["text"]
    )  # nothing of it was delivered
    assert (
        "council-place-services / csc_referrals: period 2026-11 due by 2026-12-10, 4 day(s) overdue "
        "(nothing delivered yet)" in email.get_content()
    )
    assert "ae_attendances" not in posted["text"]  # November's arrived
    assert "sent by webhook, email" in first.skip_message
    # an hour later: the same late periods are not alerted again
    context = dg.build_sensor_context(resources=FROM_THE_ENVIRONMENT)
    _evaluate(overdue_deliveries_alert, context)
    _both(servers)
    again = _evaluate(
        overdue_deliveries_alert,
        dg.build_sensor_context(cursor=context.cursor, resources=FROM_THE_ENVIRONMENT),
    )
    assert again.skip_message == "6 overdue delivery(ies), none new"
    assert sorted(json.loads(context.cursor))[0] == "council-place-services/csc_referrals/2026-11"
    hook, mail = servers
    assert hook.received.empty() and mail.received.empty()


def test_a_headless_run_alerts_on_its_failure_held_files_and_overdue_deliveries(servers, tmp_path):
    hook, mail = servers
    home = _hub(tmp_path)
    env = {"PLACELINK_HOME": str(home), "PLACELINK_AS_OF": "2026-12-14", **alert_env(hook, mail)}
    settings = Settings.from_env(env)
    settings.ensure_dirs()
    (settings.inbox / "not-an-envelope.plx").write_bytes(b"partial upload")
    # nothing lands (the one file is held), so there is no one to link: that step fails the run
    heard = []
    environment = dict(os.environ)
    result = run_pipeline(settings, log_level="ERROR", on_alert=heard.append)
    assert not result.success
    assert dict(os.environ) == environment  # the run named its home only while it ran
    titles = sorted(s.alert.title for s in heard)
    assert all(s.delivered == ("webhook", "email") for s in heard)
    posted = sorted(
        (hook.next()["json"] for _ in heard), key=lambda p: p["blocks"][0]["text"]["text"]
    )
    mails = sorted((mail.next()[2] for _ in heard), key=lambda m: m["Subject"])
    assert [p["blocks"][0]["text"]["text"] for p in posted] == titles
    assert [m["Subject"].strip().removeprefix("[test hub] ") for m in mails] == titles
    kinds = {s.alert.kind: s.alert for s in heard}
    assert set(kinds) == {"run_failed", "deliveries_held", "deliveries_overdue"}
    assert "step linked_persons failed" in kinds["run_failed"].facts  # nothing to link
    assert kinds["deliveries_held"].facts == ("not-an-envelope.plx: held by check 'format'",)
    assert len(kinds["deliveries_overdue"].facts) == 7
    run = dg.DagsterInstance.from_config(str(home / "dagster")).get_run_by_id(result.run_id)
    assert run.tags["placelink/headless"] == "true"


def test_a_successful_run_with_held_deliveries_alerts_from_the_daemons_sensor(
    servers, small_place, tmp_path
):
    settings = small_place.stage_hub(tmp_path / "hub", datasets=[])
    (settings.inbox / "council__csc.damaged.plx").write_bytes(b"\x89PLX\r\n\x1a\n" + b"\0" * 40)
    from assets.ingest import received_extracts

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [received_extracts],
            instance=instance,
            resources={"placelink": PlacelinkResource(home=str(settings.home))},
        )
        success = next(
            e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_SUCCESS
        )
        _evaluate(
            run_success_alert,
            dg.build_run_status_sensor_context(
                sensor_name="run_success_alert",
                dagster_event=success,
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                resources=FROM_THE_ENVIRONMENT,
            ),
        )
    posted, email = _both(servers)
    assert (
        posted["blocks"][0]["text"]["text"]
        == f"1 delivery(ies) held in quarantine by run {result.run_id[:8]}"
    )
    assert "council__csc.damaged.plx: held by check 'format'" in email.get_content()


@dg.asset(check_specs=[dg.AssetCheckSpec("no_giant_cluster", asset="clusters", blocking=True)])
def clusters():
    yield dg.Output(None)
    yield dg.AssetCheckResult(
        check_name="no_giant_cluster", passed=False, metadata={"largest": 412}
    )


@dg.asset(deps=[clusters])
def published() -> None:
    pass


def test_a_failed_blocking_check_is_named_in_the_alert(servers):
    with dg.instance_for_test() as instance:
        result = dg.materialize([clusters, published], instance=instance, raise_on_error=False)
        failure = next(
            e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE
        )
        _evaluate(
            run_failure_alert,
            dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert",
                dagster_event=failure,
                dagster_instance=instance,
                dagster_run=result.dagster_run,
                resources=FROM_THE_ENVIRONMENT,
            ).for_run_failure(),
        )
    posted, email = _both(servers)
    assert "blocking check no_giant_cluster on clusters failed" in posted["text"]
    assert "blocking check no_giant_cluster on clusters failed" in email.get_content()
