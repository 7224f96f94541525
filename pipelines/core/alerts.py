"""Alerts to the data team: a Slack-compatible webhook and e-mail, configured in one place.

An :class:`Alert` is a title and a few facts a person acts on: file names, contract ids,
check and step names, counts and dates. It never carries identifiers, token values or
records: alerts are built only from those facts (see :mod:`pipelines.orchestration.alerting` for runs and
:mod:`pipelines.governance.cadence` for overdue deliveries), and :func:`scrub` removes anything shaped
like a token or a long hexadecimal value before a message leaves the hub, in case a fact
ever quotes one.

Channels (environment variables, read once into :class:`AlertSettings` by
:class:`pipelines.core.settings.Settings`):

- ``PLACELINK_ALERT_WEBHOOK_URL``: an incoming-webhook URL that takes Slack's JSON
  (``{"text": ..., "blocks": [...]}``; Slack, Mattermost, Rocket.Chat and Teams' Slack
  connector do). The URL is a secret: it is never logged or put in a message.
- ``PLACELINK_ALERT_SMTP_HOST`` / ``_PORT`` (25) / ``_FROM`` / ``_TO`` (comma-separated) /
  ``_USER`` / ``_PASSWORD`` / ``_SECURITY`` (``none``, ``starttls`` or ``ssl``).
- ``PLACELINK_ALERT_HUB_NAME``: which hub is speaking (default ``placelink hub``);
  ``PLACELINK_ALERT_UI_URL``: the Dagster UI's address, so an alert links to the run.

Sending never raises: a channel that fails is reported in the returned :class:`Sent`
(the kind of failure only), so an unreachable mail server cannot fail the pipeline run
it is reporting on. No Dagster imports.
"""

from __future__ import annotations

import json
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

RUN_FAILED = "run_failed"
CHECKS_FAILED = "checks_failed"
DELIVERIES_HELD = "deliveries_held"
DELIVERIES_OVERDUE = "deliveries_overdue"
KINDS = (RUN_FAILED, CHECKS_FAILED, DELIVERIES_HELD, DELIVERIES_OVERDUE)
SMTP_SECURITY = ("none", "starttls", "ssl")

# Keyed tokens are 32 lower-case hex characters; Bloom filters and hashes are longer runs.
_TOKEN_LIKE = re.compile(r"(?i)\b[0-9a-f]{16,}\b")


def scrub(text: str) -> str:
    """``text`` with anything shaped like a token or hash (16+ hex characters) replaced."""
    return _TOKEN_LIKE.sub("[redacted]", text)


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go. Empty means that channel is off; with both off, nothing is sent."""

    webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = ""
    smtp_to: tuple[str, ...] = ()
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_security: str = "none"
    hub_name: str = "placelink hub"
    ui_url: str = ""
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.smtp_security not in SMTP_SECURITY:
            raise ValueError(
                f"PLACELINK_ALERT_SMTP_SECURITY is {self.smtp_security!r}: use none, starttls "
                "(port 587, usually) or ssl (port 465)"
            )
        if self.smtp_host and not (self.smtp_from and self.smtp_to):
            raise ValueError(
                "PLACELINK_ALERT_SMTP_HOST is set but PLACELINK_ALERT_SMTP_FROM or "
                "PLACELINK_ALERT_SMTP_TO is empty: give the sender and the recipients "
                "(comma-separated), or leave PLACELINK_ALERT_SMTP_HOST empty"
            )
        if self.webhook_url and not self.webhook_url.startswith(("https://", "http://")):
            raise ValueError(
                "PLACELINK_ALERT_WEBHOOK_URL must be an http(s) URL (an incoming webhook)"
            )

    @classmethod
    def from_env(cls, env) -> AlertSettings:
        def text(name: str, default: str = "") -> str:
            return env.get(f"PLACELINK_ALERT_{name}", default).strip()

        port = text("SMTP_PORT")
        try:
            smtp_port = int(port) if port else 25
        except ValueError:
            raise ValueError(
                f"PLACELINK_ALERT_SMTP_PORT is {port!r}: give a port number such as 25, 587 or 465"
            ) from None
        return cls(
            webhook_url=text("WEBHOOK_URL"),
            smtp_host=text("SMTP_HOST"),
            smtp_port=smtp_port,
            smtp_from=text("SMTP_FROM"),
            smtp_to=tuple(a.strip() for a in text("SMTP_TO").split(",") if a.strip()),
            smtp_user=text("SMTP_USER"),
            smtp_password=env.get("PLACELINK_ALERT_SMTP_PASSWORD", ""),
            smtp_security=text("SMTP_SECURITY", "none").lower() or "none",
            hub_name=text("HUB_NAME", "placelink hub") or "placelink hub",
            ui_url=text("UI_URL").rstrip("/"),
        )

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(
            name for name, on in (("webhook", self.webhook_url), ("email", self.smtp_host)) if on
        )


@dataclass(frozen=True)
class Alert:
    """What happened, in a title and a few lines of facts (no identifiers, no values)."""

    kind: str
    title: str
    facts: tuple[str, ...] = ()
    action: str = ""
    link: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def subject(self, hub: str) -> str:
        return scrub(f"[{hub}] {self.title}")

    def text(self, hub: str) -> str:
        lines = [self.subject(hub), ""]
        lines += [f"- {fact}" for fact in self.facts]
        if self.action:
            lines += ["", f"What to do: {self.action}"]
        if self.link:
            lines += ["", self.link]
        return scrub("\n".join(lines))

    def webhook_payload(self, hub: str) -> dict:
        """Slack's incoming-webhook JSON: ``text`` for any client, ``blocks`` for a richer view."""
        body = "\n".join(f"• {fact}" for fact in self.facts)
        if self.action:
            body += f"\n*What to do:* {self.action}"
        if self.link:
            body += f"\n<{self.link}|Open in Dagster>"
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": scrub(self.title)[:150]}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": scrub(f"{hub} · {self.kind}")}],
            },
        ]
        if body:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": scrub(body)[:3000]}}
            )
        return {"text": self.text(hub), "blocks": blocks}

    def email(self, settings: AlertSettings) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = self.subject(settings.hub_name)
        message["From"] = settings.smtp_from
        message["To"] = ", ".join(settings.smtp_to)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="placelink")
        message["X-Placelink-Alert"] = self.kind
        message.set_content(self.text(settings.hub_name))
        return message


@dataclass(frozen=True)
class Sent:
    """What became of one alert: channels that took it, and channels that failed (and how)."""

    alert: Alert
    delivered: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"alert '{self.alert.title}'"]
        parts.append(f"sent by {', '.join(self.delivered)}" if self.delivered else "not sent")
        if self.failed:
            parts.append(f"failed: {'; '.join(self.failed)}")
        return ", ".join(parts)


def _post_webhook(alert: Alert, settings: AlertSettings) -> None:
    body = json.dumps(alert.webhook_payload(settings.hub_name)).encode("utf-8")
    request = urllib.request.Request(
        settings.webhook_url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as response:
        response.read()


def _send_email(alert: Alert, settings: AlertSettings) -> None:
    message = alert.email(settings)
    if settings.smtp_security == "ssl":
        smtp = smtplib.SMTP_SSL(
            settings.smtp_host,
            settings.smtp_port,
            timeout=settings.timeout_seconds,
            context=ssl.create_default_context(),
        )
    else:
        smtp = smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds
        )
    with smtp:
        if settings.smtp_security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(message)


def _failure(channel: str, exc: Exception) -> str:
    # The kind of failure and an HTTP status or SMTP code, never the URL, host reply or password.
    if isinstance(exc, urllib.error.HTTPError):
        return f"{channel}: HTTP {exc.code}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{channel}: SMTP {exc.smtp_code}"
    return f"{channel}: {type(exc).__name__}"


def send(alert: Alert, settings: AlertSettings) -> Sent:
    """Send ``alert`` to every configured channel; never raises (failures are in the result)."""
    delivered, failed = [], []
    for channel, deliver in (("webhook", _post_webhook), ("email", _send_email)):
        if channel not in settings.channels:
            continue
        try:
            deliver(alert, settings)
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            failed.append(_failure(channel, exc))
        else:
            delivered.append(channel)
    return Sent(alert, tuple(delivered), tuple(failed))


def send_all(alerts: list[Alert], settings: AlertSettings) -> list[Sent]:
    return [send(alert, settings) for alert in alerts] if settings.channels else []
