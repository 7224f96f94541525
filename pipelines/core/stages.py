"""A stage clock: wall time and peak memory of the pipeline's stages, for the benchmark.

Library code marks its stages with ``with stage("linkage: train"):``. Nothing is
measured unless a :class:`StageClock` is running (``placelink bench stages`` starts one
around a real run), so the marks cost a function call in production.

Time is attributed to the innermost open stage: a stage's ``seconds`` exclude the
stages nested in it (quality checks run inside ingest; the Splink steps inside
linkage), so the stages of one run add up to the run's wall time, and what no stage
claims (Dagster's own work, reports) is left for the caller to show as the rest.
Memory is the resident set of the process **and its child processes** together (the
quality gate validates in a worker process, pipelines/quality/worker.py), read from
``/proc`` every 50 ms and at each stage boundary; a stage's ``peak_mb`` is the highest
sample while it was the innermost stage.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from pipelines.core import progress

_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
_active: StageClock | None = None


def _resident_pages(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1])


def _descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        parent = pending.pop()
        for listing in glob.glob(f"/proc/{parent}/task/*/children"):
            try:
                with open(listing) as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:  # the thread or process ended meanwhile
                continue
            found += children
            pending += children
    return found


def resident_mb(children: bool = True) -> float:
    """Resident memory of this process now, with its descendants' unless ``children`` is false, in MiB.

    Child processes are spawned, not forked (the quality worker), so their heaps are their own;
    only shared-library pages (tens of MB) are counted once per process.
    """
    pages = _resident_pages(os.getpid())
    for pid in _descendants(os.getpid()) if children else ():
        try:
            pages += _resident_pages(pid)
        except (OSError, IndexError, ValueError):  # ended between listing and reading
            continue
    return pages * _PAGE_MB


@dataclass
class StageTime:
    seconds: float = 0.0
    peak_mb: float = 0.0
    calls: int = 0
    cpu_seconds: float = 0.0  # CPU time of the whole process (all threads) while innermost


class StageClock:
    """Collects :class:`StageTime` per stage name: a stage's time is its own, excluding the
    stages nested in it.

    The one clock of both stage marks: the pipeline's (``with StageClock() as clock:``, one at
    a time in a process, fed by :func:`stage` and sampling memory every ``interval`` seconds) and
    the partner kit's (pipelines.partner_kit.steps starts one per recording, with ``outside``
    naming the stage that time no step claims is charged to, and ``interval=None``: no memory
    sampling, which would disturb the CPU figures it is read for).

    ``timer`` gives wall seconds and ``cpu_timer`` CPU seconds (``time.perf_counter`` and
    ``time.process_time`` unless a test hands in fakes).
    """

    def __init__(
        self,
        interval: float | None = 0.05,
        timer: Callable[[], float] = time.perf_counter,
        cpu_timer: Callable[[], float] = time.process_time,
        outside: str | None = None,
    ) -> None:
        self._timer, self._cpu_timer = timer, cpu_timer
        self.stages: dict[str, StageTime] = {}
        self.peak_mb = 0.0  # the process and its children together, over the clock's life
        # (name, wall and CPU seconds when it last became innermost)
        self._stack: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = interval
        self._sampler: threading.Thread | None = None
        if outside is not None:
            self.stages[outside] = StageTime()
            self._stack.append((outside, timer(), cpu_timer()))

    def __enter__(self) -> StageClock:
        global _active
        if _active is not None:
            raise RuntimeError("a stage clock is already running in this process")
        _active = self
        if self._interval is not None:
            self._sampler = threading.Thread(target=self._sample_until_stopped, daemon=True)
            self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        global _active
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        _active = None

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        if self._interval is None:
            return
        rss = resident_mb()
        with self._lock:
            self.peak_mb = max(self.peak_mb, rss)
            if self._stack:
                entry = self.stages[self._stack[-1][0]]
                entry.peak_mb = max(entry.peak_mb, rss)

    def _charge_innermost(self) -> tuple[float, float]:
        now, cpu = self._timer(), self._cpu_timer()
        if self._stack:
            name, since, cpu_since = self._stack[-1]
            self.stages[name].seconds += now - since
            self.stages[name].cpu_seconds += cpu - cpu_since
            self._stack[-1] = (name, now, cpu)
        return now, cpu

    def enter(self, name: str) -> None:
        self._sample()
        with self._lock:
            now, cpu = self._charge_innermost()
            self.stages.setdefault(name, StageTime()).calls += 1
            self._stack.append((name, now, cpu))

    def exit(self) -> None:
        self._sample()
        with self._lock:
            now, cpu = self._charge_innermost()
            self._stack.pop()
            if self._stack:  # the enclosing stage is innermost again from now
                self._stack[-1] = (self._stack[-1][0], now, cpu)

    def settle(self) -> None:
        """Charge the innermost stage (``outside``, once every stage is closed) up to now."""
        with self._lock:
            self._charge_innermost()

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.stages.values())


def stage(name: str) -> AbstractContextManager[None]:
    """Mark a stage of the pipeline (measured only while a :class:`StageClock` runs)."""
    return clocked(name, _running_clock)


def _running_clock() -> StageClock | None:
    return _active


@contextmanager
def clocked(
    name: str, running_clock: Callable[[], StageClock | None], shown: str | None = None
) -> Iterator[None]:
    """Charge the time inside the block to stage ``name`` of the clock ``running_clock()`` returns
    on entry (nothing if None), and show ``shown`` (by default ``name``) while a command shows
    progress (pipelines/core/progress.py). The clock is looked up on each entry, so a stage used
    as a decorator is measured by whichever clock runs when the function is called."""
    clock = running_clock()
    progress.stage_started(shown or name)
    try:
        if clock is None:
            yield
            return
        clock.enter(name)
        try:
            yield
        finally:
            clock.exit()
    finally:
        progress.stage_finished()
