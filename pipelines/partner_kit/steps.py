"""Where the partner kit's time goes: wall time per step of ``prepare_extract``, when asked.

Nothing is recorded unless a caller wraps the run in :func:`recording` (``placelink
bench kit`` does); otherwise :func:`step` costs one context-variable lookup. The kit
marks coarse steps only (each call handles a whole column or file), never a per-row
loop. Steps nest: time is charged to the innermost step, so a token that normalises
its column on first use charges the normalising to "normalise", and the figures add
up to the run's wall time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from pipelines import progress

# In pipeline order; "assemble" is building the hub columns (spreading per-value results
# over the rows, dictionaries, the payload), "other" is whatever no step claimed.
STEPS = ("read", "normalise", "HMAC tokens", "Bloom", "phonetic", "assemble", "write", "other")


class StepClock:
    """Exclusive seconds per step (a step's time excludes the steps inside it): wall time,
    and CPU time of the whole process (all threads), which a busy shared machine
    disturbs less."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._stack: list[str] = ["other"]
        self._wall_mark, self._cpu_mark = time.perf_counter(), time.process_time()

    def _charge(self) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.wall[self._stack[-1]] += wall - self._wall_mark
        self.cpu[self._stack[-1]] += cpu - self._cpu_mark
        self._wall_mark, self._cpu_mark = wall, cpu

    def enter(self, name: str) -> None:
        self._charge()
        self._stack.append(name)

    def leave(self) -> None:
        self._charge()
        self._stack.pop()

    def stop(self) -> StepTimes:
        self._charge()
        return StepTimes(
            wall={name: self.wall.get(name, 0.0) for name in STEPS},
            cpu={name: self.cpu.get(name, 0.0) for name in STEPS},
        )


@dataclass
class StepTimes:
    """Seconds per step, in :data:`STEPS` order; filled when :func:`recording` ends."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


_clock: ContextVar[StepClock | None] = ContextVar("partner_kit_step_clock", default=None)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Charge the time inside the block to step ``name`` (one of :data:`STEPS`) if recording."""
    clock = _clock.get()
    progress.stage_started(f"partner kit: {name}")  # shown by `placelink partner prepare`
    try:
        if clock is None:
            yield
            return
        clock.enter(name)
        try:
            yield
        finally:
            clock.leave()
    finally:
        progress.stage_finished()


@contextmanager
def recording() -> Iterator[StepTimes]:
    """Record step times of the kit runs inside the block; filled in on exit."""
    clock = StepClock()
    token = _clock.set(clock)
    times = StepTimes()
    try:
        yield times
    finally:
        _clock.reset(token)
        measured = clock.stop()
        times.wall, times.cpu = measured.wall, measured.cpu
