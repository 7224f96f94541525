"""`placelink audit ...`: the append-only audit log."""
from __future__ import annotations

import sys

import click

from pipelines.settings import Settings


@click.group()
def audit() -> None:
    """The append-only audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Exit 0 if the hash chain is intact; otherwise name the first bad line."""

    log = Settings.from_env().audit_log()
    problem = log.verify()
    if problem:
        click.echo(f"audit log {log.path} is NOT intact: line {problem.line}: {problem.reason}", err=True)
        sys.exit(1)
    click.echo(f"audit log {log.path} is intact ({sum(1 for _ in log.events())} events)")


@audit.command("show")
@click.option("--contract", "contract_id", required=True, help="Contract id, e.g. nhs-acute-mental-health.")
def audit_show(contract_id: str) -> None:
    """Every audit event about one contract's flow, oldest first."""
    from pipelines.governance import contract_events

    log = Settings.from_env().audit_log()
    events = contract_events(log, contract_id)
    if not events:
        click.echo(f"no audit events for contract '{contract_id}' in {log.path}")
        return
    for event in events:
        details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("at", "event", "prev", "contract"))
        click.echo(f"{event['at']}  {event['event']:<26} {details}")
    click.echo(f"{len(events)} event(s); check the chain with `placelink audit verify`")
