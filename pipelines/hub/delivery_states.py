"""The irreversible steps of receiving one delivery, each resumable from its journal state.

The same code runs a delivery forward in a run and finishes it in the next run when a kill
stopped it (:mod:`pipelines.hub.recovery`): every step first looks at what is already done
(the file in place, the reason beside it, the record committed, the event in the audit log),
so doing a step twice never does it twice. The order (docs/ingest-states.md):

* accepted: the envelope goes into the vault first (moved, or copied from an inbox the hub
  cannot change: digest verified, fsynced, renamed into place), then its rows, its
  ``hub.deliveries`` record and its pending audit event commit together, then the event is
  written to the audit log. ``stored_as`` therefore never names a file that is not there.
  The envelope in the vault is checked against the digest of the bytes that were checked;
  a file changed while it was read is held, never landed.
* held: reason written (hidden), file moved, reason renamed beside it, record and pending
  event committed, event written.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from pipelines.core.stored_paths import stored_path
from pipelines.governance.audit import AuditLog
from pipelines.hub.inbox import delivery_kind, move_delivery, open_delivery
from pipelines.hub.journal import (
    Entry,
    Identity,
    Journal,
    ReceivedLedger,
    name_from_key,
    sync_folder,
    write_durably,
)
from pipelines.hub.quarantine import (
    Rejection,
    free_name,
    pending_reason,
    reason_path,
    reason_record,
)

# What a rename out of an inbox the hub may not change raises (EPERM: immutable or sticky folder,
# EACCES: no write permission, EROFS: a read-only mount); EXDEV: the inbox is another file system.
_CANNOT_MOVE = (errno.EPERM, errno.EACCES, errno.EROFS, errno.EXDEV)
_BLOCK = 1 << 20


@dataclass
class Flow:
    """What the steps act on: the hub's home, warehouse, audit log, journal and clock, and how a
    withdrawal erases identities from linkage's key history (pipelines.hub.withdrawals)."""

    home: Path
    con: duckdb.DuckDBPyConnection
    audit: AuditLog
    journal: Journal
    now: dt.datetime
    erase_identities: Callable[[duckdb.DuckDBPyConnection, list[str], dt.datetime], int]

    @property
    def ledger(self) -> ReceivedLedger:
        return ReceivedLedger(self.home)

    def path(self, relative: str) -> Path:
        return self.home / relative


def inbox_changeable(inbox: Path) -> bool:
    """Whether the hub may move files out of the inbox (False for a read-only SFTP drop folder)."""
    return os.access(inbox, os.W_OK | os.X_OK)


def _file_sha256(path: Path) -> str:
    with open_delivery(path) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def copy_verified(
    source: Path, target: Path, expected_sha256: str | None, journal: Journal
) -> tuple[bool, dict]:
    """Copy ``source`` to ``target`` (which must not exist) through a hidden partial file that is
    fsynced and renamed into place; returns (whether the copy's digest is ``expected_sha256``,
    the source's Identity as read). A copy that does not match is removed, never renamed."""
    partial = target.with_name(f".{target.name}.partial")
    if os.path.lexists(partial):
        os.unlink(partial)  # left by a killed copy
    digest = hashlib.sha256()
    with open_delivery(source) as reader:
        identity = asdict(Identity.of(os.fstat(reader.fileno())))
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        with os.fdopen(fd, "wb") as writer:
            while block := reader.read(_BLOCK):
                digest.update(block)
                writer.write(block)
            writer.flush()
            os.fsync(writer.fileno())
    journal.step("vault-copied")
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        os.unlink(partial)
        return False, identity
    os.rename(partial, target)
    sync_folder(target.parent)
    return True, identity


# --- held ----------------------------------------------------------------------------------


def plan_hold(
    flow: Flow,
    source: Path,
    inbox_name: str,
    label: str,
    rejection: Rejection,
    claimed: dict,
    copy: bool,
    entry: Entry | None = None,
) -> Entry:
    """Journal that ``source`` is held and why (state ``held``); ``entry`` turns an accepted
    delivery whose file changed into a held one."""
    quarantine = flow.home / "quarantine"
    quarantine.mkdir(parents=True, exist_ok=True)
    target = free_name(quarantine, source.name if source.parent != quarantine else inbox_name)
    reason = reason_record(label, rejection, flow.now, source)
    row = {
        "file_name": label,
        "received_at": flow.now.replace(tzinfo=None).isoformat(),
        "status": "quarantined",
        **claimed,
        "failed_check": rejection.check,
        "reason": rejection.message(label),
        "stored_as": stored_path(target, flow.home),
    }
    event = {
        "event": "extract_quarantined",
        "file": label,
        "check": rejection.check,
        "contract": rejection.contract,
        "reason": rejection.message(label),
        "held_as": target.name,
    }
    fields = dict(
        outcome="hold",
        state="held",
        label=label,
        source=stored_path(source, flow.home),
        inbox_name=os.fsencode(inbox_name).hex(),
        target=stored_path(target, flow.home),
        copy=copy,
        reason=reason,
        row=row,
        event=event,
        audit_bytes=_audit_size(flow.audit),
    )
    if entry is None:
        entry = Entry(id=Journal.new_id(), **fields)
    else:
        for key, value in fields.items():
            setattr(entry, key, value)
        entry.identity = entry.identity if copy else None
    flow.journal.begin(entry)
    flow.journal.step("held")
    return entry


def drive_hold(flow: Flow, entry: Entry) -> bool:
    """Take a held delivery from its journal state to done; False if the file it was to hold is
    no longer there (nothing is recorded then)."""
    source, target = flow.path(entry.source), flow.path(entry.target)
    pending = pending_reason(target)
    reason_bytes = (json.dumps(entry.reason, indent=2) + "\n").encode()
    if not _recorded(flow, entry):
        if not os.path.lexists(target):
            if not os.path.lexists(source):
                _discard(pending)
                return False
            write_durably(pending, reason_bytes)
            flow.journal.advance(entry, "reason-written")
            flow.journal.step("reason-written")
            _put(source, target, entry, flow.journal, verify=False)
        elif not entry.copy and os.path.lexists(source) and delivery_kind(source) is not None:
            # killed while a link (or FIFO) was being replaced by a file of what it carried
            os.unlink(target)
            write_durably(pending, reason_bytes)
            _put(source, target, entry, flow.journal, verify=False)
        flow.journal.advance(entry, "moved")
        flow.journal.step("moved")
        if os.path.lexists(pending):
            os.replace(pending, reason_path(target))
        elif not os.path.lexists(reason_path(target)):
            write_durably(reason_path(target), reason_bytes)
        sync_folder(target.parent)
        flow.journal.advance(entry, "reason-placed")
        flow.journal.step("reason-placed")
        _record(flow, entry)
        flow.journal.step("hold-recorded")
    _note_received(flow, entry)
    _write_event(flow, entry, "hold-audited")
    return True


# --- accepted ------------------------------------------------------------------------------


def plan_accept(
    flow: Flow,
    source: Path,
    label: str,
    vault: Path,
    identity: dict | None,
    envelope_sha256: str,
    copy: bool,
) -> Entry:
    """Journal that ``source`` passed every check and where in the vault it goes (``checked``)."""
    vault.mkdir(parents=True, exist_ok=True)
    target = free_name(vault, source.name)
    entry = Entry(
        id=Journal.new_id(),
        outcome="accept",
        state="checked",
        label=label,
        source=stored_path(source, flow.home),
        inbox_name=os.fsencode(source.name).hex(),
        target=stored_path(target, flow.home),
        copy=copy,
        identity=identity,
        envelope_sha256=envelope_sha256,
        audit_bytes=_audit_size(flow.audit),
    )
    flow.journal.begin(entry)
    flow.journal.step("checked")
    return entry


def place_in_vault(flow: Flow, entry: Entry) -> bool:
    """Move (or copy) the checked envelope into the vault; False if what arrived there is not
    the bytes that were checked (the file was replaced or changed while it was read)."""
    source, target = flow.path(entry.source), flow.path(entry.target)
    if (
        not entry.copy
        and Identity.at(source) is not None
        and asdict(Identity.at(source)) != entry.identity
    ):
        return False  # replaced since it was checked: its bytes are not the ones that were checked
    placed = _put(source, target, entry, flow.journal, verify=True)
    if placed and not entry.copy and _file_sha256(target) != entry.envelope_sha256:
        # moved, but changed in place between the check and the move: hold what is in the vault
        entry.source = entry.target
        return False
    if not placed:
        return False
    flow.journal.advance(entry, "vaulted")
    flow.journal.step("vaulted")
    return True


def extract_accepted_event(
    file: str,
    extract_id: str,
    contract_id: str,
    contract_version: str,
    dataset: str,
    rows: int,
    reporting_period: str | None,
    delivery_kind: str,
    **more,
) -> dict:
    """The ``extract_accepted`` audit event, as ingest writes it when it lands a delivery and
    recovery when it finishes one a killed run left (``more``: what only one of them knows)."""
    return {
        "event": "extract_accepted",
        "file": file,
        "extract_id": extract_id,
        "contract": contract_id,
        "contract_version": contract_version,
        "dataset": dataset,
        "rows": rows,
        "reporting_period": reporting_period,
        "delivery_kind": delivery_kind,
        **more,
    }


def land_accepted(flow: Flow, entry: Entry, land: Callable[[], dict], row: dict) -> None:
    """In one transaction: ``land()`` (which returns the audit event), the delivery's record and
    its pending event; then the event is written to the audit log."""
    flow.con.execute("BEGIN TRANSACTION")
    try:
        entry.event = land()
        entry.row = {**row, "received_at": row["received_at"].isoformat()}
        _insert(flow, entry)
        flow.con.execute("COMMIT")
    except BaseException:
        flow.con.execute("ROLLBACK")
        raise
    flow.journal.advance(entry, "landed")
    flow.journal.step("landed")
    finish_landed(flow, entry)


def finish_landed(flow: Flow, entry: Entry) -> None:
    _note_received(flow, entry)
    _write_event(flow, entry, "accept-audited")


def roll_back_accept(flow: Flow, entry: Entry) -> str:
    """Undo an accepted delivery that never landed: the envelope goes back to the inbox (or, if
    it was copied from an inbox the hub cannot change, the copy is removed); returns what was done."""
    source, target = flow.path(entry.source), flow.path(entry.target)
    _discard(target.with_name(f".{target.name}.partial"))
    if entry.copy:
        _discard(target)
        return "the copy in the vault was removed; the file in the inbox is checked again"
    if os.path.lexists(target):
        if (
            os.path.lexists(source)
            and delivery_kind(source) is None
            and _file_sha256(source) == _file_sha256(target)
        ):
            os.unlink(
                target
            )  # killed between copying to another file system and removing the original
            return "the envelope was still in the inbox and is checked again"
        back = source if not os.path.lexists(source) else free_name(source.parent, source.name)
        os.rename(target, back)
        sync_folder(back.parent)
        return "the envelope was moved back to the inbox and is checked again"
    return "the envelope was still in the inbox and is checked again"


# --- shared --------------------------------------------------------------------------------


def _put(source: Path, target: Path, entry: Entry, journal: Journal, verify: bool) -> bool:
    """Move ``source`` to ``target``, or copy it (verified against the checked digest when
    ``verify``) when the inbox cannot be changed; False if a verified copy did not match."""
    if not entry.copy:
        try:
            if delivery_kind(source) is None:
                os.rename(source, target)
                sync_folder(target.parent)
                sync_folder(source.parent)
                return True
            move_delivery(
                source, target
            )  # a link, FIFO or device: kept as a file of what it carried
            return True
        except OSError as exc:
            if exc.errno not in _CANNOT_MOVE:
                raise
            refused = exc.errno
        entry.copy = refused != errno.EXDEV
        if not entry.copy:  # another file system: copy, then remove the inbox's file
            ok, _ = copy_verified(
                source, target, entry.envelope_sha256 if verify else None, journal
            )
            if ok:
                os.unlink(source)
            return ok
    if delivery_kind(source) is not None:
        move_delivery_copy(source, target)
        return True
    ok, identity = copy_verified(source, target, entry.envelope_sha256 if verify else None, journal)
    entry.identity = identity
    return ok


def move_delivery_copy(source: Path, target: Path) -> None:
    """A link or special entry in an inbox the hub cannot change: keep what it carried (a link's
    target path as text, nothing for a FIFO or device), never following or opening it."""
    content = os.fsencode(os.readlink(source)) if source.is_symlink() else b""
    write_durably(target, content)


def _recorded(flow: Flow, entry: Entry) -> bool:
    return bool(
        flow.con.execute(
            "SELECT count(*) FROM hub.deliveries WHERE delivery_id = ?", [entry.id]
        ).fetchall()[0][0]
    )


def _record(flow: Flow, entry: Entry) -> None:
    flow.con.execute("BEGIN TRANSACTION")
    try:
        _insert(flow, entry)
        flow.con.execute("COMMIT")
    except BaseException:
        flow.con.execute("ROLLBACK")
        raise
    flow.journal.advance(entry, "hold-recorded" if entry.outcome == "hold" else "landed")


def _insert(flow: Flow, entry: Entry) -> None:
    row = {
        **entry.row,
        "received_at": dt.datetime.fromisoformat(entry.row["received_at"]),
        "delivery_id": entry.id,
    }
    columns, marks = ", ".join(row), ", ".join("?" for _ in row)
    flow.con.execute(f"INSERT INTO hub.deliveries ({columns}) VALUES ({marks})", list(row.values()))
    event = {**entry.event, "delivery_id": entry.id}
    flow.con.execute(
        "INSERT INTO hub.pending_audit VALUES (?, ?)", [entry.id, json.dumps(event, default=str)]
    )


def _note_received(flow: Flow, entry: Entry) -> None:
    """An inbox the hub cannot change keeps the file: remember it was received."""
    if entry.copy and entry.identity is not None and entry.source.startswith("inbox/"):
        inbox_file = flow.home / "inbox" / name_from_key(entry.inbox_name)
        if (
            Identity.at(inbox_file) is not None
            and asdict(Identity.at(inbox_file)) == entry.identity
        ):
            flow.ledger.note(inbox_file.name, entry.identity, entry.outcome, entry.target)


def _write_event(flow: Flow, entry: Entry, step: str) -> None:
    """Write the pending audit event once: not again if a killed run already wrote it."""
    pending = flow.con.execute(
        "SELECT event FROM hub.pending_audit WHERE delivery_id = ?", [entry.id]
    ).fetchall()
    if pending:
        event = json.loads(pending[0][0])
        if not _already_audited(flow.audit, entry, event["event"]):
            name = event.pop("event")
            flow.audit.append(name, **event)
        flow.journal.step(step)
        flow.con.execute("DELETE FROM hub.pending_audit WHERE delivery_id = ?", [entry.id])
    flow.journal.finish(entry)


def _audit_size(audit: AuditLog) -> int:
    try:
        return audit.path.stat().st_size
    except FileNotFoundError:
        return 0


def _already_audited(audit: AuditLog, entry: Entry, name: str) -> bool:
    """Whether this delivery's event ``name`` was written after its journal began."""
    if not audit.path.exists():
        return False
    with audit.path.open("rb") as handle:
        handle.seek(entry.audit_bytes)
        for line in handle:
            if entry.id.encode() in line:
                event = json.loads(line)
                if event.get("delivery_id") == entry.id and event.get("event") == name:
                    return True
    return False


def _discard(path: Path) -> None:
    if os.path.lexists(path):
        os.unlink(path)
