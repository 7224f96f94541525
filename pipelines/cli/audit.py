"""`placelink audit ...`: the append-only audit log."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli.common import existing_path_option, fail
from pipelines.core.settings import Settings


@click.group()
def audit() -> None:
    """The append-only audit log."""


@audit.command("verify")
@existing_path_option(
    "--published",
    "published_path",
    dir_okay=False,
    help="Also check the head carried by this copy of the published file (default: the hub's own "
    "published/shared_outcomes.duckdb, if there is one).",
)
def audit_verify(published_path: Path | None) -> None:
    """Exit 0 only if the log is whole: its hash chain holds, it ends exactly where the hub last
    signed it (so no event was cut off the end and no older copy was put back), and it holds the
    head carried by the published file."""
    from pipelines.governance.audit import AuditHead, hub_audit_log, published_head, verify_log

    settings = Settings.from_env()
    log = hub_audit_log(settings)
    head = AuditHead(settings.audit_head_path, settings.audit_key_path)
    published = published_path or settings.published
    try:
        carried = published_head(published)
    except (ValueError, KeyError, TypeError):
        fail(f"{published}: its _about.audit_head is not a signed audit head")
    findings = verify_log(log, head, carried, published.name)
    for finding in findings:
        click.echo(f"{'ok  ' if finding.ok else 'FAIL'}  {finding.check}: {finding.detail}")
    failed = [f for f in findings if not f.ok]
    if failed:
        first = failed[0]
        where = first.detail if first.check == "hash chain" else f"{first.check}: {first.detail}"
        click.echo(f"audit log {log.path} is NOT intact: {where}", err=True)
        sys.exit(1)
    events = sum(1 for _ in log.events())
    click.echo(
        f"audit log {log.path} is intact ({events} events; its end is signed by the hub's audit key, "
        f"head kept at {head.path})"
    )


@audit.command("show")
@click.option(
    "--contract", "contract_id", required=True, help="Contract id, e.g. nhs-acute-mental-health."
)
def audit_show(contract_id: str) -> None:
    """Every audit event about one agreement's flow, and every linkage run and publication that
    used its data, oldest first. An id that is neither an agreement nor in the log is an error."""
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contracts import load_contracts
    from pipelines.governance.flows import contract_events, uses_contract

    settings = Settings.from_env()
    log = hub_audit_log(settings)
    events = contract_events(log, contract_id)
    if not events:
        known, problems = load_contracts(settings.contracts_dir)
        if contract_id not in known and not any(p.stem == contract_id for p in problems):
            fail(
                f"no agreement '{contract_id}' in {settings.contracts_dir} and no event about it in {log.path} "
                f"(agreements: {', '.join(sorted(known)) or 'none'}); check the id with `placelink contracts list`"
            )
        click.echo(f"no audit events for contract '{contract_id}' in {log.path} yet")
        return
    lineage = 0
    for event in events:
        used = uses_contract(event, contract_id) and event.get("contract") is None
        lineage += used
        skip = ("at", "event", "prev", "contract", "actor", "run_id") + (
            ("contracts",) if used else ()
        )
        details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in skip)
        who = f"[{event.get('actor') or '?'}{', run ' + event['run_id'][:8] if event.get('run_id') else ''}]"
        mark = "  (used its data)" if used else ""
        click.echo(f"{event['at']}  {event['event']:<26} {who} {details}{mark}")
    click.echo(
        f"{len(events)} event(s), {lineage} of them linkage runs or publications that used its data; "
        "check the log with `placelink audit verify`"
    )
