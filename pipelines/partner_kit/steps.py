"""Where the partner kit's time goes: wall time per step of ``prepare_extract``, when asked.

Nothing is recorded unless a caller wraps the run in :func:`recording` (``placelink
bench kit`` does); otherwise :func:`step` costs one context-variable lookup. The kit
marks coarse steps only (each call handles a whole column or file), never a per-row
loop. Steps nest: time is charged to the innermost step, so a token that normalises
its column on first use charges the normalising to "normalise", and the figures add
up to the run's wall time. The clock is the hub's own (pipelines.core.stages.StageClock), with
CPU time beside wall time: a busy shared machine disturbs CPU time less.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from pipelines.core.stages import StageClock, StageTime, clocked

# In pipeline order; "assemble" is building the hub columns (spreading per-value results
# over the rows, dictionaries, the payload), "other" is whatever no step claimed.
STEPS = ("read", "normalise", "HMAC tokens", "Bloom", "phonetic", "assemble", "write", "other")


@dataclass
class StepTimes:
    """Seconds per step, in :data:`STEPS` order; filled when :func:`recording` ends."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


_clock: ContextVar[StageClock | None] = ContextVar("partner_kit_step_clock", default=None)


def step(name: str) -> AbstractContextManager[None]:
    """Charge the time inside the block to step ``name`` (one of :data:`STEPS`) if recording."""
    # Shown by `placelink partner prepare`.
    return clocked(name, _clock.get, shown=f"partner kit: {name}")


@contextmanager
def recording() -> Iterator[StepTimes]:
    """Record step times of the kit runs inside the block; filled in on exit."""
    # The hub's stage clock, without memory sampling; time outside every step is "other".
    clock = StageClock(interval=None, outside="other")
    token = _clock.set(clock)
    times = StepTimes()
    try:
        yield times
    finally:
        _clock.reset(token)
        clock.settle()
        measured = {name: clock.stages.get(name, StageTime()) for name in STEPS}
        times.wall = {name: t.seconds for name, t in measured.items()}
        times.cpu = {name: t.cpu_seconds for name, t in measured.items()}
