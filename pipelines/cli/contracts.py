"""`placelink contracts ...`: data-sharing agreements, for IG officers."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli.common import fail
from pipelines.settings import Settings


@click.group()
def contracts() -> None:
    """Data-sharing agreements (for IG officers)."""


def _folder(folder: Path | None) -> Path:
    return folder or Settings.from_env().contracts_dir


_DIR = click.option("--dir", "folder", type=click.Path(path_type=Path),
                    help="Contracts folder (default: contracts/, or PLACELINK_CONTRACTS).")


@contracts.command("check")
@_DIR
def contracts_check(folder: Path | None) -> None:
    """Validate every contract; exit 1 on any error (for CI)."""
    from pipelines.contracts import load_contracts

    folder = _folder(folder)
    if not folder.is_dir():
        fail(f"contracts folder {folder} does not exist; pass --dir or set PLACELINK_CONTRACTS")
    valid, problems = load_contracts(folder)
    on = Settings.from_env().today()
    for contract in valid.values():
        t = contract.terms
        click.echo(f"ok     {contract.path.name}: {contract.label}, {t.approval_status}")
        # Valid files that still need an IG officer's attention (warnings: exit code unchanged).
        if t.approval_status == "approved" and on > t.expires:
            click.echo(f"WARN   {contract.path.name}: approved but expired on {t.expires}; no extract is "
                       "accepted. Fix: renew it (new expires, re-approval) or set approval_status: expired")
        elif t.approval_status == "approved" and on > t.review_by:
            click.echo(f"WARN   {contract.path.name}: review was due by {t.review_by}. Fix: review the "
                       "agreement and set a new review_by")
    for path, error in problems.items():
        for line in str(error).splitlines():
            click.echo(f"ERROR  {line}")
    if not valid and not problems:
        click.echo(f"no contracts (*.yaml) in {folder}")
    click.echo(f"{len(valid)} valid, {len(problems)} with errors")
    sys.exit(1 if problems else 0)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@contracts.command("list")
@_DIR
def contracts_list(folder: Path | None) -> None:
    """Every agreement: status today, partner, purpose, expiry and last delivery."""
    from pipelines.contracts import load_contracts
    from pipelines.governance import flow_history, flow_status

    valid, problems = load_contracts(_folder(folder))
    settings = Settings.from_env()
    history = flow_history(settings.audit_log())
    on = settings.today()
    rows = [("CONTRACT", "VERSION", "STATUS", "PARTNER", "EXPIRES", "LAST DELIVERY", "PURPOSE")]
    for c in valid.values():
        h = history.get(c.id)
        last = (h.last_accepted or "never")[:10] if h else "never"
        rows.append((c.id, c.version, flow_status(c, on).status, c.partner_id, str(c.terms.expires),
                     last, _short(c.terms.purpose, 60)))
    for path in problems:
        rows.append((path.stem, "-", "INVALID", "-", "-", "-", "see `placelink contracts check`"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])


@contracts.command("show")
@click.argument("contract_id")
@click.option("--full", is_flag=True, help="Also give the reason for every keyed token.")
@_DIR
def contracts_show(contract_id: str, full: bool, folder: Path | None) -> None:
    """One agreement in plain English."""
    from pipelines.contract_review import describe
    from pipelines.contracts import load_contracts
    from pipelines.governance import flow_history

    valid, problems = load_contracts(_folder(folder))
    contract = valid.get(contract_id)
    if contract is None:
        broken = [e for p, e in problems.items() if p.stem == contract_id]
        if broken:
            fail(f"contract {contract_id} is invalid: {broken[0]}")
        fail(f"no contract with id '{contract_id}' (known: {', '.join(sorted(valid)) or 'none'})")
    settings = Settings.from_env()
    history = flow_history(settings.audit_log()).get(contract.id)
    from pipelines.governance import FlowHistory

    click.echo(describe(contract, settings.today(), history or FlowHistory(), full=full))


@contracts.command("expiring")
@click.option("--days", default=90, show_default=True, help="Window in days from today (PLACELINK_AS_OF moves today).")
@_DIR
def contracts_expiring(days: int, folder: Path | None) -> None:
    """Agreements that expire, or are due for review, within --days (and ones already expired)."""
    import datetime as dt

    from pipelines.contracts import load_contracts
    from pipelines.governance import flow_status

    valid, _ = load_contracts(_folder(folder))
    on = Settings.from_env().today()
    horizon = on + dt.timedelta(days=days)
    found = False
    for c in sorted(valid.values(), key=lambda c: c.terms.expires):
        t = c.terms
        status = flow_status(c, on).status
        if t.expires < on:
            click.echo(f"{c.id}\t{status}\texpired {t.expires} ({(on - t.expires).days} days ago)")
            found = True
        elif t.expires <= horizon:
            click.echo(f"{c.id}\t{status}\texpires {t.expires} (in {(t.expires - on).days} days)")
            found = True
        elif on <= t.review_by <= horizon:
            click.echo(f"{c.id}\t{status}\treview due {t.review_by} (in {(t.review_by - on).days} days); "
                       f"expires {t.expires}")
            found = True
    if not found:
        click.echo(f"no agreement expires or is due for review in the next {days} days (to {horizon})")


@contracts.command("diff")
@click.argument("old", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("new", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--fail-on-significant", is_flag=True,
              help="Exit 1 if any change is governance-significant (for CI on contract changes).")
def contracts_diff(old: Path, new: Path, fail_on_significant: bool) -> None:
    """Classify each change between two versions of a contract: governance-significant or editorial."""
    from pipelines.contract_review import compare_contracts, format_changes
    from pipelines.contracts import ContractError, load_contract

    try:
        changes = compare_contracts(old, new)
    except ContractError as exc:
        fail(str(exc))
    click.echo(format_changes(changes, str(old), str(new)))
    try:
        load_contract(new)
    except ContractError as exc:
        click.echo(f"\nnote: the new version is not a valid contract yet:\n{exc}")
    if fail_on_significant and any(c.significant for c in changes):
        sys.exit(1)
