"""`placelink hub ...`: hub operations."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.common import existing_path_option, fail, refuse_busy
from pipelines.core.settings import Settings


@click.group()
def hub() -> None:
    """Hub operations."""


@hub.command("keygen")
@click.option(
    "--kem",
    type=click.Choice(["MLKEM768_X25519", "X25519"]),
    default="MLKEM768_X25519",
    show_default=True,
    help="Post-quantum hybrid (ML-KEM-768 + X25519) or classical X25519.",
)
@existing_path_option(
    "--passphrase-file",
    dir_okay=False,
    help="Protect the private key with this passphrase; the hub then reads it from "
    "PLACELINK_HUB_KEY_PASSPHRASE.",
)
def hub_keygen(kem: str, passphrase_file: Path | None) -> None:
    """Create the hub's HPKE key pair in PLACELINK_HOME/keys (hub.key private, hub.pub for partners)."""
    from pipelines.cli.partner import read_passphrase
    from pipelines.exchange.keys import HubKey, KeyFileError

    settings = Settings.from_env()
    public_path = settings.hub_key_path.with_suffix(".pub")
    if settings.hub_key_path.exists():
        fail(
            f"{settings.hub_key_path} exists; the hub key is never overwritten (envelopes in flight "
            "were encrypted for it). Move it away first to rotate it."
        )
    key = HubKey.generate(kem)
    try:
        key.save(
            settings.hub_key_path, read_passphrase(passphrase_file, "PLACELINK_HUB_KEY_PASSPHRASE")
        )
        if public_path.exists():
            public_path.unlink()  # a stale public key for a key that no longer exists
        key.public.save(public_path)
    except KeyFileError as exc:
        fail(str(exc))
    click.echo(f"hub decryption key (private, mode 0600): {settings.hub_key_path}")
    click.echo(f"public key for partners ({kem}): {public_path}")
    click.echo(f"fingerprint: {key.fingerprint}")


@hub.command("register-partner-key")
@existing_path_option(
    "--contract",
    "contract_path",
    required=True,
    dir_okay=False,
    help="The contract whose extracts this key may sign.",
)
@existing_path_option(
    "--public-key",
    "public_path",
    required=True,
    dir_okay=False,
    help="The partner's .pub file from `placelink partner keygen`.",
)
def register_partner_key(contract_path: Path, public_path: Path) -> None:
    """(IG officer) Name a partner's public key in its contract and keep it where the hub finds it."""
    from pipelines.exchange.keys import KeyFileError, SigningPublicKey
    from pipelines.exchange.keys import register_partner_key as register
    from pipelines.governance.contracts import ContractError, load_contract

    settings = Settings.from_env()
    try:
        public = SigningPublicKey.load(public_path)
        contract = load_contract(contract_path)
        if public.partner_id != contract.partner_id:
            fail(
                f"{public_path.name} is partner '{public.partner_id}'s key; contract {contract.label} "
                f"is for partner '{contract.partner_id}'"
            )
        stored = register(contract_path, public, settings.partner_keys)
        load_contract(contract_path)
    except (KeyFileError, ContractError, OSError) as exc:
        fail(str(exc))
    click.echo(f"contract {contract.label}: signing_key_fingerprint set to {public.fingerprint}")
    click.echo(f"public key kept at {stored}")
    if contract_path.resolve().parent != settings.contracts_dir:
        click.echo(
            f"note: the hub reads contracts from {settings.contracts_dir} ({settings.contracts_source})"
        )


@hub.command("dagster-home")
def dagster_home() -> None:
    """Print Dagster's instance folder for this hub (DAGSTER_HOME, else PLACELINK_HOME/dagster), writing
    the local instance's dagster.yaml there if it has none, or bringing an older one up to one run at a
    time; a deployment's (DAGSTER_HOME) is only checked (`make ui` runs this first)."""
    from pipelines.orchestration.run import ensure_dagster_home

    click.echo(
        ensure_dagster_home(
            Settings.from_env(), warn=lambda message: click.echo(f"note: {message}", err=True)
        )
    )


@hub.command("deliveries")
@click.option(
    "--overdue", is_flag=True, help="Only the datasets whose latest due delivery has not arrived."
)
def deliveries(overdue: bool) -> None:
    """Each dataset's delivery cadence, what arrived last and when the next is due (from the contracts
    and the audit log; the warehouse is not opened, so this never disturbs a run)."""
    from pipelines.governance.approvals import load_hub_contracts
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.cadence import accepted_deliveries, delivery_statuses

    settings = Settings.from_env()
    contracts, _ = load_hub_contracts(settings)  # signatures checked: a draft is due nowhere
    statuses = delivery_statuses(
        contracts, accepted_deliveries(hub_audit_log(settings)), settings.today()
    )
    without = sorted(f"{c.id}" for c in contracts.values() if c.terms.delivery is None)
    shown = [s for s in statuses if s.overdue] if overdue else statuses
    if overdue and not shown:
        click.echo(f"no delivery is overdue on {settings.today()}")
    rows = [("CONTRACT", "DATASET", "CADENCE", "LAST PERIOD", "ACCEPTED", "STATUS")]
    for s in shown:
        cadence = f"{s.frequency}, {s.kind}, due day {s.due_day}"
        state = (
            f"OVERDUE {s.days_overdue} day(s): {s.expected_period} was due by {s.due_on}"
            if s.overdue
            else f"on time; next {s.next_period} due by {s.next_due_on}"
        )
        rows.append(
            (
                s.contract_id,
                s.dataset,
                cadence,
                s.last_period or "none",
                (s.last_accepted_at or "never")[:10],
                state,
            )
        )
    if len(rows) > 1:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    if without and not overdue:
        click.echo(f"no delivery term (lateness not tracked): {', '.join(without)}")


@hub.group()
def quarantine() -> None:
    """Extracts held at arrival, with the reason."""


@quarantine.command("list")
def quarantine_list() -> None:
    """Every file that reached the inbox: held (with the failed check and reason, from the quarantine
    folder) or accepted (from the audit log). Safe during a run: the warehouse is not opened."""
    from pipelines.governance.audit import hub_audit_log
    from pipelines.hub.quarantine import accepted_deliveries, held_files

    settings = Settings.from_env()
    held = held_files(settings.quarantine)
    accepted = accepted_deliveries(hub_audit_log(settings))
    if not held:
        click.echo("no extracts are held in quarantine")
    for item in held:
        click.echo(
            f"HELD      {item['held_as']}\t{item['received_at']}\t{item['check']}\t"
            f"{item.get('contract') or '-'}\t{item['found']}"
        )
    for row in accepted:
        click.echo(
            f"ACCEPTED  {row['file_name']}\t{row['received_at']}\t{row['contract']}\t"
            f"{row['dataset']}\t{row['row_count']} rows"
        )
    if held:
        click.echo(
            "See why with `placelink hub quarantine show NAME`; re-submit after a fix with "
            "`placelink hub quarantine release NAME`."
        )


@quarantine.command("show")
@click.argument("name")
def quarantine_show(name: str) -> None:
    """Why the held extract NAME (as `hub quarantine list` names it) was held: the check, what was
    expected, what was found and what to do."""
    from pipelines.hub.quarantine import held_files

    for item in held_files(Settings.from_env().quarantine):
        if item["held_as"] == name:
            click.echo(item["message"])
            click.echo(
                f"check:    {item['check']}\nexpected: {item['expected']}\nfound:    {item['found']}\n"
                f"to do:    {item['action']}\nheld at:  {item['received_at']}"
            )
            if item.get("held_content"):
                click.echo(f"held:     {item['held_content']}")
            return
    fail(f"no held extract named {name}; see `placelink hub quarantine list`")


@quarantine.command("release")
@click.argument("name")
def quarantine_release(name: str) -> None:
    """Put a held extract back in the inbox, unchanged, to be checked again by the next run
    (for example after the contract was fixed)."""
    import getpass

    from pipelines.core.run_lock import RunLockBusy, run_lock
    from pipelines.governance.audit import hub_audit_log
    from pipelines.hub.quarantine import ReleaseError, release

    settings = Settings.from_env()
    try:
        # The run moves files into quarantine and deletes old held ones: release between runs.
        with run_lock(settings.home, "placelink hub quarantine release"):
            target = release(
                settings.quarantine,
                name,
                settings.inbox,
                hub_audit_log(settings),
                released_at=settings.now(),
                by=getpass.getuser(),
            )
    except ReleaseError as exc:
        fail(str(exc))
    except RunLockBusy as exc:
        refuse_busy(exc, f"release {name} after the run ends; it stays held, unchanged, meanwhile")
    click.echo(f"released {name} to {target}; the next run (or the inbox sensor) checks it again")


@hub.command("register-approver-key")
@existing_path_option(
    "--public-key",
    "public_path",
    required=True,
    dir_okay=False,
    help="The approver's .pub file from `placelink contracts approver-keygen`.",
)
def register_approver_key(public_path: Path) -> None:
    """(IG officer) Trust an approver's key for the role and organisation it names, after checking
    them with the person; keeps it in PLACELINK_HOME/keys/approvers and audits it."""
    from pipelines.exchange.keys import ApproverPublicKey, KeyFileError
    from pipelines.governance.approvals import hub_approver_registry, load_hub_contracts
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contracts import SIGNING_ROLES

    settings = Settings.from_env()
    try:
        public = ApproverPublicKey.load(public_path)
        stored = hub_approver_registry(settings).register(public)
    except (KeyFileError, OSError) as exc:
        fail(str(exc))
    hub_audit_log(settings).append(
        "approver_key_registered",
        approver=public.name,
        role=public.role,
        organisation=public.organisation,
        key=public.fingerprint,
    )
    click.echo(
        f"registered {public.name}, {SIGNING_ROLES[public.role]}, {public.organisation}: {public.fingerprint}"
    )
    click.echo(f"public key kept at {stored}")
    contracts, _ = load_hub_contracts(settings)
    can_sign = [
        f"{c.id} ({r.party})"
        for c in contracts.values()
        for r in c.terms.required_signatures
        if r.role == public.role
        and (c.terms.provider if r.party == "provider" else c.terms.recipient).name
        == public.organisation
    ]
    click.echo(
        "may sign: "
        + (
            ", ".join(can_sign)
            if can_sign
            else f"no agreement in {settings.contracts_dir} asks for this role at this organisation"
        )
    )


@hub.command("accept-publication")
@click.option(
    "--reason",
    required=True,
    help="Why the next publication may lose a source or empty a table (e.g. 'the council ended "
    "the homelessness flow'); written to the audit log for the IG officer.",
)
def accept_publication(reason: str) -> None:
    """Let the next run publish although it drops a source or empties a table (audited).

    Without this, a publication that loses what the last one had, for no known reason (retention,
    an agreement out of force, a withdrawal), is blocked and `placelink run` exits 4."""
    from pipelines.governance.audit import hub_audit_log
    from pipelines.publish.publication_guard import ACCEPT_EVENT, record_acceptance

    settings = Settings.from_env()
    if not reason.strip():
        fail(
            'give the reason for accepting the loss (--reason "..."): the IG officer reads it in the audit log'
        )
    event = record_acceptance(hub_audit_log(settings), reason)
    click.echo(
        f"the next publication may drop a source or empty a table (audited as {ACCEPT_EVENT} "
        f"{event['change_id']}); it names each loss and this reason"
    )
