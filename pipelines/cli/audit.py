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
    from pipelines.audit import AuditLog

    log = AuditLog(Settings.from_env().audit_dir)
    problem = log.verify()
    if problem:
        click.echo(f"audit log {log.path} is NOT intact: line {problem.line}: {problem.reason}", err=True)
        sys.exit(1)
    click.echo(f"audit log {log.path} is intact ({sum(1 for _ in log.events())} events)")
