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


def _renewals(where: Path) -> dict[str, str]:
    """Each renewal waiting for signatures in ``where``'s renewals/ folder, by agreement id, in
    words: version, end date and signatures so far."""
    from pipelines.governance.renewal import describe_renewal, waiting_renewals

    return {i: describe_renewal(r) for i, r in waiting_renewals(Settings.from_env(), where).items()}


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
        by_items: dict[tuple[str, ...], list[str]] = {}
        for dataset, items in _not_listed(contract).items():
            by_items.setdefault(tuple(items), []).append(dataset)
        for items, datasets in by_items.items():
            click.echo(
                f"NOTE   {name}: the partner kit can also make {', '.join(items)} for "
                f"{', '.join(datasets)} from identifiers already shared (more evidence for "
                f"linkage). To send it, amend the agreement: `placelink contracts add-items "
                f"{contract.id} {' '.join(items)}`"
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


def _not_listed(contract) -> dict[str, list[str]]:
    """Per dataset, the keyed items the kit could make from what it already shares but the
    agreement does not list (pipelines.partner_kit.contract_draft.items_not_listed)."""
    from pipelines.partner_kit.contract_draft import items_not_listed

    found = {name: items_not_listed(ds) for name, ds in contract.datasets.items()}
    return {name: items for name, items in found.items() if items}


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
    for contract_id, said in sorted(_renewals(where).items()):
        click.echo(f"{contract_id}: {said}")
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

    valid, _, where, _ = _load(folder)
    renewals = _renewals(where)
    on = Settings.from_env().today()
    horizon = on + dt.timedelta(days=days)
    found = False
    for c in sorted(valid.values(), key=lambda c: c.terms.expires):
        t = c.terms
        status = flow_status(c, on).status
        renewal = f"; {renewals[c.id]}" if c.id in renewals else ""
        if t.expires < on:
            click.echo(
                f"{c.id}\t{status}\texpired {t.expires} ({(on - t.expires).days} days ago){renewal}"
            )
            found = True
        elif t.expires <= horizon:
            click.echo(
                f"{c.id}\t{status}\texpires {t.expires} (in {(t.expires - on).days} days){renewal}"
            )
            found = True
        elif on <= t.review_by <= horizon:
            click.echo(
                f"{c.id}\t{status}\treview due {t.review_by} (in {(t.review_by - on).days} days); "
                f"expires {t.expires}{renewal}"
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
    the last required role signs a draft, it becomes approved. An id whose renewal waits for
    signatures (`placelink contracts renew`) signs the renewal; its last signature puts it in
    force in place of the version it renews.
    """
    from pipelines.cli.partner import read_passphrase
    from pipelines.exchange.keys import ApproverKey, KeyFileError
    from pipelines.governance.approvals import hub_approver_registry, sign_contract
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contracts import ContractError
    from pipelines.governance.renewal import RENEWALS, renewal_path

    settings = Settings.from_env()
    path = _contract_file(contract, folder)
    if not Path(contract).is_file() and renewal_path(path, contract).is_file():
        path = renewal_path(path, contract)
        click.echo(f"signing the renewal of {contract} that waits for signatures ({path})")
    registry = hub_approver_registry(settings)
    try:
        key = ApproverKey.load(
            key_path, read_passphrase(passphrase_file, "PLACELINK_APPROVER_KEY_PASSPHRASE")
        )
        signed = sign_contract(path, key, settings.now(), registry)
    except (KeyFileError, ContractError, OSError) as exc:
        fail(str(exc))
    audit = hub_audit_log(settings)
    signed.audit(audit)
    click.echo(
        f"signed {signed.contract.label} ({path}) as {signed.label}, {signed.entry.signed_at}"
    )
    if path.parent.name == RENEWALS:
        _complete_renewal(path, registry, audit, settings.now())
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


def _complete_renewal(path: Path, registry, audit, now: dt.datetime) -> None:
    """Put a fully signed renewal in force (pipelines.governance.renewal.complete_renewal) and
    say so; nothing while signatures are missing."""
    from pipelines.governance.contracts import ContractError
    from pipelines.governance.renewal import SUPERSEDED, audit_renewal, complete_renewal

    try:
        done = complete_renewal(path, registry)
    except (ContractError, OSError) as exc:
        fail(f"the renewal in {path} is signed but could not be put in force: {exc}")
    if done is None:
        click.echo(
            "The version in force stays in force until every required role has signed the renewal."
        )
        return
    old, new = done
    audit_renewal(audit, old, new, now)
    if new.terms.expires == old.terms.expires:
        click.echo(
            f"Version {new.version} of {new.id} is in force in place of version {old.version}, "
            f"which is kept in {new.path.parent / SUPERSEDED}."
        )
        return
    click.echo(
        f"The renewal is in force: {new.label} replaces version {old.version} (expires "
        f"{old.terms.expires}) and expires {new.terms.expires}; version {old.version} is kept in "
        f"{new.path.parent / SUPERSEDED}."
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

    Writes a new version with later review and end dates as an unsigned draft in the folder's
    renewals/ subfolder (the dates are signed content, so every required role signs again with
    `placelink contracts approve`); every other line is kept. The version in force stays in force
    meanwhile; the last signature puts the renewal in its place and keeps the old version, with
    its signatures, in superseded/. Both steps are audited.
    """
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contracts import ContractError, load_contract
    from pipelines.governance.renewal import (
        audit_renewal_started,
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
    audit_renewal_started(hub_audit_log(settings), old, new, settings.now())
    click.echo(
        f"renewal of {old.label} (expires {old.terms.expires}) written as version {new.version}: "
        f"review by {new.terms.review_by}, expires {new.terms.expires}; {new.path}"
    )
    roles = ", ".join(f"{r.role} ({r.party})" for r in new.terms.required_signatures)
    click.echo(
        f"Every required role signs it: {roles}. Each runs "
        f"`placelink contracts approve --key THEIR.key {new.id}`."
    )
    click.echo(
        f"Version {old.version} stays in force until the last signature (it expires "
        f"{old.terms.expires}: collect the signatures before then); then version {new.version} "
        "takes its place."
    )


@contracts.command("add-items")
@click.argument("contract")
@click.argument("items", nargs=-1, required=True)
@click.option(
    "--dataset", help="Add them to this dataset only. Default: every dataset that can take them."
)
@click.option("--version", help="The new version label. Default: the next minor (1.0.0 → 1.1.0).")
@_DIR
def contracts_add_items(
    contract: str,
    items: tuple[str, ...],
    dataset: str | None,
    version: str | None,
    folder: Path | None,
) -> None:
    """(IG officer) Amend CONTRACT to list ITEMS the partner kit makes (full_name_bloom).

    For evidence the kit learned to make after the agreement was signed, from identifiers it
    already shares: each item goes to every dataset that shares what it is made of (or --dataset),
    with its reason. Writes the next version as an unsigned draft in the folder's renewals/
    subfolder, every other line kept; new items are signed content, so every required role signs
    again (`placelink contracts approve`), and the version in force stays in force until the last
    signature. Audited. A new identifier is not an amendment: draft a new agreement.
    """
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contracts import ContractError, load_contract
    from pipelines.governance.renewal import amend_agreement, audit_amendment_started
    from pipelines.partner_kit.contract_draft import items_to_add
    from pipelines.partner_kit.errors import PartnerKitError

    settings = Settings.from_env()
    path = _contract_file(contract, folder)
    try:
        old = load_contract(path)
        added = items_to_add(old, items, dataset)
        new = amend_agreement(path, added, version)
    except (ContractError, PartnerKitError) as exc:
        fail(str(exc))
    audit_amendment_started(hub_audit_log(settings), old, new, added, settings.now())
    for name, listed in added.items():
        click.echo(f"{name}: adds {', '.join(i['name'] for i in listed)}")
    click.echo(f"amendment of {old.label} written as version {new.version}; {new.path}")
    roles = ", ".join(f"{r.role} ({r.party})" for r in new.terms.required_signatures)
    click.echo(
        f"Every required role signs it: {roles}. Each runs "
        f"`placelink contracts approve --key THEIR.key {new.id}`."
    )
    click.echo(
        f"Version {old.version} stays in force until the last signature; then version "
        f"{new.version} takes its place. The partner's kit then sends the new items (with the new "
        "agreement), and the hub's linkage model uses them from its next retraining "
        "(`placelink run --retrain`); until then it links as before."
    )


@contracts.command("new")
@click.argument("contract_id")
@click.option("--partner", "partner_id", required=True, help="The partner's id (partner_id).")
@click.option(
    "--dataset",
    required=True,
    help="The dataset's name (the hub's landing table): clinic_referrals.",
)
@click.option(
    "--identifiers",
    required=True,
    help="The identifiers the partner holds, comma-separated: given_name,family_name,date_of_birth"
    " (any of nhs_number, given_name, family_name, date_of_birth, sex, postcode, address_line, "
    "uprn, family_id).",
)
@click.option(
    "--payload",
    multiple=True,
    help="A payload column as name, name:type or name:type:required (repeatable): "
    "referral_date:date:required.",
)
@click.option(
    "--date-format",
    "date_formats",
    multiple=True,
    help="How the partner's export writes dates, if not yyyy-mm-dd (repeatable): dd/mm/yyyy.",
)
@click.option(
    "--postcode-format",
    type=click.Choice(["uk", "any"]),
    help="uk: send only UK postcodes; any: other countries' postal codes too. Left out, the kit "
    "reads a file's postcodes as 'any' when most are another country's.",
)
@click.option("--provider", help="The partner's legal name (else left for the IG officer).")
@click.option(
    "--cadence",
    type=click.Choice(["monthly", "quarterly"]),
    default="monthly",
    show_default=True,
    help="How often the partner delivers.",
)
@click.option(
    "--years",
    type=click.IntRange(min=1, max=10),
    default=3,
    show_default=True,
    help="In force from today for this many years.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the draft (default: CONTRACT_ID.yaml here). Never overwrites.",
)
@_DIR
def contracts_new(
    contract_id: str,
    partner_id: str,
    dataset: str,
    identifiers: str,
    payload: tuple[str, ...],
    date_formats: tuple[str, ...],
    postcode_format: str | None,
    provider: str | None,
    cadence: str,
    years: int,
    out: Path | None,
    folder: Path | None,
) -> None:
    """(IG officer) Draft a new partner's agreement from the identifiers it holds.

    The draft lists exactly the hub items the partner kit makes of those identifiers, each with
    its reason, and the payload columns. What only people can decide (purpose, lawful basis,
    confidentiality, retention ...) is marked TO COMPLETE: the agreement is invalid until every
    marker is written over. The hub's side (recipient, its signing roles) is copied from an
    agreement in the contracts folder. Check it with `placelink contracts check --dir`, then put
    it in the hub's contracts folder for signatures.
    """
    import yaml

    from pipelines.governance.contracts import TO_COMPLETE, _unwritten
    from pipelines.partner_kit.contract_draft import PayloadColumn, draft_agreement
    from pipelines.partner_kit.errors import PartnerKitError

    target = out or Path(f"{contract_id}.yaml")
    if target.exists():
        fail(f"{target} already exists: give another --out, or move it away first")
    where, _ = _folder(folder)
    hub = None
    if where.is_dir():
        valid, _, _, _ = _load(folder)
        hub = next(iter(sorted(valid.values(), key=lambda c: c.id)), None)
        if contract_id in valid:
            fail(
                f"the contracts folder {where} already has an agreement {contract_id}: choose another id"
            )
    try:
        document = draft_agreement(
            contract_id,
            partner_id,
            dataset,
            [i.strip() for i in identifiers.split(",") if i.strip()],
            [PayloadColumn.parse(p) for p in payload],
            Settings.from_env().today(),
            provider=provider,
            hub=hub,
            date_formats=date_formats,
            postcode_format=postcode_format,
            frequency=cadence,
            years=years,
        )
    except PartnerKitError as exc:
        fail(str(exc))
    header = (
        f"# Draft data-sharing agreement for {partner_id}'s {dataset}, written by `placelink contracts new`.\n"
        f"# Write over every value marked {TO_COMPLETE}, check it with `placelink contracts check --dir"
        " FOLDER`,\n# then put it in the hub's contracts folder; every required role signs it with"
        " `placelink contracts approve`.\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        header + yaml.safe_dump(document, sort_keys=False, width=100), encoding="utf-8"
    )
    items = document["schema"][0]["properties"]
    todo = list(_unwritten(document))
    click.echo(
        f"wrote {target}: agreement {contract_id} (draft) for {dataset} from {partner_id}, "
        f"{len(items)} items: " + ", ".join(i["name"] for i in items)
    )
    if hub is not None:
        click.echo(f"the hub's side (recipient, its signing roles) is copied from {hub.label}")
    click.echo(f"{len(todo)} term(s) to write over (marked {TO_COMPLETE}):")
    for where_ in todo:
        click.echo(f"  {where_}")


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
