"""`placelink linkage ...`: operators' decisions about linkage (issue 20)."""

from __future__ import annotations

import click

from pipelines.cli.common import fail
from pipelines.core.settings import Settings


@click.group()
def linkage() -> None:
    """Linkage: accept a known change of the link rate."""


@linkage.command("accept-change")
@click.option(
    "--reason",
    required=True,
    help="Why the link rate moved and why that is right (e.g. 'retention deleted the VCS "
    "enrolments'); written to the audit log for the IG officer.",
)
def accept_change(reason: str) -> None:
    """Accept the link-rate move that failed the last run's linkage check, for the next run.

    Audited (who, why, the measured shift). The next run then passes the check if its link rate
    is the one measured (within PLACELINK_LINKAGE_MAX_LINK_RATE_CHANGE), saves its person keys
    and becomes the baseline. Over-linking (a giant person) cannot be accepted: fix its cause."""
    import duckdb

    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.linkage_changes import record_acceptance
    from pipelines.linkage.accepted_changes import last_measured_shift

    settings = Settings.from_env()
    if not reason.strip():
        fail(
            'give the reason for accepting the change (--reason "..."): the IG officer reads it in the '
            "audit log"
        )
    shift = None
    if settings.warehouse.exists():
        try:
            con = duckdb.connect(str(settings.warehouse), read_only=True)
        except duckdb.Error:
            fail(
                f"the warehouse {settings.warehouse} is in use by a run: wait for it to finish, then accept "
                "the change"
            )
        try:
            shift = last_measured_shift(con)
        finally:
            con.close()
    change = record_acceptance(
        hub_audit_log(settings),
        reason,
        from_rate=shift[0] if shift else None,
        to_rate=shift[1] if shift else None,
    )
    if shift:
        click.echo(
            f"accepted the link rate's move from {shift[0]:.1%} to {shift[1]:.1%} for the next run "
            f"(audited as linkage_change_accepted {change.id}): the next run passes the linkage check "
            "if its link rate is this one, and its rate becomes the baseline"
        )
    else:
        click.echo(
            f"the last linkage run did not fail on a move of the link rate, so no shift was measured; "
            f"accepted a move for the next run whatever it is (audited as linkage_change_accepted "
            f"{change.id})"
        )
