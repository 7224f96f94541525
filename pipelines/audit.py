"""Append-only, hash-chained audit log.

One JSON object per line; each line carries ``prev`` = SHA-256 of the previous line's
bytes (the first line's ``prev`` is 64 zeros), so an edited, deleted or reordered line
breaks the chain at a point :func:`verify` names. Events carry ids, counts and
reasons — never identifiers or token values.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pipelines.clock import Clock

GENESIS = "0" * 64
LOG_NAME = "audit.jsonl"


@dataclass(frozen=True)
class Tampering:
    line: int
    reason: str


class AuditLog:
    """The hub's audit trail under ``PLACELINK_HOME/audit/audit.jsonl``."""

    def __init__(self, folder: Path, clock: Clock = Clock()):
        self.path = Path(folder) / LOG_NAME
        self.clock = clock

    def _last_hash(self) -> str:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return GENESIS
        with self.path.open("rb") as handle:
            # Read backwards just far enough to find the last line.
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = min(size, 65536)
            while True:
                handle.seek(size - block)
                tail = handle.read(block)
                lines = tail.rstrip(b"\n").split(b"\n")
                if len(lines) > 1 or block == size:
                    return hashlib.sha256(lines[-1]).hexdigest()
                block = min(size, block * 2)

    def append(self, event: str, *, at: dt.datetime | None = None, **fields: Any) -> dict[str, Any]:
        """Write one event; returns it as written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"at": (at or self.clock.now()).isoformat(timespec="seconds"),
                  "event": event, **fields, "prev": self._last_hash()}
        line = json.dumps(record, sort_keys=False, default=str, ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return record

    def events(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)

    def verify(self) -> Tampering | None:
        """None if the chain is intact, else the first line (1-based) that breaks it."""
        if not self.path.exists():
            return None
        expected = GENESIS
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.rstrip(b"\n")
                try:
                    prev = json.loads(line)["prev"]
                except (ValueError, KeyError, TypeError):
                    return Tampering(number, "not a valid audit event (JSON with a 'prev' hash)")
                if prev != expected:
                    return Tampering(number, "its 'prev' hash does not match the line before it "
                                             "(a line was edited, removed or reordered)")
                expected = hashlib.sha256(line).hexdigest()
        return None
