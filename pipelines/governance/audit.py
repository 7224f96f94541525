"""Append-only, hash-chained audit log whose end is signed.

One JSON object per line; each line carries ``prev`` = SHA-256 of the previous line's bytes
(the first line's ``prev`` is 64 zeros), so an edited, deleted or reordered line breaks the
chain at a point :meth:`AuditLog.verify` names. Each event records when (the hub's clock),
who (``actor``: ``user:<name>`` or ``service:<sensor or schedule>``) and in which Dagster run
(``run_id``, null outside a run). Events carry ids, counts and reasons, never identifiers or
token values.

A chain alone cannot show that its *end* was cut off, or that an older copy was put back:
both leave a valid chain. So after every append the hub signs the log's **head** (how many
events, the SHA-256 of the last line, the file's size) with its own Ed25519 audit key
(``PLACELINK_HOME/keys/audit.key``) and keeps it apart from the log
(``PLACELINK_HOME/audit_head.json``); the published file's ``_about.audit_head`` carries the
head as it was at publication. :func:`verify_log` checks the chain, the signed head and any
such copy: a log shorter than a signed head, or whose event N is not the one the hub signed,
fails. Before appending, the hub checks that the log still ends where its head says; if it
does not, it refuses to write (and so to sign over a cut or rolled-back log).
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.core.clock import Clock
from pipelines.exchange.keys import AuditKey, AuditPublicKey, KeyFileError
from pipelines.governance.contract_content import canonical_json

if TYPE_CHECKING:
    from pipelines.core.settings import Settings

GENESIS = "0" * 64
LOG_NAME = "audit.jsonl"
HEAD_FORMAT = "placelink-audit-head/1"
HEAD_CONTEXT = b"placelink-audit-head/1\x00"
HEAD_FIELDS = ("format", "events", "bytes", "last_hash", "signed_at", "key")


class AuditLogTampered(RuntimeError):
    """The log no longer ends where the hub last signed it: the hub writes nothing more."""


@dataclass(frozen=True)
class Tampering:
    line: int
    reason: str


def user_actor() -> str:
    """``user:<operating-system user>`` of this process (``user:unknown`` if it has none)."""
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):
        return "user:unknown"


def run_actor(tags: Mapping[str, str]) -> str:
    """Who started a Dagster run, from its tags: ``service:sensor/<name>``,
    ``service:schedule/<name>``, ``service:backfill/<id>``, else the user of the process that
    ran it (``placelink run``, ``placelink demo`` or the UI; Dagster's open-source instance
    records no signed-in user)."""
    if tags.get("dagster/sensor_name"):
        return f"service:sensor/{tags['dagster/sensor_name']}"
    if tags.get("dagster/schedule_name"):
        return f"service:schedule/{tags['dagster/schedule_name']}"
    if tags.get("dagster/backfill"):
        return f"service:backfill/{tags['dagster/backfill']}"
    return user_actor()


@dataclass(frozen=True)
class SignedHead:
    """The log's end as the hub signed it."""

    events: int
    bytes: int
    last_hash: str
    signed_at: str
    key: str
    signature: str

    def fields(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "events": self.events,
            "bytes": self.bytes,
            "last_hash": self.last_hash,
            "signed_at": self.signed_at,
            "key": self.key,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.fields(), "signature": self.signature}

    @classmethod
    def from_json(cls, data: Any) -> SignedHead:
        if not isinstance(data, dict) or data.get("format") != HEAD_FORMAT:
            raise ValueError(f"not a {HEAD_FORMAT} document")
        return cls(
            int(data["events"]),
            int(data["bytes"]),
            str(data["last_hash"]),
            str(data["signed_at"]),
            str(data["key"]),
            str(data["signature"]),
        )

    def message(self) -> bytes:
        return HEAD_CONTEXT + canonical_json(self.fields())

    def signed_by(self, public: AuditPublicKey) -> bool:
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except ValueError:
            return False
        return public.fingerprint == self.key and public.verify(signature, self.message())

    def describe(self) -> str:
        return f"{self.events} events, last {self.last_hash[:12]}..., signed {self.signed_at}"


@dataclass(frozen=True)
class AuditHead:
    """Where the signed head and the hub's audit key live (both apart from the log)."""

    path: Path
    key_path: Path

    @property
    def public_path(self) -> Path:
        return self.key_path.with_suffix(".pub")

    def read(self) -> SignedHead | None:
        if not self.path.exists():
            return None
        return SignedHead.from_json(json.loads(self.path.read_text(encoding="utf-8")))

    def public_key(self) -> AuditPublicKey | None:
        return AuditPublicKey.load(self.public_path) if self.public_path.exists() else None

    def signing_key(self) -> tuple[AuditKey, bool]:
        """The hub's audit key, made on first use; True when it was made just now."""
        if self.key_path.exists():
            return AuditKey.load(self.key_path), False
        key = AuditKey.generate()
        key.save(self.key_path)
        if self.public_path.exists():
            self.public_path.unlink()  # a public key left from a key that no longer exists
        key.public.save(self.public_path)
        return key, True

    def sign(
        self, key: AuditKey, events: int, size: int, last_hash: str, at: dt.datetime
    ) -> SignedHead:
        """Sign a head over the log's first ``events`` events and write it."""
        head = self.signed(key, events, size, last_hash, at)
        self.write(head)
        return head

    @staticmethod
    def signed(
        key: AuditKey, events: int, size: int, last_hash: str, at: dt.datetime
    ) -> SignedHead:
        unsigned = SignedHead(
            events, size, last_hash, at.isoformat(timespec="seconds"), key.fingerprint, ""
        )
        return SignedHead(
            events,
            size,
            last_hash,
            unsigned.signed_at,
            key.fingerprint,
            base64.b64encode(key.sign(unsigned.message())).decode("ascii"),
        )

    def write(self, head: SignedHead) -> None:
        _write_durably(self.path, json.dumps(head.to_json(), indent=2) + "\n")

    @property
    def pending_path(self) -> Path:
        """The write-ahead record of an append in progress (:meth:`AuditLog.append`)."""
        return self.path.with_name(f"{self.path.name}.pending")


def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _last_line(handle, size: int) -> bytes | None:
    """The last line of an open binary file (without its newline); None if it is empty."""
    if size == 0:
        return None
    block = min(size, 65536)
    while True:
        handle.seek(size - block)
        lines = handle.read(block).rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or block == size:
            return lines[-1]
        block = min(size, block * 2)


class AuditLog:
    """The hub's audit trail under ``PLACELINK_HOME/audit/audit.jsonl``.

    ``actor`` and ``run_id`` go into every event it writes. With ``head`` (as
    :func:`hub_audit_log` gives it), every append first checks that the
    log ends where the signed head says, then re-signs the head; without, it only chains.
    """

    def __init__(
        self,
        folder: Path,
        clock: Clock = Clock(),
        actor: str | None = None,
        run_id: str | None = None,
        head: AuditHead | None = None,
    ):
        self.path = Path(folder) / LOG_NAME
        self.clock = clock
        self.actor = actor or user_actor()
        self.run_id = run_id
        self.head = head

    def _last_hash(self) -> str:
        if not self.path.exists():
            return GENESIS
        with self.path.open("rb") as handle:
            last = _last_line(handle, self.path.stat().st_size)
        return GENESIS if last is None else hashlib.sha256(last).hexdigest()

    def append(self, event: str, *, at: dt.datetime | None = None, **fields: Any) -> dict[str, Any]:
        """Write one event (and re-sign the head); returns it as written.

        Raises :class:`AuditLogTampered`, writing nothing, if the log was cut, replaced or
        added to since the hub last signed its head.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        at = at or self.clock.now()
        # One writer at a time (a run, an operator's release, an approval): the lock keeps
        # each event chained to the one before it and the head in step with the file.
        with self.path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                size = handle.seek(0, os.SEEK_END)
                if self.head is not None:
                    size = self._finish_interrupted(handle, size)
                last = _last_line(handle, size)
                previous = GENESIS if last is None else hashlib.sha256(last).hexdigest()
                events = self._events_before(handle, size, previous, at)
                record = {
                    "at": at.isoformat(timespec="seconds"),
                    "event": event,
                    "actor": self.actor,
                    "run_id": self.run_id,
                    **fields,
                    "prev": previous,
                }
                line = json.dumps(record, sort_keys=False, default=str, ensure_ascii=False).encode(
                    "utf-8"
                )
                new_head = None
                if self.head is not None:
                    # Write-ahead: the head this append will end at, and the line itself, are on
                    # disk before the line is; a kill anywhere in between is finished by the next
                    # append (_finish_interrupted), never read as a log someone else wrote to.
                    key, _ = self.head.signing_key()
                    new_head = self.head.signed(
                        key, events + 1, size + len(line) + 1, hashlib.sha256(line).hexdigest(), at
                    )
                    _write_durably(
                        self.head.pending_path,
                        json.dumps(
                            {
                                "after": {"bytes": size, "last_hash": previous},
                                "line": line.decode("utf-8"),
                                "head": new_head.to_json(),
                            }
                        ),
                    )
                handle.seek(0, os.SEEK_END)
                handle.write(line + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
                if new_head is not None:
                    self.head.write(new_head)
                    self.head.pending_path.unlink()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return record

    def _finish_interrupted(self, handle, size: int) -> int:
        """Finish an append that was killed after its write-ahead record (the head it would end
        at, signed, and its line): the line is completed if it is missing or cut short, the head
        written, the record removed. Only the hub's own record, signed with its key, for a log
        that ends where the current head says or inside that very line, is acted on; anything
        else is left for the tamper check. Returns the log's size."""
        pending_path = self.head.pending_path
        if not pending_path.exists():
            return size
        try:
            pending = json.loads(pending_path.read_text(encoding="utf-8"))
            after, line = pending["after"], pending["line"].encode("utf-8") + b"\n"
            new_head = SignedHead.from_json(pending["head"])
        except (ValueError, KeyError, TypeError):
            pending_path.unlink()  # killed while the record itself was written: no line was
            return size
        public = self.head.public_key()
        current = self.head.read()
        if (
            public is None
            or not new_head.signed_by(public)
            or new_head.bytes != after["bytes"] + len(line)
            or new_head.last_hash != hashlib.sha256(line.rstrip(b"\n")).hexdigest()
        ):
            return size
        if current is not None and (current.bytes, current.last_hash) == (
            new_head.bytes,
            new_head.last_hash,
        ):
            pending_path.unlink()  # killed after the head was written
            return size
        if current is not None and (current.bytes, current.last_hash) != (
            after["bytes"],
            after["last_hash"],
        ):
            return size
        if not after["bytes"] <= size <= new_head.bytes:
            return size
        handle.seek(after["bytes"])
        written = handle.read(size - after["bytes"])
        if not line.startswith(written):
            return size
        if written != line:
            handle.seek(0, os.SEEK_END)
            handle.write(line[len(written) :])
            handle.flush()
            os.fsync(handle.fileno())
        self.head.write(new_head)
        pending_path.unlink()
        return new_head.bytes

    def _events_before(self, handle, size: int, last_hash: str, at: dt.datetime) -> int:
        """How many events the log holds, vouched for by the signed head (or, on a hub's first
        signed write, counted and adopted); raises if the log is not where the head left it."""
        if self.head is None:
            return 0
        head = self.head.read()
        if head is not None and not self.head.key_path.exists():
            raise AuditLogTampered(
                f"the hub's audit key {self.head.key_path} is missing but the log has a signed head: restore "
                "the key from the hub's backup (a new key would let anyone re-sign the log). Nothing more is "
                "written to the log"
            )
        if head is not None:
            if (head.bytes, head.last_hash) != (size, last_hash):
                raise AuditLogTampered(
                    f"audit log {self.path} does not end where the hub last signed it ({head.describe()}; "
                    f"the file now has {size} bytes): it was cut short, replaced by another copy or written "
                    "by something other than the hub. Nothing more is written to it. Run `placelink audit "
                    "verify` and have the IG officer investigate before the hub runs again"
                )
            return head.events
        key_existed = self.head.key_path.exists()
        if size and key_existed:
            raise AuditLogTampered(
                f"audit log {self.path} has events but its signed head {self.head.path} is missing, although "
                "the hub's audit key exists: the head was removed. Nothing more is written to the log. Run "
                "`placelink audit verify` and have the IG officer investigate"
            )
        handle.seek(0)
        # First signed write on this hub: the events written so far are counted and signed over.
        return sum(1 for raw in handle if raw.strip())

    def events(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    return  # being appended right now (readers take no lock: they never hold up a run)
                if line.strip():
                    yield json.loads(line)

    def verify(self) -> Tampering | None:
        """None if the chain is intact, else the first line (1-based) that breaks it."""
        return chain_state(self.path)[0]


def chain_state(path: Path) -> tuple[Tampering | None, list[str], int]:
    """(first break or None, SHA-256 of every line in order, file size)."""
    hashes: list[str] = []
    if not path.exists():
        return None, hashes, 0
    expected = GENESIS
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\n")
            try:
                prev = json.loads(line)["prev"]
            except (ValueError, KeyError, TypeError):
                return (
                    Tampering(number, "not a valid audit event (JSON with a 'prev' hash)"),
                    hashes,
                    0,
                )
            if prev != expected:
                return (
                    Tampering(
                        number,
                        "its 'prev' hash does not match the line before it "
                        "(a line was edited, removed or reordered)",
                    ),
                    hashes,
                    0,
                )
            expected = hashlib.sha256(line).hexdigest()
            hashes.append(expected)
    return None, hashes, path.stat().st_size


@dataclass(frozen=True)
class Finding:
    """One check of :func:`verify_log`: what was checked, whether it held, and what was found."""

    check: str
    ok: bool
    detail: str


def _against(
    head: SignedHead,
    hashes: list[str],
    public: AuditPublicKey | None,
    what: str,
    exact: bool,
    size: int,
) -> Finding:
    if public is None:
        return Finding(
            what,
            False,
            f"the hub's audit public key is missing, so the head ({head.describe()}) "
            "cannot be checked",
        )
    if not head.signed_by(public):
        return Finding(
            what,
            False,
            f"the head's signature does not verify with the hub's audit key "
            f"{public.fingerprint[:19]}... (the head was edited or made with another key)",
        )
    if len(hashes) < head.events:
        return Finding(
            what,
            False,
            f"TRUNCATED or ROLLED BACK: the hub signed {head.events} events "
            f"({head.signed_at}), the log holds {len(hashes)}: events "
            f"{len(hashes) + 1}-{head.events} are missing",
        )
    if head.events and hashes[head.events - 1] != head.last_hash:
        return Finding(
            what,
            False,
            f"ROLLED BACK or REWRITTEN: event {head.events} is not the event the hub "
            f"signed on {head.signed_at} (another copy of the log was put in place)",
        )
    if exact and (len(hashes) != head.events or size != head.bytes):
        return Finding(
            what,
            False,
            f"{len(hashes) - head.events} event(s) after the signed head "
            f"({head.describe()}) were not written by the hub",
        )
    return Finding(
        what, True, f"the log holds the {head.events} events the hub signed ({head.signed_at})"
    )


def verify_log(
    log: AuditLog,
    head: AuditHead,
    published_head: SignedHead | None = None,
    published_name: str = "the published file",
) -> list[Finding]:
    """Every check an IG officer relies on: the chain, the signed head kept apart from the log,
    and the head the published file carries. The log is intact only if every finding is ok."""
    broken, hashes, size = chain_state(log.path)
    findings = [
        Finding(
            "hash chain",
            broken is None,
            f"line {broken.line}: {broken.reason}" if broken else f"{len(hashes)} events chain",
        )
    ]
    try:
        public = head.public_key()
    except KeyFileError as exc:
        public = None
        findings.append(Finding("audit key", False, str(exc)))
    try:
        signed = head.read()
    except (ValueError, KeyError, TypeError):
        signed = None
        findings.append(Finding("signed head", False, f"{head.path} is not a signed audit head"))
    else:
        if signed is None:
            findings.append(
                Finding(
                    "signed head",
                    False,
                    f"no signed head at {head.path}: the end of the log "
                    "cannot be vouched for (was it removed?)",
                )
            )
        else:
            findings.append(_against(signed, hashes, public, "signed head", True, size))
    if published_head is not None:
        finding = _against(published_head, hashes, public, f"head in {published_name}", False, size)
        if finding.ok and signed is not None and published_head.events > signed.events:
            finding = Finding(
                finding.check,
                False,
                f"ROLLED BACK: {published_name} was published at event "
                f"{published_head.events}, after the signed head kept by the "
                f"hub ({signed.events} events): an older head was put back",
            )
        findings.append(finding)
    return findings


def published_head(published: Path):
    """The signed audit head a published file carries in ``_about`` (None if it has none)."""
    import duckdb

    if not published.exists():
        return None
    try:
        con = duckdb.connect(str(published), read_only=True)
    except duckdb.Error:
        return None  # being swapped right now
    try:
        row = con.execute("SELECT value FROM _about WHERE key = 'audit_head'").fetchone()
    except duckdb.Error:
        row = None
    finally:
        con.close()
    return SignedHead.from_json(json.loads(row[0])) if row and row[0] else None


def hub_audit_log(
    settings: Settings, actor: str | None = None, run_id: str | None = None
) -> AuditLog:
    """The hub's audit log under ``settings``, stamped with its clock, the ``actor`` (default:
    ``user:<the operating-system user>``) and the Dagster ``run_id`` of the events it writes;
    every append re-signs the log's head with the hub's audit key."""
    return AuditLog(
        settings.audit_dir,
        settings.clock,
        actor=actor or user_actor(),
        run_id=run_id,
        head=AuditHead(settings.audit_head_path, settings.audit_key_path),
    )
