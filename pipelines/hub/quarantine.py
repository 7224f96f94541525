"""Where extracts the hub will not accept are held, byte for byte, with the reason beside them."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import shutil
import stat
from dataclasses import asdict
from pathlib import Path

from pipelines.core.clock import Clock
from pipelines.core.rejection import Rejection
from pipelines.hub.inbox import delivery_kind, printable_name, write_new

REASON_SUFFIX = ".reason.json"
# A held file's name leaves room for ".reason.json", a counter and the temporary reason's
# ".<name>.reason.json.tmp" within the 255 bytes most file systems allow.
_MAX_NAME_BYTES = 200
_MAX_REASON_BYTES = 1024 * 1024  # a reason is a few hundred bytes; never read a huge file whole


def _safe_base(name: str) -> str:
    """A printable, bounded, visible file name for ``name`` that is never taken for a reason."""
    base = printable_name(name) or "unnamed"
    if base.startswith("."):
        base = "_" + base  # hidden names are not listed (a partial upload, a temporary reason)
    if base.endswith(REASON_SUFFIX):
        base += ".held"  # a delivery named like a reason is never confused with one
    if len(base.encode()) > _MAX_NAME_BYTES:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
        suffix = Path(base).suffix[:16]
        head = base.encode()[: _MAX_NAME_BYTES - len(digest) - len(suffix) - 2].decode(
            "utf-8", "ignore"
        )
        base = f"{head}~{digest}{suffix}"
    return base


def pending_reason(held: Path) -> Path:
    """Where a held file's reason is written before it is renamed beside the file."""
    return held.with_name(f".{held.name}{REASON_SUFFIX}.tmp")


def reason_path(held: Path) -> Path:
    return held.with_name(held.name + REASON_SUFFIX)


def free_name(folder: Path, name: str) -> Path:
    """A path in ``folder`` for a file called ``name`` that overwrites nothing: printable, short
    enough for its reason to fit beside it, never ending in ``.reason.json``, and free together
    with its reason (``name.1``, ``name.2`` ... when taken)."""
    base = _safe_base(name)
    for counter in itertools.count():
        candidate = folder / (base if counter == 0 else f"{base}.{counter}")
        if not any(
            os.path.lexists(p)
            for p in (candidate, reason_path(candidate), pending_reason(candidate))
        ):
            return candidate
    raise AssertionError("unreachable")


_NOT_A_FILE = {"symbolic link": "the link's target path as text (the link was not followed)"}


def reason_record(label: str, rejection: Rejection, received_at: dt.datetime, file: Path) -> dict:
    """What ``<held name>.reason.json`` holds for ``file`` (the inbox entry as it arrived)."""
    reason = {
        "file": label,
        "received_at": received_at.isoformat(timespec="seconds"),
        **asdict(rejection),
        "message": rejection.message(label),
    }
    kind = delivery_kind(file) if os.path.lexists(file) else None
    if kind is not None:
        reason["held_content"] = _NOT_A_FILE.get(
            kind, f"nothing: a {kind} carries no delivered bytes"
        )
        reason["arrived_as"] = kind
    return reason


_REASON_FIELDS = ("check", "expected", "found", "action", "message", "received_at")


def _read_reason(held: Path) -> tuple[dict, str | None]:
    """The recorded reason of a held file, or ({}, why it cannot be read)."""
    for candidate in (reason_path(held), pending_reason(held)):
        try:
            if not stat.S_ISREG(os.lstat(candidate).st_mode):
                continue
            with open(candidate, "rb") as handle:
                raw = handle.read(_MAX_REASON_BYTES + 1)
        except OSError:
            continue
        if not raw.strip():
            return {}, "its reason file is empty (0 bytes: written when the disk was full?)"
        if len(raw) > _MAX_REASON_BYTES:
            return {}, "its reason file is larger than any reason the hub writes"
        try:
            reason = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return {}, "its reason file is not UTF-8 text"
        except ValueError:
            return {}, "its reason file is not JSON"
        if not isinstance(reason, dict):
            return {}, f"its reason file holds a JSON {type(reason).__name__}, not a reason"
        return reason, None
    return {}, "it has no reason file (the hub stopped while holding it, or the file was removed)"


def _describe(held: Path, reason: dict, problem: str | None) -> dict:
    """One held file as the operator commands show it: every field present, all printable text."""
    if problem is not None:
        name = printable_name(held.name)
        item = {
            "file": name,
            "check": "reason missing",
            "expected": "a readable reason beside the held file",
            "found": f"{name} is held but {problem}",
            "action": "the held bytes are as they arrived; see `placelink audit show` and hub.deliveries "
            "for why it was held, then release it or ask the partner to re-send",
            "contract": None,
            "message": f"extract {name} is held without a readable reason: {problem}",
            "received_at": "unknown",
        }
    else:
        item = {
            key: printable_name(str(value)) if isinstance(value, str) else value
            for key, value in reason.items()
        }
        for key in _REASON_FIELDS:
            if not isinstance(item.get(key), str) or not item[key]:
                item[key] = "not recorded"
        if not isinstance(item.get("file"), str) or not item["file"]:
            item["file"] = printable_name(held.name)
        if not isinstance(item.get("contract"), str):
            item["contract"] = None
    item["held_as"] = held.name
    return item


def _held_paths(quarantine: Path) -> list[Path]:
    """Held files (not their reasons, not hidden temporary files, not folders), oldest first."""
    if not quarantine.is_dir():
        return []
    entries = {p.name: p for p in quarantine.iterdir() if not p.name.startswith(".")}
    held = []
    for name, path in entries.items():
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                continue
        except OSError:
            continue
        # A reason sits beside its held file. A file named like a reason with nothing beside it,
        # or with a reason of its own (a delivery held by an older version), is a held file.
        if (
            name.endswith(REASON_SUFFIX)
            and name.removesuffix(REASON_SUFFIX) in entries
            and name + REASON_SUFFIX not in entries
        ):
            continue
        held.append(path)

    def arrived(path: Path) -> tuple[float, str]:
        try:
            return os.lstat(reason_path(path)).st_mtime, path.name
        except OSError:
            return os.lstat(path).st_mtime, path.name

    return sorted(held, key=arrived)


def held_files(quarantine: Path) -> list[dict]:
    """Every held file with its recorded reason, oldest first.

    Each item has ``held_as`` (the name in quarantine), ``file`` (the name it arrived under),
    ``check``, ``expected``, ``found``, ``action``, ``message``, ``received_at`` and ``contract``,
    all printable. A held file whose reason is missing, empty or unreadable is listed with check
    ``reason missing`` and says why; reading never changes anything in quarantine.
    """
    return [_describe(path, *_read_reason(path)) for path in _held_paths(quarantine)]


RELEASED_DIR = "released"


class ReleaseError(ValueError):
    """A release that cannot be done; the message says why and what to do."""


def _plain_name(name: str) -> bool:
    """Whether ``name`` can be used as one file's name inside a folder (no path, not hidden)."""
    return (
        bool(name)
        and "/" not in name
        and "\0" not in name
        and not name.startswith(".")
        and len(os.fsencode(name)) <= 255
    )


def _history_name(history: Path, held_as: str) -> Path:
    """``released/<held name>.reason.json``, or ``<held name>.N.reason.json`` if released before."""
    base = held_as if len(os.fsencode(held_as)) <= _MAX_NAME_BYTES else _safe_base(held_as)
    for counter in itertools.count():
        candidate = history / (base + (f".{counter}" if counter else "") + REASON_SUFFIX)
        if not os.path.lexists(candidate):
            return candidate
    raise AssertionError("unreachable")


def release(
    quarantine: Path,
    held_as: str,
    inbox: Path,
    audit,
    released_at: dt.datetime | None = None,
    by: str | None = None,
) -> Path:
    """Move a held file back, unchanged, into the inbox so the next run checks it again.

    It goes back under the name it arrived with (if that is a plain file name, else its held
    name). Its reason moves to ``quarantine/released/`` with the release time, so the history of
    why it was held stays readable. Returns the file's path in the inbox. Only names that
    :func:`held_files` lists can be released; an entry that arrived as a link, a FIFO or a
    device is not a delivery and cannot be released.
    """
    item = next((i for i in held_files(quarantine) if i["held_as"] == held_as), None)
    if item is None:
        raise ReleaseError(
            f"no held extract named {printable_name(held_as)}; see `placelink hub quarantine list`"
        )
    held = quarantine / held_as
    if item.get("arrived_as"):
        raise ReleaseError(
            f"{held_as} arrived as a {item['arrived_as']}, not a file: there is nothing to "
            "check again; ask the partner to upload the extract itself"
        )
    original = item["file"] if _plain_name(item["file"]) else held_as
    target = inbox / original
    if os.path.lexists(target):
        raise ReleaseError(
            f"{target} already exists in the inbox; wait for the next run or move it away"
        )
    released_at = released_at or Clock.from_env().now()
    inbox.mkdir(parents=True, exist_ok=True)
    if not os.access(inbox, os.W_OK | os.X_OK):
        raise ReleaseError(
            f"the hub cannot write to the inbox {inbox} (a read-only drop folder): ask the partner "
            "to upload the file again (a new upload is checked as a new delivery), or let the hub "
            "write there and release it again; docs/ingest-states.md"
        )
    shutil.move(held, target)
    history = quarantine / RELEASED_DIR
    history.mkdir(exist_ok=True)
    record = {**item, "released_at": released_at.isoformat(timespec="seconds")}
    write_new(_history_name(history, held_as), (json.dumps(record, indent=2) + "\n").encode())
    for leftover in (reason_path(held), pending_reason(held)):
        if os.path.lexists(leftover):
            os.unlink(leftover)
    audit.append(
        "extract_released",
        file=original,
        held_as=held_as,
        check=item["check"],
        contract=item.get("contract"),
        by=by,
    )
    return target


def accepted_deliveries(audit) -> list[dict]:
    """Every accepted delivery, oldest first, as the audit log records it: a run appends
    ``extract_accepted`` as it accepts each file. The warehouse is never opened, so an operator
    listing deliveries never holds up (or fails) a run that is writing it."""
    rows = []
    for event in audit.events():
        if event.get("event") != "extract_accepted":
            continue
        version = event.get("contract_version")
        rows.append(
            {
                "file_name": event.get("file"),
                "received_at": str(event.get("at", ""))[:19],
                "contract": f"{event.get('contract')} v{version}"
                if version
                else str(event.get("contract")),
                "dataset": event.get("dataset"),
                "row_count": event.get("rows"),
            }
        )
    return rows
