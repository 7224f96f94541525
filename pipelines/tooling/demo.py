"""The main job on embedded defaults: a synthetic place, every partner's kit, the hub, a summary.

The demo plays every party on one machine. It keeps the parties' files apart the way
they would be in real life: what only partners hold (raw extracts, the linkage key, their
signing keys, record lookups, outboxes) in a partner-side folder outside the hub's home
(``Settings.demo_partners``, by default ``<PLACELINK_HOME>-partners``), and in the hub's home
only what a hub holds: its own key, partners' public keys, and sealed envelopes in the inbox.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.core.clock import Clock
from pipelines.core.run_lock import HOLDER_NAME, LOCK_NAME, run_lock
from pipelines.core.settings import REPO_ROOT, Settings
from pipelines.core.stages import stage
from pipelines.exchange.envelope import seal
from pipelines.exchange.extract_file import delivery_fields
from pipelines.exchange.keys import HubKey, HubPublicKey, SigningKey, register_partner_key
from pipelines.governance.approvals import hub_approver_registry, keys_for_required_roles, sign_off
from pipelines.governance.audit import hub_audit_log
from pipelines.governance.contracts import load_contracts
from pipelines.hub.quarantine import held_files
from pipelines.linkage.evaluation import LinkageAccuracy, linkage_accuracy
from pipelines.orchestration.run import failure_messages, run_pipeline
from pipelines.orchestration.run_outcome import HELD, RunOutcome, run_outcome
from pipelines.partner_kit.seal import SealedExtract, seal_prepared
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.publish.outcomes_report import headline_effect
from pipelines.tooling.partner_side import contract_datasets, prepare_place_dataset
from pipelines.tooling.synth import generate_place
from pipelines.tooling.synth.study import DELIVERED_AT, DELIVERY_PERIOD

DEMO_MARKER = ".placelink-demo"
RUN_LOCK_FILES = (LOCK_NAME, HOLDER_NAME)
# The people the demo plays when it signs the agreements off: (role, organisation) -> name.
HUB = "Northshire Place Partnership Data Hub (hosted by Northshire Borough Council)"
APPROVERS = {
    ("caldicott_guardian", "Northshire NHS Foundation Trust"): "Dr J. Whitmore",
    ("siro", "Northshire NHS Foundation Trust"): "S. Begum",
    ("caldicott_guardian", "Northshire Borough Council"): "R. Patel",
    ("siro", "Northshire Borough Council"): "D. Clarke",
    (
        "information_governance_lead",
        "Northshire Family Hub Trust (registered charity)",
    ): "M. Hughes",
    ("siro", HUB): "K. Adeyemi",
    ("dpo", HUB): "A. Okafor",
}


class DemoRefused(RuntimeError):
    pass


@dataclass
class DemoReport:
    home: Path
    partners: Path | None = None  # the partner side (raw extracts, keys, lookups), outside the home
    timings: dict[str, float] = field(default_factory=dict)
    prepared: list = field(default_factory=list)
    deliveries: list[tuple] = field(default_factory=list)
    persons: int = 0
    identity_records: int = 0
    accuracy: LinkageAccuracy | None = None
    published: list[tuple[str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    held: list[dict] = field(default_factory=list)
    headline: str | None = None
    as_of: dt.datetime | None = None
    later_months: list[str] = field(default_factory=list)  # one summary line per later month
    # The worst run outcome (pipelines.orchestration.run_outcome): its exit code and summary line.
    exit_code: int = 0
    outcome: str = ""
    # The deliveries the demo spoils on purpose (deliver_bad_examples): holding them is the demo
    # working, so they alone do not make `placelink demo` exit 3.
    expected_held: set[str] = field(default_factory=set)


def approver_side(settings: Settings) -> Path:
    """Where the demo's approvers keep their private keys: on the partner side, never in the hub's
    home (``<demo partners>/approvers``), as each approver would keep theirs on their own machine."""
    return settings.demo_partners / "approvers"


def reset_home(settings: Settings) -> None:
    """Start from an empty home, but never wipe a folder that is not a demo home."""
    _reset(settings.home, "PLACELINK_HOME")


def reset_partners(settings: Settings) -> None:
    """Start the partner-side folder from empty too, refusing one the demo did not make, or
    one inside the hub's home (or around it): the hub must never hold partner material."""
    partners, home = settings.demo_partners, settings.home
    if partners.is_relative_to(home) or home.is_relative_to(partners):
        raise DemoRefused(
            f"the demo's partner folder {partners} must be outside PLACELINK_HOME={home} (the hub "
            "never holds the linkage key or raw extracts): set PLACELINK_DEMO_PARTNERS elsewhere"
        )
    _reset(partners, "PLACELINK_DEMO_PARTNERS")


def _reset(folder: Path, variable: str) -> None:
    # The run lock the demo holds stays: a new file there would let another run take it meanwhile.
    if (
        folder.exists()
        and any(p.name not in RUN_LOCK_FILES for p in folder.iterdir())
        and not (folder / DEMO_MARKER).exists()
    ):
        raise DemoRefused(
            f"{variable}={folder} already holds files that are not from a demo; "
            f"the demo starts from scratch, so point {variable} at an empty folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.name in RUN_LOCK_FILES:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (folder / DEMO_MARKER).write_text(
        "This folder was created by `placelink demo` and is rebuilt by it.\n"
    )


def register_demo_keys(
    settings: Settings, echo=print, partner_keys: Path | None = None
) -> tuple[Settings, dict[str, SigningKey], object]:
    """Play the key ceremony: the hub makes its HPKE key, each partner its signing key, the IG
    officer registers each partner's public key in a copy of the contracts under the home, and
    the approvers each agreement names (Caldicott Guardians, SIROs, DPO...) sign it off.

    Keys are made fresh for every demo (never committed). Partner private keys stay on the
    partner side (``partner_keys``, by default ``<demo partners>/signing-keys/``), approvers' keys
    too (:func:`approver_side`); the hub keeps ``keys/hub.key`` and the registered public keys in
    ``keys/partners/`` and ``keys/approvers/``. The repo's agreements are unsigned drafts; signed
    by every required role, the hub's copies become approved. Returns settings that read the
    hub's copies.
    """
    partner_keys = partner_keys or settings.demo_partners / "signing-keys"
    hub_key = HubKey.generate()
    hub_key.save(settings.hub_key_path)
    hub_key.public.save(settings.hub_key_path.with_suffix(".pub"))
    registered = settings.home / "contracts"
    shutil.copytree(settings.contracts_dir, registered)
    settings = dataclasses.replace(settings, contracts_dir=registered)
    contracts, _ = load_contracts(registered)
    signing_keys: dict[str, SigningKey] = {}
    for contract in contracts.values():
        partner = contract.partner_id
        if partner not in signing_keys:
            signing_keys[partner] = SigningKey.generate(partner)
            signing_keys[partner].save(partner_keys / f"{partner}.key")
        register_partner_key(contract.path, signing_keys[partner].public, settings.partner_keys)
    approver_keys = keys_for_required_roles(contracts.values(), APPROVERS)
    for key in approver_keys.values():
        key.save(
            approver_side(settings)
            / f"{key.role}--{key.name.replace(' ', '').replace('.', '')}.key"
        )
    signed = sign_off(
        [c.path for c in contracts.values()],
        approver_keys,
        settings.now(),
        hub_approver_registry(settings),
    )
    audit = hub_audit_log(settings)
    for key in approver_keys.values():
        audit.append(
            "approver_key_registered",
            approver=key.name,
            role=key.role,
            organisation=key.organisation,
            key=key.fingerprint,
        )
    for s in signed:
        s.audit(audit)
    echo(
        f"Keys: hub {hub_key.kem} key {hub_key.fingerprint[:23]}…; partner signing keys registered "
        f"in {registered}; {len(approver_keys)} approvers signed the agreements off "
        f"({len(signed)} signatures; their keys in {approver_side(settings)})"
    )
    return settings, signing_keys, hub_key.public


def deliver_bad_examples(
    settings: Settings, sealed: list, signing_keys: dict, hub_public, echo=print
) -> set[str]:
    """Two deliveries the hub must hold, to show the arrival checks at work: an envelope damaged
    in transit, and the same extract re-sent in a new envelope (a probable duplicate). Returns
    their file names."""
    first = sealed[0]
    damaged = bytearray(first.envelope_path.read_bytes())
    damaged[-100] ^= 0x01
    (settings.inbox / f"{first.envelope_path.stem}.damaged in transit.plx").write_bytes(
        bytes(damaged)
    )
    h = first.envelope
    resent = settings.inbox / f"{first.envelope_path.stem}.sent again.plx"
    seal(
        first.prepared.extract_path,
        resent,
        **delivery_fields(h),
        signing_key=signing_keys[h.partner_id],
        hub_key=hub_public,
    )
    echo("Two deliberately bad deliveries join the inbox: one damaged in transit, one sent twice.")
    return {f"{first.envelope_path.stem}.damaged in transit.plx", resent.name}


def on_delivery_day(settings: Settings) -> Settings:
    """Settings whose clock starts on the day the synthetic place's extracts are delivered
    (:data:`~pipelines.tooling.synth.study.DELIVERED_AT`), unless PLACELINK_AS_OF already sets one.

    The place's events end in September 2026 and its agreements run from April 2026 to March
    2029: run on the calendar, a demo cloned in 2030 would find every agreement expired and hold
    every delivery, as a real hub must. On its own day it shows what it was built to show.
    """
    if settings.clock.as_of is not None:
        return settings
    return dataclasses.replace(settings, clock=Clock(DELIVERED_AT))


def partner_deliveries(
    contracts: dict,
    place: Path,
    outbox: Path,
    key: LinkageKey,
    signing_keys: dict[str, SigningKey],
    hub_public,
    now: dt.datetime,
    period: str = DELIVERY_PERIOD,
    delivery_kind: str | None = "full",
    inputs: dict[str, Path] | None = None,
    opt_outs_list: Path | None = None,
) -> list[SealedExtract]:
    """Every partner runs its kit on each dataset of its contracts, then seals the extract for
    the hub (``outbox/<partner>/<stem>.plx``). The synthetic place's opt-out list is applied
    where a contract says the National Data Opt-out applies. ``now`` is the partners' clock
    (the extract's creation time, and the last plausible date of birth). A first delivery is a
    ``full`` snapshot whatever the contract's cadence; ``delivery_kind=None`` takes the contract's.
    ``inputs`` (dataset -> raw file) limits the deliveries to those datasets, from those files."""
    sealed_extracts = []
    for contract, dataset in contract_datasets(contracts.values()):
        if inputs is not None and dataset not in inputs:
            continue
        with stage("partner kit"):
            prepared = prepare_place_dataset(
                contract,
                dataset,
                place,
                outbox,
                key,
                raw=inputs[dataset] if inputs is not None else None,
                opt_outs_list=opt_outs_list,
                period=period,
                now=now,
                delivery_kind=delivery_kind,
            )
        with stage("envelope: encrypt and sign"):
            sealed_extracts.append(
                seal_prepared(prepared, signing_keys[contract.partner_id], hub_public)
            )
    return sealed_extracts


def deliver_later_month(
    settings: Settings,
    contracts: dict,
    place: Path,
    month: int,
    key: LinkageKey,
    signing_keys: dict[str, SigningKey],
    hub_public,
    echo=print,
    on_outcome: Callable[[RunOutcome], None] | None = None,
) -> str:
    """Month ``month`` of the place (pipelines/tooling/synth/months.py): each partner sends what its contract's
    cadence says (a delta of the month's records, or a full snapshot; a quarterly dataset only at a
    quarter's end), the hub runs as of that month's delivery day. Returns a one-line summary."""
    from pipelines.tooling.synth.months import generate_months, period_of

    (manifest,) = generate_months(place, month, first=month)
    period = period_of(month)
    sealed, at = send_later_month(settings, contracts, place, month, key, signing_keys, hub_public)
    on_day = dataclasses.replace(settings, clock=Clock(at))
    echo(
        f"Month {month} ({period}): {manifest.records:,} new records ({manifest.born} born, {manifest.moved_in} "
        f"moved in, {manifest.households_moved} households moved, {manifest.names_changed} names changed); "
        f"{len(sealed)} extract(s) delivered on {at:%d %B %Y}; the hub runs again ..."
    )
    before = _person_keys(settings)
    result = run_pipeline(on_day, log_level="WARNING")
    if on_outcome is not None:
        on_outcome(run_outcome(result, str(settings.published)))
    if not result.success:
        return f"month {month} ({period}): the run FAILED: " + "; ".join(failure_messages(result))
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        accepted, held = con.execute(
            "SELECT count(*) FILTER (WHERE status = 'accepted'), count(*) FILTER (WHERE status = 'quarantined') "
            "FROM hub.deliveries WHERE received_at >= ?",
            [at.replace(tzinfo=None) - dt.timedelta(hours=1)],
        ).fetchone()
    finally:
        con.close()
    after = _person_keys(settings)
    kept = sum(1 for record, person in before.items() if after.get(record) == person)
    return (
        f"month {month} ({period}): {accepted} extract(s) accepted, {held} held; {len(after):,} records linked, "
        f"{kept:,} of {len(before):,} earlier records kept their person_key"
    )


def send_later_month(
    settings: Settings,
    contracts: dict,
    place: Path,
    month: int,
    key: LinkageKey,
    signing_keys: dict[str, SigningKey],
    hub_public,
) -> tuple[list[SealedExtract], dt.datetime]:
    """The partners' side of month ``month`` (already written by
    :func:`~pipelines.tooling.synth.months.generate_months`): each partner runs its kit on what its contract's
    cadence says is due (a delta of the month's records, or a full snapshot; a quarterly dataset only
    at a quarter's end), seals it, and drops it in the hub's inbox. Returns the sealed extracts and
    the month's delivery day (when the hub should run)."""
    from pipelines.governance.cadence import due_date
    from pipelines.tooling.synth.months import delivered_at, month_folder, period_of, snapshot

    period, folder = period_of(month), month_folder(place, month)
    at = delivered_at(month)
    inputs: dict[str, Path] = {}
    for contract in contracts.values():
        for dataset in contract.datasets:
            schedule = contract.delivery_schedule(dataset)
            if (
                schedule
                and schedule.frequency == "quarterly"
                and due_date(schedule, period).month != at.month
            ):
                continue  # not due this month
            source = folder / "raw" / contract.partner_id / f"{dataset}.csv"
            if schedule is None or schedule.kind == "full":
                source = folder / "snapshots" / contract.partner_id / f"{dataset}.csv"
                source.parent.mkdir(parents=True, exist_ok=True)
                snapshot(place, dataset, month).write_csv(source)
            if sum(1 for _ in source.open()) > 1:  # a delta with no new record is not sent
                inputs[dataset] = source
    outbox = settings.demo_partners / "outbox" / period
    sealed = partner_deliveries(
        contracts,
        place,
        outbox,
        key,
        signing_keys,
        hub_public,
        at,
        period,
        delivery_kind=None,
        inputs=inputs,
        opt_outs_list=folder / "reference" / "national_data_opt_outs.csv",
    )
    for envelope in sealed:
        shutil.copy2(envelope.envelope_path, settings.inbox / envelope.envelope_path.name)
    return sealed, at


def _person_keys(settings: Settings) -> dict[tuple, str]:
    """Each landed record's person_key (hub.record_person)."""
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return {
            (d, t): k
            for d, t, k in con.execute(
                "SELECT dataset, record_token, person_key FROM hub.record_person"
            ).fetchall()
        }
    finally:
        con.close()


def prepare_demo(
    settings: Settings,
    people: int = 20_000,
    seed: int = 2026,
    period: str = DELIVERY_PERIOD,
    echo=print,
) -> tuple[Settings, DemoReport]:
    """Everything before the hub's run: fresh hub and partner folders, a synthetic place, the key
    ceremony, every partner's kit, envelopes (and two bad ones) in the hub's inbox. Returns
    settings (on the place's delivery day, reading the registered contracts) and the report so far."""
    settings = on_delivery_day(settings)
    if settings.contracts_dir.is_relative_to(settings.home):
        # The registered copy from an earlier demo is about to be wiped: start from the repo's.
        settings = dataclasses.replace(settings, contracts_dir=REPO_ROOT / "contracts")
    reset_partners(settings)
    reset_home(settings)
    settings.ensure_dirs()
    partners = settings.demo_partners
    report = DemoReport(settings.home, partners, as_of=settings.clock.as_of)
    place = partners / "place"
    outbox = partners / "outbox"

    started = time.perf_counter()
    echo(f"Generating a synthetic place of {people:,} people (seed {seed}) ...")
    generate_place(people=people, seed=seed, out=place)
    report.timings["synthetic place"] = time.perf_counter() - started

    started = time.perf_counter()
    key_path = partners / "linkage.key"  # shared among the partners, never given to the hub
    LinkageKey.generate().save(key_path)
    settings, signing_keys, hub_public = register_demo_keys(settings, echo)
    contracts, problems = load_contracts(settings.contracts_dir)
    if problems:
        raise DemoRefused("invalid contracts: " + "; ".join(str(e) for e in problems.values()))
    key = LinkageKey.load(key_path)
    echo(
        "Partners prepare their extracts with the partner kit, encrypt them for the hub and sign them ..."
    )
    echo(
        f"The hub runs as of {settings.now():%d %B %Y}, the day the partners deliver the place's "
        f"{period} extracts (PLACELINK_AS_OF; a real hub runs on the calendar)."
    )
    sealed_extracts = partner_deliveries(
        contracts, place, outbox, key, signing_keys, hub_public, settings.now(), period
    )
    for sealed in sealed_extracts:
        report.prepared.append(sealed.prepared)
        shutil.copy2(sealed.envelope_path, settings.inbox / sealed.envelope_path.name)
    report.expected_held = deliver_bad_examples(
        settings, sealed_extracts, signing_keys, hub_public, echo
    )
    shutil.copy2(
        place / "reference" / "lsoa_reference.csv", settings.reference / "lsoa_reference.csv"
    )
    report.timings["partner kit"] = time.perf_counter() - started
    return settings, report


def _note_outcome(report: DemoReport, outcome: RunOutcome) -> None:
    """Keep the first non-zero outcome of the demo's runs (a scheduled demo exits with it); the
    demo's own spoiled deliveries being held is what it shows, not a problem."""
    if outcome.code == HELD and set(outcome.held_files) <= report.expected_held:
        return
    if outcome.code and not report.exit_code:
        report.exit_code, report.outcome = outcome.code, outcome.summary


def run_demo(
    settings: Settings,
    people: int = 20_000,
    seed: int = 2026,
    period: str = DELIVERY_PERIOD,
    echo=print,
    months: int = 1,
) -> DemoReport:
    """The whole demo, holding the hub's run lock from before the home is rebuilt until the last
    read of the warehouse (pipelines/core/run_lock.py): raises RunLockBusy if a run holds it."""
    with run_lock(settings.home, "placelink demo"):
        return _run_demo(settings, people, seed, period, echo, months)


def _run_demo(
    settings: Settings, people: int, seed: int, period: str, echo, months: int
) -> DemoReport:
    settings, report = prepare_demo(settings, people, seed, period, echo)
    place = settings.demo_partners / "place"

    started = time.perf_counter()
    echo("The hub runs the pipeline (Dagster, headless) ...")
    result = run_pipeline(settings, log_level="WARNING")
    report.timings["hub pipeline"] = time.perf_counter() - started
    report.failures = failure_messages(result)
    _note_outcome(report, run_outcome(result, str(settings.published)))
    if not result.success:
        return report

    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        report.deliveries = con.execute("""
            SELECT file_name, status, dataset, row_count, coalesce(failed_check, '')
            FROM hub.deliveries ORDER BY status, file_name
        """).fetchall()
        report.held = held_files(settings.quarantine)
        report.identity_records, report.persons = con.execute(
            "SELECT count(*), count(DISTINCT person_key) FROM hub.person_keys"
        ).fetchone()
    finally:
        con.close()
    published = duckdb.connect(str(settings.published), read_only=True)
    try:
        for (name,) in published.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name NOT LIKE '\\_%' ESCAPE '\\' "
            "ORDER BY 1"
        ).fetchall():
            report.published.append(
                (name, published.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
            )
    finally:
        published.close()
    report.headline = headline_effect(settings.published)

    started = time.perf_counter()
    report.accuracy = linkage_accuracy(
        settings.warehouse,
        place / "truth" / "ground_truth.csv",
        [(p.header.dataset, p.lookup_path) for p in report.prepared],
    )
    report.timings["evaluation"] = time.perf_counter() - started
    if months > 1:
        # The partners' own material for their later deliveries, from the partner side.
        contracts, _ = load_contracts(settings.contracts_dir)
        key = LinkageKey.load(settings.demo_partners / "linkage.key")
        signing_keys = {
            c.partner_id: SigningKey.load(
                settings.demo_partners / "signing-keys" / f"{c.partner_id}.key"
            )
            for c in contracts.values()
        }
        hub_public = HubPublicKey.load(settings.hub_key_path.with_suffix(".pub"))
    for month in range(2, months + 1):
        started = time.perf_counter()
        report.later_months.append(
            deliver_later_month(
                settings,
                contracts,
                place,
                month,
                key,
                signing_keys,
                hub_public,
                echo,
                on_outcome=lambda o: _note_outcome(report, o),
            )
        )
        report.timings[f"month {month}"] = time.perf_counter() - started
        if "FAILED" in report.later_months[-1]:
            report.failures.append(report.later_months[-1])
            break
    return report


def format_summary(report: DemoReport) -> str:
    lines = ["", "placelink demo: summary", "=" * 23]
    if report.failures:
        lines.append("The pipeline FAILED:")
        lines += [f"  - {m}" for m in report.failures]
        return "\n".join(lines)
    accepted = [d for d in report.deliveries if d[1] == "accepted"]
    lines.append(
        f"Extracts accepted: {len(accepted)} of {len(report.deliveries)} "
        f"(quarantined: {len(report.deliveries) - len(accepted)})"
    )
    for file_name, status, _dataset, _rows, check in report.deliveries:
        lines.append(f"  {status:11} {file_name}" + (f"  [{check}]" if check else ""))
    if report.held:
        lines.append("Held in quarantine (see `placelink hub quarantine list`):")
        for item in report.held:
            lines.append(f"  {item['held_as']}: check '{item['check']}': {item['found']}")
    lines.append(
        "Records per partner extract (rows sent; invalid identifier values became empty tokens):"
    )
    for p in report.prepared:
        h = p.header
        invalid = ", ".join(f"{k} {v}" for k, v in sorted(h.invalid_counts.items()) if v) or "none"
        opted = f", {p.opted_out_rows} opted out" if p.opted_out_rows else ""
        lines.append(
            f"  {h.partner_id:8} {h.dataset:26} {p.rows_out:>8,} rows{opted}; invalid values: {invalid}"
        )
    lines.append(
        f"Persons linked: {report.persons:,} from {report.identity_records:,} identity records"
    )
    if report.accuracy:
        lines.append(
            "Linkage vs ground truth (pairwise, from person_keys and the partners' record lookups):"
        )
        for label, s in (
            ("records", report.accuracy.records),
            ("identity records", report.accuracy.identity_records),
        ):
            lines.append(
                f"  {label:17} {s.records:>8,}: precision {s.precision:.4f}, recall {s.recall:.4f}, "
                f"F1 {s.f1:.4f}"
            )
    if report.later_months:
        lines.append("Later months (the same place, delivered as each contract's cadence says):")
        lines += [f"  {line}" for line in report.later_months]
    lines.append("Published tables (disclosure-controlled):")
    for name, rows in report.published:
        lines.append(f"  {name}: {rows} rows")
    home = report.home
    lines += [
        f"Published file:   {home / 'published' / 'shared_outcomes.duckdb'}",
        f"Outcomes report:  {home / 'reports' / 'outcomes.html'}",
        f"Hub warehouse:    {home / 'warehouse.duckdb'}",
        f"Audit log:        {home / 'audit' / 'audit.jsonl'}",
        f"Quarantine:       {home / 'quarantine'}",
        f"IG register:      {home / 'reports' / 'ig_register.html'} (`placelink contracts list`)",
        f"Linkage QA:       {home / 'reports' / 'linkage_qa.html'}",
        f"Quality report:   {home / 'reports' / 'quality.html'}",
        f"Partner side:     {report.partners} (outside the hub's home: raw extracts, the linkage key, "
        "signing keys, record lookups, outboxes; the hub never holds these)",
        "Timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items()),
        "Open the Dagster UI with `make ui` (http://127.0.0.1:3000) to see the assets and this run.",
    ]
    if report.as_of is not None:
        lines.append(
            f"The hub ran as of {report.as_of:%Y-%m-%d}, the place's delivery day; to run its assets again "
            f"as of that day: `PLACELINK_AS_OF={report.as_of:%Y-%m-%d} make ui`."
        )
    if report.headline:
        lines += [
            "Headline effect (table effects in the published file; every outcome in the outcomes report):",
            f"  {report.headline}",
        ]
    return "\n".join(lines)
