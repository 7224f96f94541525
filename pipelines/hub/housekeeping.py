"""Housekeeping of a hub that runs for years: where files are recorded, and old held files.

Stored paths: ``hub.deliveries.stored_as`` names where the hub keeps a delivery (its envelope in
``vault/``, or a held file in ``quarantine/``) *relative to PLACELINK_HOME*, so a hub folder that is
moved or restored elsewhere still finds, and retention still deletes, its files. Rows written before
(absolute paths) are rewritten once by :func:`migrate_stored_paths`.

Quarantine purge: a held file is evidence while someone may still release it; after
``PLACELINK_QUARANTINE_KEEP_DAYS`` (default 90) :func:`purge_quarantine` deletes it with its reason
file and writes one ``quarantine_purged`` audit event per file. It deletes only files that a
reason file in the quarantine folder names, in that folder, and nothing else (not the
``released/`` history, not a file a link points to).
No Dagster imports.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb

from pipelines.core.warehouse import table_exists
from pipelines.governance.audit import AuditLog

# The folders under PLACELINK_HOME that hold the files hub.deliveries points at.
STORED_FOLDERS = ("vault", "quarantine")


def stored_path(path: Path, home: Path) -> str:
    """What ``hub.deliveries.stored_as`` records for ``path``: relative to the hub's home."""
    return Path(path).relative_to(home).as_posix()


def resolve_stored(stored_as: str, home: Path) -> Path:
    """The file a ``stored_as`` value names in this home (relative values; absolute ones as written)."""
    path = Path(stored_as)
    return path if path.is_absolute() else home / path


def relative_stored(stored_as: str, home: Path) -> str | None:
    """An absolute ``stored_as`` as it is relative to ``home``: inside ``home``, or (a hub folder that
    was moved) from its last ``vault/`` or ``quarantine/`` folder on; None if it is neither."""
    path = PurePosixPath(stored_as)
    try:
        return path.relative_to(PurePosixPath(home)).as_posix()
    except ValueError:
        pass
    parts = path.parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in STORED_FOLDERS:
            return PurePosixPath(*parts[index:]).as_posix()
    return None


def migrate_stored_paths(
    con: duckdb.DuckDBPyConnection, home: Path, audit: AuditLog, now: dt.datetime
) -> int:
    """Rewrite absolute ``stored_as`` values as paths relative to ``home``; audits how many (once)."""
    if not table_exists(con, "hub", "deliveries"):
        return 0
    rows = con.execute(
        "SELECT DISTINCT stored_as FROM hub.deliveries WHERE stored_as LIKE '/%'"
    ).fetchall()
    changes = {old: relative_stored(old, home) for (old,) in rows}
    changes = {old: new for old, new in changes.items() if new is not None}
    for old, new in changes.items():
        con.execute("UPDATE hub.deliveries SET stored_as = ? WHERE stored_as = ?", [new, old])
    if changes:
        audit.append(
            "stored_paths_migrated",
            at=now,
            paths=len(changes),
            reason="hub.deliveries.stored_as now names files relative to PLACELINK_HOME",
        )
    return len(changes)


@dataclass(frozen=True)
class Purged:
    held_as: str
    check: str | None
    contract: str | None
    received_at: str


def purge_quarantine(
    quarantine: Path, keep_days: int, audit: AuditLog, now: dt.datetime
) -> list[Purged]:
    """Delete held files (and their reasons) received more than ``keep_days`` days before ``now``;
    ``keep_days`` 0 keeps everything. Returns what was deleted, each audited."""
    if keep_days <= 0 or not quarantine.is_dir():
        return []
    cutoff = now - dt.timedelta(days=keep_days)
    purged: list[Purged] = []
    for reason_file in sorted(quarantine.glob("*.reason.json")):
        if not reason_file.is_file() or reason_file.is_symlink():
            continue
        try:
            reason = json.loads(reason_file.read_text(encoding="utf-8"))
            received = dt.datetime.fromisoformat(reason["received_at"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a reason the hub cannot read is left for a person to look at
        if received.tzinfo is None:
            received = received.replace(tzinfo=dt.UTC)
        if received >= cutoff:
            continue
        held_as = reason_file.name.removesuffix(".reason.json")
        held = quarantine / held_as
        if held.parent != quarantine:
            continue
        if held.is_symlink() or held.is_file():
            held.unlink()  # a link is removed, never what it points to
        reason_file.unlink()
        item = Purged(held_as, reason.get("check"), reason.get("contract"), reason["received_at"])
        audit.append(
            "quarantine_purged",
            at=now,
            file=reason.get("file") or held_as,
            held_as=held_as,
            check=item.check,
            contract=item.contract,
            received_at=item.received_at,
            kept_days=keep_days,
        )
        purged.append(item)
    return purged
