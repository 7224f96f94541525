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

# In pipeline order; "assemble" is building the hub columns (spreading per-value results
# over the rows, dictionaries, the payload), "other" is whatever no step claimed.
STEPS = ("read", "normalise", "HMAC tokens", "Bloom", "phonetic", "assemble", "write", "other")


class StepClock:
    """Exclusive wall seconds per step (a step's time excludes the steps inside it)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[str] = ["other"]
        self._mark = time.perf_counter()

    def _charge(self) -> None:
        now = time.perf_counter()
        self.seconds[self._stack[-1]] += now - self._mark
        self._mark = now

    def enter(self, name: str) -> None:
        self._charge()
        self._stack.append(name)

    def leave(self) -> None:
        self._charge()
        self._stack.pop()

    def stop(self) -> dict[str, float]:
        self._charge()
        return {name: self.seconds.get(name, 0.0) for name in STEPS}


_clock: ContextVar[StepClock | None] = ContextVar("partner_kit_step_clock", default=None)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Charge the time inside the block to step ``name`` (one of :data:`STEPS`) if recording."""
    clock = _clock.get()
    if clock is None:
        yield
        return
    clock.enter(name)
    try:
        yield
    finally:
        clock.leave()


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Record step times of the kit runs inside the block; the dict is filled on exit."""
    clock = StepClock()
    token = _clock.set(clock)
    times: dict[str, float] = {}
    try:
        yield times
    finally:
        _clock.reset(token)
        times.update(clock.stop())
