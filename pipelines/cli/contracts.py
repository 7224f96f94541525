"""`placelink contracts ...`: data-sharing agreements, for IG officers."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.settings import Settings


@click.group()
def contracts() -> None:
    """Data-sharing agreements (for IG officers)."""


@contracts.command("check")
@click.option("--dir", "folder", type=click.Path(path_type=Path), help="Contracts folder (default: contracts/).")
def contracts_check(folder: Path | None) -> None:
    """Validate every contract; exit 1 on any error (for CI)."""
    from pipelines.contracts import load_contracts

    valid, problems = load_contracts(folder or Settings.from_env().contracts_dir)
    for contract in valid.values():
        click.echo(f"ok     {contract.path.name}: {contract.label}, {contract.terms.approval_status}")
    for path, error in problems.items():
        click.echo(f"ERROR  {error}")
    sys.exit(1 if problems else 0)


@contracts.command("list")
def contracts_list() -> None:
    from pipelines.contracts import load_contracts

    valid, problems = load_contracts(Settings.from_env().contracts_dir)
    for c in valid.values():
        click.echo(f"{c.id}\t{c.version}\t{c.terms.approval_status}\t{c.partner_id}\texpires {c.terms.expires}")
    for path in problems:
        click.echo(f"{path.stem}\t-\tINVALID (see `placelink contracts check`)")
