"""Housekeeping of a hub that runs for years: old held files. (Where delivered files are recorded,
relative to PLACELINK_HOME, is :mod:`pipelines.core.stored_paths`: retention reads it too.)

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
from pathlib import Path

from pipelines.governance.audit import AuditLog


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
