"""One writer at a time: the hub's run lock, ``PLACELINK_HOME/run.lock``.

DuckDB lets one process open ``warehouse.duckdb`` for writing, and a second process that tries
gets a raw "Could not set lock" error, in whichever step it happens to be. So every run that
writes the warehouse (``placelink run``, ``placelink demo``, runs Dagster launches from the UI,
the inbox sensor and the schedules) holds this lock from its start to its end, and a second one
waits for it or is refused at once with a message naming the holder.

The lock is an operating-system file lock (``flock``, through the ``filelock`` library): it dies
with the process that holds it, so a run that was killed never leaves a lock behind that blocks
the next. Who holds it (run id, pid, command, since when) is written beside it in
``run.lock.json`` for the refusal message only: that file may be stale after a kill and is never
used to decide whether the lock is free.

Within one process the lock is re-entrant: ``placelink run`` takes it before Dagster starts, and
the run's resource takes it again for the steps it executes in that same process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

# sysexits.h EX_TEMPFAIL, "try again later": what `placelink run` exits with when another run holds
# the lock, distinct from 1 (the run failed) and 2 (bad input).
EXIT_LOCKED = 75
LOCK_NAME = "run.lock"
HOLDER_NAME = "run.lock.json"

_held: dict[
    Path, list
] = {}  # lock path -> [depth, FileLock, Holder] for the locks this process holds
_guard = threading.Lock()


@dataclass(frozen=True)
class Holder:
    """Who holds the run lock, as the holder wrote it when it took the lock."""

    pid: int
    command: str
    started_at: str
    run_id: str | None = None

    def describe(self) -> str:
        run = f"run {self.run_id}" if self.run_id else "a run"
        return f"{run} ({self.command}, pid {self.pid}, since {self.started_at})"


class RunLockBusy(RuntimeError):
    """Another process holds the hub's run lock."""

    def __init__(self, lock_path: Path, holder: Holder | None, waited: float | None):
        self.lock_path, self.holder, self.waited = lock_path, holder, waited
        who = holder.describe() if holder else "another process (it has not said which run yet)"
        after = f" after waiting {waited:.0f} s" if waited else ""
        super().__init__(
            f"the hub is busy{after}: {who} holds the run lock {lock_path}; one run at a time "
            "writes the warehouse"
        )


def lock_path(home: Path) -> Path:
    return Path(home) / LOCK_NAME


def current_holder(home: Path) -> Holder | None:
    """Who said they hold the lock under ``home`` (None if no one has; may be stale: see the module)."""
    try:
        data = json.loads((Path(home) / HOLDER_NAME).read_text(encoding="utf-8"))
        return Holder(
            int(data["pid"]), str(data["command"]), str(data["started_at"]), data.get("run_id")
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_locked(home: Path) -> bool:
    """Whether some run holds the lock under ``home`` right now (this process included)."""
    path = lock_path(home)
    if path in _held:
        return True
    probe = FileLock(str(path), thread_local=False)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return True
    probe.release()
    return False


@contextmanager
def run_lock(
    home: Path,
    command: str,
    run_id: str | None = None,
    wait: float | None = 0,
    on_wait: Callable[[Holder | None], None] | None = None,
) -> Iterator[Holder]:
    """Hold the hub's run lock for the block.

    Args:
        home: PLACELINK_HOME (the lock is ``home/run.lock``).
        command: what is running, for the holder's description (``placelink run``, ``dagster run``).
        run_id: the Dagster run id, if known; a re-entry from the same process may add it later. A
            process of the run that holds the lock (a step in its own process) goes ahead.
        wait: seconds to wait for another holder: 0 refuses at once, None waits as long as it takes.
        on_wait: called once with the current holder when the lock is busy and the call waits.

    Raises:
        RunLockBusy: another process held the lock for longer than ``wait``.
    """
    path = lock_path(home).resolve()
    with _guard:
        entry = _held.get(path)
        if entry is not None:  # re-entry from this process: the outer holder keeps the lock
            entry[0] += 1
            if run_id and not entry[2].run_id:
                entry[2] = Holder(entry[2].pid, entry[2].command, entry[2].started_at, run_id)
                _write_holder(path, entry[2])
    if entry is not None:
        try:
            yield entry[2]
        finally:
            _leave(path)
        return

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False)
    if not _try(lock, 0):
        holder = current_holder(path.parent)
        if run_id and holder is not None and holder.run_id == run_id and holder.pid != os.getpid():
            # A step process of the run whose orchestrating process holds the lock (an executor
            # that runs each step in its own process): that process keeps it for the whole run.
            yield holder
            return
        if wait == 0:
            raise RunLockBusy(path, holder, None)
        if on_wait is not None:
            on_wait(holder)
        if not _try(lock, -1 if wait is None else wait):
            raise RunLockBusy(path, current_holder(path.parent), wait)
    holder = Holder(
        os.getpid(), command, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), run_id
    )
    with _guard:
        _held[path] = [1, lock, holder]
    try:
        _write_holder(path, holder)
        yield holder
    finally:
        _leave(path)


def _try(lock: FileLock, timeout: float) -> bool:
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        return False
    return True


def _leave(path: Path) -> None:
    with _guard:
        entry = _held[path]
        entry[0] -= 1
        if entry[0]:
            return
        del _held[path]
    holder_file = path.with_name(HOLDER_NAME)
    try:
        holder_file.unlink()  # before the lock goes, so a newcomer's description is never removed
    except FileNotFoundError:
        pass
    entry[1].release()


def _write_holder(path: Path, holder: Holder) -> None:
    target = path.with_name(HOLDER_NAME)
    partial = target.with_name(f".{HOLDER_NAME}.{os.getpid()}")
    partial.write_text(json.dumps(asdict(holder)) + "\n", encoding="utf-8")
    os.replace(partial, target)
