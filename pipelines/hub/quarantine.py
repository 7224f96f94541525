"""Where extracts the hub will not accept are held, byte for byte, with the reason beside them."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rejection:
    """Why a delivery was held: which check failed, what was expected and found, what to do."""

    check: str
    expected: str
    found: str
    action: str
    contract: str | None = None

    def message(self, file_name: str) -> str:
        under = f" under contract {self.contract}" if self.contract else ""
        return (f"extract {file_name} rejected{under}: check '{self.check}' failed: expected "
                f"{self.expected}; found {self.found}. What to do: {self.action}")


class ExtractRejected(Exception):
    def __init__(self, rejection: Rejection):
        super().__init__(rejection.check)
        self.rejection = rejection

    def __reduce__(self):
        # Raised in the quality worker process too: pickle the rejection, not the message.
        return type(self), (self.rejection,)


def free_name(folder: Path, name: str) -> Path:
    """A path in ``folder`` for ``name`` that does not overwrite an earlier file."""
    candidate = folder / name
    counter = 1
    while candidate.exists():
        candidate = folder / f"{name}.{counter}"
        counter += 1
    return candidate


def hold(file: Path, quarantine: Path, rejection: Rejection, received_at: dt.datetime) -> Path:
    """Move ``file`` unchanged into quarantine and write ``<name>.reason.json`` beside it."""
    quarantine.mkdir(parents=True, exist_ok=True)
    target = free_name(quarantine, file.name)
    shutil.move(str(file), target)
    reason = {"file": file.name, "received_at": received_at.isoformat(timespec="seconds"),
              **asdict(rejection), "message": rejection.message(file.name)}
    target.with_name(target.name + ".reason.json").write_text(json.dumps(reason, indent=2) + "\n")
    return target


def held_files(quarantine: Path) -> list[dict]:
    """Every held file with its recorded reason, oldest first."""
    reasons = []
    for reason_file in sorted(quarantine.glob("*.reason.json"), key=lambda p: p.stat().st_mtime):
        reasons.append({"held_as": reason_file.name.removesuffix(".reason.json"),
                        **json.loads(reason_file.read_text())})
    return reasons


RELEASED_DIR = "released"


class ReleaseError(ValueError):
    """A release that cannot be done; the message says why and what to do."""


def release(quarantine: Path, held_as: str, inbox: Path, audit, released_at: dt.datetime | None = None,
            by: str | None = None) -> Path:
    """Move a held file back, unchanged, into the inbox so the next run checks it again.

    Its reason moves to ``quarantine/released/`` with the release time, so the history of
    why it was held stays readable. Returns the file's path in the inbox.
    """
    held = quarantine / held_as
    reason_file = quarantine / f"{held_as}.reason.json"
    if not held.is_file() or not reason_file.is_file():
        raise ReleaseError(f"no held extract named {held_as}; see `placelink hub quarantine list`")
    reason = json.loads(reason_file.read_text())
    original = reason.get("file") or held_as
    target = inbox / original
    if target.exists():
        raise ReleaseError(f"{target} already exists in the inbox; wait for the next run or move it away")
    released_at = released_at or dt.datetime.now(dt.UTC)
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.move(str(held), target)
    history = quarantine / RELEASED_DIR
    history.mkdir(exist_ok=True)
    reason["released_at"] = released_at.isoformat(timespec="seconds")
    free_name(history, reason_file.name).write_text(json.dumps(reason, indent=2) + "\n")
    reason_file.unlink()
    audit.append("extract_released", file=original, held_as=held_as, check=reason.get("check"),
                 contract=reason.get("contract"), by=by)
    return target


def accepted_deliveries(warehouse: Path) -> tuple[list[dict], str | None]:
    """Accepted deliveries from the hub's record, and why they could not be read (if so)."""
    import duckdb

    if not Path(warehouse).exists():
        return [], None
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return [], "the warehouse is busy (a pipeline run holds it); try again after the run"
    try:
        rows = con.execute("""
            SELECT file_name, strftime(received_at, '%Y-%m-%dT%H:%M:%S'), contract_id || ' v' || contract_version,
                   dataset, row_count
            FROM hub.deliveries WHERE status = 'accepted' ORDER BY received_at, file_name""").fetchall()
    except duckdb.Error:
        return [], None
    finally:
        con.close()
    keys = ("file_name", "received_at", "contract", "dataset", "row_count")
    return [dict(zip(keys, row)) for row in rows], None
