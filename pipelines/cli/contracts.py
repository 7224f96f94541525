"""`placelink contracts ...`: data-sharing agreements, for IG officers."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from pipelines.cli.common import existing_path_option, fail, new_key_pair_options, write_key_pair
from pipelines.core.settings import CONTRACTS_PRECEDENCE, Settings


@click.group(
    help="Data-sharing agreements (for IG officers and approvers).\n\nEvery command reads one folder "
    "of agreements, the one the hub enforces: --dir if given, else " + CONTRACTS_PRECEDENCE + "."
)
def contracts() -> None:
    pass


def _folder(folder: Path | None) -> tuple[Path, str]:
    """The contracts folder a command reads, and why (the one precedence rule, CONTRACTS_PRECEDENCE)."""
    if folder is not None:
        return folder.resolve(), "--dir"
    settings = Settings.from_env()
    return settings.contracts_dir, settings.contracts_source


def _load(folder: Path | None):
    """(valid contracts with their signatures checked against the hub's approver registry,
    problems, folder, why that folder)."""
    from pipelines.governance.approvals import load_hub_contracts

    where, source = _folder(folder)
    if not where.is_dir():
        fail(
            f"contracts folder {where} ({source}) does not exist; pass --dir or set PLACELINK_CONTRACTS"
        )
    valid, problems = load_hub_contracts(Settings.from_env(), where)
    return valid, problems, where, source


_DIR = click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    help="Contracts folder. Default: " + CONTRACTS_PRECEDENCE + ".",
)


@contracts.command("check")
@_DIR
def contracts_check(folder: Path | None) -> None:
    """Validate every contract and its signatures; exit 1 on any error (for CI).

    An approved agreement is an error unless every role in its required_signatures has signed
    its current content with a key in the hub's approver registry (PLACELINK_HOME/keys/approvers):
    the hub holds its flow. A draft only lists the signatures it still needs.
    """
    valid, problems, where, source = _load(folder)
    settings = Settings.from_env()
    on = settings.today()
    click.echo(f"contracts: {where} ({source}); approver registry: {settings.approver_keys}")
    errors = len(problems)
    for contract in valid.values():
        t = contract.terms
        approval = contract.approval
        name = contract.path.name
        if t.approval_status == "approved" and not approval.complete:
            errors += 1
            click.echo(
                f"ERROR  {name}: {contract.label} is approved, but {approval.shortfall()}. The hub holds "
                "its flow (no extract is accepted, its data leaves linkage and publication). Fix: each "
                "missing approver signs with `placelink contracts approve --key KEY "
                f"{name}`; a key the hub does not know is registered with `placelink hub "
                "register-approver-key`; or set approval_status: draft"
            )
            for check in approval.void:
                click.echo(f"         - {check.who}, {check.signed_on}: {check.problem}")
            continue
        click.echo(f"ok     {name}: {contract.label}, {t.approval_status}; {approval.summary()}")
        for check in approval.void:
            click.echo(
                f"WARN   {name}: the signature of {check.who} ({check.signed_on}) does not count: "
                f"{check.problem}"
            )
        if t.approval_status == "draft" and approval.complete:
            click.echo(
                f"NOTE   {name}: every required role has signed; set approval_status: approved to put it "
                "in force (`placelink contracts approve` does this when the last approver signs)"
            )
        if t.approvers:
            click.echo(
                f"WARN   {name}: 'approvers' is a text record that proves nothing: approvals are the "
                "signatures in 'approvals'. Fix: remove 'approvers'"
            )
        # Valid files that still need an IG officer's attention (warnings: exit code unchanged).
        if t.approval_status == "approved" and on > t.expires:
            click.echo(
                f"WARN   {name}: approved but expired on {t.expires}; no extract is "
                "accepted. Fix: renew it (new expires, re-approval) or set approval_status: expired"
            )
        elif t.approval_status == "approved" and on > t.review_by:
            click.echo(
                f"WARN   {name}: review was due by {t.review_by}. Fix: review the "
                "agreement and set a new review_by"
            )
    for error in problems.values():
        for line in str(error).splitlines():
            click.echo(f"ERROR  {line}")
    if not valid and not problems:
        click.echo(f"no contracts (*.yaml) in {where}")
    if source.startswith("the repository's templates"):
        click.echo(
            "NOTE   these are the repository's templates: approval is per installation (approvers' keys "
            "are never committed), so they ship as unsigned drafts. A hub keeps its own signed copies "
            "in PLACELINK_HOME/contracts (README: Data-sharing agreements)"
        )
    click.echo(
        f"{len(valid)} valid, {len(problems)} with errors"
        + (
            f", {errors - len(problems)} approved without every required signature"
            if errors > len(problems)
            else ""
        )
    )
    sys.exit(1 if errors else 0)


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@contracts.command("list")
@_DIR
def contracts_list(folder: Path | None) -> None:
    """Every agreement: status today, signatures, partner, purpose, expiry and last delivery."""
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.flows import flow_history, flow_status

    valid, problems, where, source = _load(folder)
    settings = Settings.from_env()
    history = flow_history(hub_audit_log(settings))
    on = settings.today()
    rows = [
        (
            "CONTRACT",
            "VERSION",
            "STATUS",
            "SIGNED",
            "PARTNER",
            "EXPIRES",
            "LAST DELIVERY",
            "PURPOSE",
        )
    ]
    for c in valid.values():
        h = history.get(c.id)
        last = (h.last_accepted or "never")[:10] if h else "never"
        signed = f"{len(c.approval.required) - len(c.approval.missing)}/{len(c.approval.required)}"
        rows.append(
            (
                c.id,
                c.version,
                flow_status(c, on).status,
                signed,
                c.partner_id,
                str(c.terms.expires),
                last,
                _short(c.terms.purpose, 60),
            )
        )
    for contract_id in problems:
        rows.append(
            (contract_id, "-", "INVALID", "-", "-", "-", "-", "see `placelink contracts check`")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    click.echo(f"(contracts: {where}, {source})")


@contracts.command("show")
@click.argument("contract_id")
@click.option("--full", is_flag=True, help="Also give the reason for every keyed token.")
@_DIR
def contracts_show(contract_id: str, full: bool, folder: Path | None) -> None:
    """One agreement in plain English."""
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contract_review import describe
    from pipelines.governance.flows import flow_history

    valid, problems, _, _ = _load(folder)
    contract = valid.get(contract_id)
    if contract is None:
        if contract_id in problems:
            fail(f"contract {contract_id} is invalid: {problems[contract_id]}")
        fail(f"no contract with id '{contract_id}' (known: {', '.join(sorted(valid)) or 'none'})")
    settings = Settings.from_env()
    history = flow_history(hub_audit_log(settings)).get(contract.id)
    from pipelines.governance.flows import FlowHistory

    click.echo(describe(contract, settings.today(), history or FlowHistory(), full=full))


@contracts.command("expiring")
@click.option(
    "--days",
    default=90,
    show_default=True,
    help="Window in days from today (PLACELINK_AS_OF moves today).",
)
@_DIR
def contracts_expiring(days: int, folder: Path | None) -> None:
    """Agreements that expire, or are due for review, within --days (and ones already expired)."""
    import datetime as dt

    from pipelines.governance.flows import flow_status

    valid, _, _, _ = _load(folder)
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
            click.echo(
                f"{c.id}\t{status}\treview due {t.review_by} (in {(t.review_by - on).days} days); "
                f"expires {t.expires}"
            )
            found = True
    if not found:
        click.echo(
            f"no agreement expires or is due for review in the next {days} days (to {horizon})"
        )


@contracts.command("diff")
@click.argument("old", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.argument("new", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "--fail-on-significant",
    is_flag=True,
    help="Exit 1 if any change is governance-significant (for CI on contract changes).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for a person (changed text word by word, nothing shortened); json for tools.",
)
def contracts_diff(old: Path, new: Path, fail_on_significant: bool, output: str) -> None:
    """Every change between two versions of a contract: governance-significant (voids the
    signatures), status, or editorial; changed text shown word by word, in full."""
    import json

    from pipelines.governance.contract_review import compare_files, comparison_json, format_changes
    from pipelines.governance.contracts import ContractError, load_contract

    try:
        comparison = compare_files(old, new)
    except ContractError as exc:
        fail(str(exc))
    try:
        load_contract(new)
        problems: list[str] = []
    except ContractError as exc:
        problems = str(exc).splitlines()
    if output == "json":
        click.echo(
            json.dumps(
                comparison_json(comparison, problems), indent=2, ensure_ascii=False, default=str
            )
        )
    else:
        click.echo(format_changes(comparison))
        if problems:
            click.echo(
                "\nnote: the new version is not a valid contract yet:\n" + "\n".join(problems)
            )
    if fail_on_significant and any(c.significant for c in comparison.changes):
        sys.exit(1)


@contracts.command("approver-keygen")
@click.option(
    "--name", required=True, help="The approver's name as it should appear in the register."
)
@click.option(
    "--role",
    type=click.Choice(["caldicott_guardian", "siro", "dpo", "information_governance_lead"]),
    required=True,
    help="The role this key signs as (one key per role).",
)
@click.option(
    "--organisation",
    required=True,
    help="The organisation, exactly as the agreements name the provider or recipient.",
)
@new_key_pair_options("PLACELINK_APPROVER_KEY_PASSPHRASE")
def approver_keygen(
    name: str, role: str, organisation: str, out: Path, passphrase_file: Path | None
) -> None:
    """(Approver) Create your Ed25519 key for signing agreements; send only the .pub to the hub's IG officer."""
    from pipelines.cli.partner import read_passphrase
    from pipelines.exchange.keys import ApproverKey

    passphrase = read_passphrase(passphrase_file, "PLACELINK_APPROVER_KEY_PASSPHRASE")
    public_path = write_key_pair(
        ApproverKey.generate(name, role, organisation), out, passphrase, "approver key"
    )
    click.echo(
        "The IG officer registers it: `placelink hub register-approver-key --public-key "
        f"{public_path.name}`; then sign with `placelink contracts approve --key {out.name} CONTRACT`"
    )


@contracts.command("approve")
@click.argument("contract")
@existing_path_option(
    "--key",
    "key_path",
    required=True,
    dir_okay=False,
    help="Your approver key (`placelink contracts approver-keygen`).",
)
@existing_path_option(
    "--passphrase-file",
    dir_okay=False,
    help="Passphrase of the key (or set PLACELINK_APPROVER_KEY_PASSPHRASE).",
)
@_DIR
def contracts_approve(
    contract: str, key_path: Path, passphrase_file: Path | None, folder: Path | None
) -> None:
    """(Approver) Sign CONTRACT (a file, or an id in the contracts folder) off in your role.

    Your signature covers the agreement's signed content (its governance-significant terms,
    docs/governance.md): a later significant change voids it; an editorial one does not. When
    the last required role signs a draft, it becomes approved.
    """
    from pipelines.cli.partner import read_passphrase
    from pipelines.exchange.keys import ApproverKey, KeyFileError
    from pipelines.governance.approvals import hub_approver_registry, sign_contract
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contracts import ContractError

    settings = Settings.from_env()
    path = _contract_file(contract, folder)
    try:
        key = ApproverKey.load(
            key_path, read_passphrase(passphrase_file, "PLACELINK_APPROVER_KEY_PASSPHRASE")
        )
        signed = sign_contract(path, key, settings.now(), hub_approver_registry(settings))
    except (KeyFileError, ContractError, OSError) as exc:
        fail(str(exc))
    signed.audit(hub_audit_log(settings))
    click.echo(
        f"signed {signed.contract.label} ({path}) as {signed.label}, {signed.entry.signed_at}"
    )
    click.echo(f"signed content {signed.entry.content_sha256}")
    approval = signed.approval
    if approval is None:
        return
    if not approval.met.get(signed.requirement):
        click.echo(
            f"note: the hub does not accept this signature yet: "
            f"{next(c.problem for c in approval.void if c.entry == signed.entry)}"
        )
    summary = approval.summary()
    click.echo(summary[0].upper() + summary[1:] + ".")
    if signed.approved_now:
        click.echo(
            "Every required role has signed: approval_status is now approved; the hub accepts extracts "
            f"from {signed.contract.terms.valid_from} to {signed.contract.terms.expires}."
        )


def _contract_file(contract: str, folder: Path | None) -> Path:
    """CONTRACT as a file: the path given, else ``<id>.yaml`` in the contracts folder."""
    path = Path(contract)
    if path.is_file():
        return path
    where, source = _folder(folder)
    path = where / f"{contract}.yaml"
    if not path.is_file():
        fail(f"no contract file {contract}, and no {path.name} in {where} ({source})")
    return path


@contracts.command("renew")
@click.argument("contract")
@click.option(
    "--years",
    type=click.IntRange(min=1, max=10),
    default=3,
    show_default=True,
    help="Move review_by and expires on by this many years (ignored with --expires).",
)
@click.option(
    "--expires",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The renewal's end date (YYYY-MM-DD) instead of --years.",
)
@click.option(
    "--review-by",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The renewal's review date (YYYY-MM-DD). Default: moved on as far as the end date.",
)
@click.option("--version", help="The new version label. Default: the next minor (1.0.0 → 1.1.0).")
@_DIR
def contracts_renew(
    contract: str,
    years: int,
    expires: dt.datetime | None,
    review_by: dt.datetime | None,
    version: str | None,
    folder: Path | None,
) -> None:
    """(IG officer) Renew CONTRACT (a file, or an id in the contracts folder) before it expires.

    Writes a new version with later review and end dates as an unsigned draft (the dates are
    signed content, so every required role signs again with `placelink contracts approve`); every
    other line is kept. The version it replaces is kept, with its signatures, in the folder's
    superseded/ subfolder, and the renewal is audited (contract_renewed). Until the last signature,
    the hub holds new deliveries under it.
    """
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contracts import ContractError, load_contract
    from pipelines.governance.renewal import (
        SUPERSEDED,
        audit_renewal,
        renew_agreement,
        renewed_terms,
    )

    settings = Settings.from_env()
    path = _contract_file(contract, folder)
    try:
        old = load_contract(path)
        default_review, default_expires = renewed_terms(old, years)
        if expires is not None:
            end = expires.date()
            moved = end - old.terms.expires
            review = review_by.date() if review_by else old.terms.review_by + moved
        else:
            end = default_expires
            review = review_by.date() if review_by else default_review
        new = renew_agreement(path, end, review, version)
    except ContractError as exc:
        fail(str(exc))
    audit_renewal(hub_audit_log(settings), old, new, settings.now())
    click.echo(
        f"renewed {old.label} (expires {old.terms.expires}) as version {new.version}: "
        f"review by {new.terms.review_by}, expires {new.terms.expires}; {path}"
    )
    click.echo(f"the version it replaces is kept in {path.parent / SUPERSEDED}")
    roles = ", ".join(f"{r.role} ({r.party})" for r in new.terms.required_signatures)
    click.echo(
        f"It is a draft until every required role signs it again: {roles}. Each runs "
        f"`placelink contracts approve --key THEIR.key {new.id}`."
    )
    click.echo(
        f"Until the last signature the hub holds new deliveries under {new.id} (from now, not "
        f"only after {old.terms.expires}): collect the signatures before its next delivery."
    )


@contracts.command("register")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for ig_register.html and ig_register.csv (created if missing).",
)
@_DIR
def contracts_register(out: Path, folder: Path | None) -> None:
    """Write the IG register (HTML and CSV) now, from the agreements, the audit log and the
    published file, without a pipeline run. Reads only; the hub's own copy is in PLACELINK_HOME/reports."""
    import dataclasses

    from pipelines.governance.register import REGISTER_CSV, write_register

    valid, problems, where, source = _load(folder)
    settings = dataclasses.replace(
        Settings.from_env(), contracts_dir=where, contracts_source=source
    )
    page = write_register(settings, valid, problems, out=out)
    click.echo(
        f"register of {len(valid) + len(problems)} agreement(s) from {where} ({source}), as of {settings.today()}:"
    )
    click.echo(f"  {page}")
    click.echo(f"  {page.with_name(REGISTER_CSV)}")
