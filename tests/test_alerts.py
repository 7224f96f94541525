"""Alerts reach a real webhook (HTTP on localhost) and a real SMTP server (aiosmtpd), say what
happened in facts a person acts on, and carry no token-shaped value."""

import pytest

from pipelines.core.alerts import DELIVERIES_HELD, Alert, AlertSettings, scrub, send, send_all
from tests.alert_servers import alert_env, smtp_server, webhook_server

TOKEN = "0123456789abcdef0123456789abcdef"


def _alert(**changes) -> Alert:
    fields = dict(
        kind=DELIVERIES_HELD,
        title="1 delivery(ies) held in quarantine by run 1a2b3c4d",
        facts=("nhs__ae.plx: held by check 'quality' (contract nhs-acute-mental-health)",),
        action="see `placelink hub quarantine show NAME`",
        link="http://127.0.0.1:3000/runs/1a2b",
    )
    return Alert(**{**fields, **changes})


def test_an_alert_arrives_at_the_webhook_and_by_email():
    with webhook_server() as hook, smtp_server() as mail:
        settings = AlertSettings.from_env(alert_env(hook, mail))
        sent = send(_alert(), settings)
        posted = hook.next()
        sender, recipients, message = mail.next()
    assert sent.delivered == ("webhook", "email") and not sent.failed
    assert posted["content_type"].startswith("application/json")
    assert posted["json"]["text"].startswith("[test hub] 1 delivery(ies) held in quarantine")
    assert "nhs__ae.plx: held by check 'quality'" in posted["json"]["text"]
    assert posted["json"]["blocks"][0]["text"]["text"].startswith("1 delivery(ies) held")
    assert sender == "hub@placelink.test"
    assert recipients == ["data-team@placelink.test", "ig@placelink.test"]
    assert message["Subject"] == "[test hub] 1 delivery(ies) held in quarantine by run 1a2b3c4d"
    assert message["X-Placelink-Alert"] == DELIVERIES_HELD
    body = message.get_content()
    assert "contract nhs-acute-mental-health" in body and "What to do:" in body


def test_a_token_shaped_value_never_leaves_in_an_alert():
    with webhook_server() as hook, smtp_server() as mail:
        send(
            _alert(title=f"held {TOKEN}", facts=(f"value {TOKEN.upper()}",)),
            AlertSettings.from_env(alert_env(hook, mail)),
        )
        posted, (_, _, message) = hook.next(), mail.next()
    for text in (str(posted["json"]), message.as_string()):
        assert TOKEN not in text.lower() and "[redacted]" in text
    assert scrub("run 1a2b3c4d, 20 rows") == "run 1a2b3c4d, 20 rows"


def test_a_failing_channel_is_reported_without_its_address_and_the_other_still_gets_it():
    with webhook_server(status=500) as hook, smtp_server() as mail:
        settings = AlertSettings.from_env(alert_env(hook, mail))
        sent = send(_alert(), settings)
        hook.next()
        mail.next()
    assert sent.delivered == ("email",)
    assert sent.failed == ("webhook: HTTP 500",)
    assert hook.url not in sent.describe()


def test_an_unreachable_mail_server_does_not_raise():
    settings = AlertSettings(
        smtp_host="127.0.0.1",
        smtp_port=_closed_port(),
        smtp_from="a@b.test",
        smtp_to=("c@d.test",),
        timeout_seconds=5,
    )
    sent = send(_alert(), settings)
    assert sent.delivered == () and sent.failed == ("email: ConnectionRefusedError",)


def test_nothing_is_sent_without_a_channel():
    assert send_all([_alert()], AlertSettings()) == []


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"PLACELINK_ALERT_SMTP_HOST": "mail"},
            "PLACELINK_ALERT_SMTP_FROM or PLACELINK_ALERT_SMTP_TO is empty",
        ),
        ({"PLACELINK_ALERT_SMTP_PORT": "twenty-five"}, "give a port number"),
        ({"PLACELINK_ALERT_SMTP_SECURITY": "tls"}, "use none, starttls"),
        ({"PLACELINK_ALERT_WEBHOOK_URL": "hooks.example"}, "must be an http.s. URL"),
    ],
)
def test_a_wrong_setting_says_which_variable_and_what_to_give(env, message):
    with pytest.raises(ValueError, match=message):
        AlertSettings.from_env(env)


def _closed_port() -> int:
    from tests.alert_servers import free_port

    return free_port()  # bound, then released: nothing listens there
