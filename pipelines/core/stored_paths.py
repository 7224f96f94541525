"""Where the hub records the files it keeps: ``hub.deliveries.stored_as``.

``stored_as`` names where the hub keeps a delivery (its envelope in ``vault/``, or a held file in
``quarantine/``) *relative to PLACELINK_HOME*, so a hub folder that is moved or restored elsewhere
still finds, and retention still deletes, its files. Rows written before (absolute paths) are
rewritten once by :func:`migrate_stored_paths`. Read by ingest, recovery and retention alike, so
it sits below both the hub and governance.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import duckdb

from pipelines.core.warehouse import table_exists


class AuditTrail(Protocol):
    """Where the migration is recorded: :class:`pipelines.governance.audit.AuditLog`."""

    def append(self, event: str, **fields: Any) -> Any: ...


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
    con: duckdb.DuckDBPyConnection, home: Path, audit: AuditTrail, now: dt.datetime
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
