"""Each delivery's progress through ingest, written down before every step that cannot be undone.

A run can be killed at any line (a reboot, an out-of-memory kill, an operator's kill -9). So
that the next run can finish or undo what it left half done, ingest writes one small journal
file per delivery under ``PLACELINK_HOME/ingest/journal/`` (fsynced, renamed into place) and
moves it through these states (docs/ingest-states.md)::

    accepted:  checked -> vaulted -> landed -> audited
    held:      held -> reason written -> moved -> reason placed -> recorded -> audited

``landed`` and ``recorded`` are database commits: the rows, the ``hub.deliveries`` record and
the audit event still to be written (``hub.pending_audit``) commit together, so the warehouse
itself says whether a delivery landed. :mod:`pipelines.hub.recovery` reads the journal at the
start of the next run.

An inbox the hub cannot change (an SFTP drop folder is often read-only to the hub) keeps the
partner's file after it was copied into the vault or quarantine; :class:`ReceivedLedger`
remembers such files so later runs neither land them again nor call them replays.

For tests, ``PLACELINK_FAULT=ingest:<step>`` kills the process at a named step boundary
(:data:`INGEST_STEPS`; :meth:`Journal.step`).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

# The steps a fault can name (PLACELINK_FAULT), kept in core for Settings to validate.
from pipelines.core.faults import INGEST_STEPS

if TYPE_CHECKING:
    from pipelines.core.settings import Settings


def _kill_self() -> None:
    # SIGKILL, as the kernel's OOM killer or kill -9 would: no finally blocks, no atexit, no flush.
    os.kill(os.getpid(), signal.SIGKILL)


def write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: written and fsynced under a hidden temporary
    name, renamed into place, the folder fsynced (a crash leaves the old or the new, never half)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder, so a rename or a new name in it survives a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Identity:
    """Which inbox entry was read: if any of these changed, it is not the file that was checked."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> Identity:
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)

    @classmethod
    def at(cls, path: Path) -> Identity | None:
        try:
            return cls.of(os.lstat(path))
        except FileNotFoundError:
            return None


def name_key(name: str) -> str:
    """A file name as exact text for JSON (names may hold bytes that are not UTF-8)."""
    return os.fsencode(name).hex()


def name_from_key(key: str) -> str:
    return os.fsdecode(bytes.fromhex(key))


@dataclass
class Entry:
    """One delivery's journal: where it came from, what was decided and how far it got."""

    id: str
    outcome: str  # accept | hold
    state: str
    label: str  # the printable file name (messages, audit)
    source: str  # where the file is taken from, relative to the home (inbox or vault)
    inbox_name: str  # name_key of the inbox entry it arrived as
    target: str  # where it goes, relative to the home (vault or quarantine)
    copy: bool = False  # the inbox cannot be changed: copy, and note the inbox file received
    identity: dict | None = None  # Identity of the inbox entry as checked
    envelope_sha256: str | None = None  # of the envelope bytes that were checked (accept)
    reason: dict | None = None  # the reason file's content (hold)
    row: dict = field(default_factory=dict)  # the hub.deliveries record
    event: dict = field(default_factory=dict)  # the audit event: {"event": name, **fields}
    audit_bytes: int = 0  # the audit log's size when the journal was begun


class Journal:
    """The journal files of one hub home, and the fault hook for tests."""

    def __init__(self, home: Path, fault: str | None = None):
        self.home = home
        self.folder = home / "ingest" / "journal"
        self.fault = fault

    def step(self, name: str) -> None:
        """A step boundary: with PLACELINK_FAULT=ingest:<name>, the process is killed here."""
        assert name in INGEST_STEPS, name
        if self.fault == name:
            _kill_self()

    def begin(self, entry: Entry) -> Entry:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.write(entry)
        return entry

    def advance(self, entry: Entry, state: str) -> None:
        entry.state = state
        self.write(entry)

    def write(self, entry: Entry) -> None:
        write_durably(
            self.folder / f"{entry.id}.json", (json.dumps(asdict(entry), indent=1) + "\n").encode()
        )

    def finish(self, entry: Entry) -> None:
        self.step("cleared")
        path = self.folder / f"{entry.id}.json"
        if os.path.lexists(path):
            os.unlink(path)
            sync_folder(self.folder)

    def entries(self) -> list[Entry]:
        """Journals a killed run left, oldest first (their ids sort by creation)."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in sorted(self.folder.glob("*.json")):
            if path.name.startswith("."):
                continue
            found.append(Entry(**json.loads(path.read_text())))
        return found

    def stale_temporaries(self) -> list[Path]:
        """Half-written journal files (a kill during :func:`write_durably`)."""
        return sorted(self.folder.glob(".*.tmp")) if self.folder.is_dir() else []

    @staticmethod
    def new_id() -> str:
        # time-ordered, then random: recovery handles the oldest first
        return f"{uuid.uuid1().time:020d}-{uuid.uuid4().hex[:12]}"


class ReceivedLedger:
    """Files still in an inbox the hub cannot change that were already received (copied into the
    vault or quarantine), by name and :class:`Identity`: ``PLACELINK_HOME/ingest/received.json``.

    A file is listed while it stays in the inbox unchanged; a file put there again under the
    same name (a new upload: new inode, size or time) is a new delivery. Entries whose file has
    gone (the drop folder was cleared) are forgotten by :meth:`prune`.
    """

    def __init__(self, home: Path):
        self.path = home / "ingest" / "received.json"

    def _read(self) -> dict[str, dict]:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def _write(self, entries: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(self.path, (json.dumps(entries, indent=1, sort_keys=True) + "\n").encode())

    def note(self, inbox_name: str, identity: dict, outcome: str, stored_as: str) -> None:
        entries = self._read()
        entries[name_key(inbox_name)] = {
            "identity": identity,
            "outcome": outcome,
            "stored_as": stored_as,
        }
        self._write(entries)

    def note_folder(self, folder: Path) -> bool:
        """Remember a folder found in the inbox; True the first time it is seen (to audit it once)."""
        entries = self._read()
        key, identity = "folder:" + name_key(folder.name), Identity.at(folder)
        if (
            identity is None
            or entries.get(key, {}).get("identity", {}).get("inode") == identity.inode
        ):
            return False
        entries[key] = {"identity": asdict(identity), "outcome": "ignored", "stored_as": None}
        self._write(entries)
        return True

    def received(self, path: Path, entries: dict[str, dict] | None = None) -> dict | None:
        """What became of ``path`` if it is an inbox file already received, unchanged since
        (``entries``: the ledger as read once for many paths)."""
        entry = (self._read() if entries is None else entries).get(name_key(path.name))
        if entry is None:
            return None
        now = Identity.at(path)
        return entry if now is not None and asdict(now) == entry["identity"] else None

    def prune(self, inbox: Path) -> int:
        """Forget files no longer in the inbox as they were received; returns how many."""
        entries = self._read()

        def still_there(key: str, entry: dict) -> bool:
            now = Identity.at(inbox / name_from_key(key.removeprefix("folder:")))
            if key.startswith("folder:"):
                return now is not None and now.inode == entry["identity"]["inode"]
            return now is not None and asdict(now) == entry["identity"]

        kept = {key: entry for key, entry in entries.items() if still_there(key, entry)}
        if len(kept) != len(entries):
            self._write(kept)
        return len(entries) - len(kept)


def waiting_entries(inbox: Path, home: Path) -> tuple[list[Path], list[Path]]:
    """(deliveries waiting in ``inbox`` in name order, folders found there).

    Hidden names (a partial upload) are not deliveries; files already received from an inbox
    the hub cannot change are not waiting. Links, FIFOs and devices are listed, never followed
    or opened, so that ingest holds them."""
    if not inbox.exists():
        return [], []
    ledger = ReceivedLedger(home)
    received = ledger._read()
    files, folders = [], []
    for path in sorted(inbox.iterdir()):
        if path.name.startswith("."):
            continue
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            folders.append(path)
        elif ledger.received(path, received) is None:
            files.append(path)
    return files, folders


def inbox_files(settings: Settings) -> list[Path]:
    """The deliveries waiting in the hub's inbox, in name order (hidden files, such as a partial
    upload, are not deliveries); none if there is no inbox yet. Links, FIFOs and devices are
    listed too, without being followed or opened, so that ingest holds them (only regular
    files are accepted). Files already received from an inbox the hub cannot change (still
    there, unchanged) are not waiting; folders are not deliveries (:func:`inbox_folders`)."""
    return waiting_entries(settings.inbox, settings.home)[0]


def inbox_folders(settings: Settings) -> list[Path]:
    """Folders someone put in the hub's inbox: never deliveries, reported by every run."""
    return waiting_entries(settings.inbox, settings.home)[1]
