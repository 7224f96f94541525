"""The hub's clock: every date a check uses (contract in force, retention, plausible dates,
expiring agreements) and every time it records comes from here, never from the calendar
directly, so a run can be made to happen on a chosen day.

``PLACELINK_AS_OF`` (an ISO date or date-time, UTC unless it says otherwise) sets the moment a
process starts at; time then moves on from there at the normal pace, so events keep their
order and durations stay true. The demo runs as of its synthetic place's delivery day
(``pipelines.tooling.synth.study.DELIVERED_AT``), which is why it works whatever today's date is; a real
hub leaves the variable unset and runs on the calendar.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass

AS_OF_VARIABLE = "PLACELINK_AS_OF"
# Where an offset clock's time starts moving: once per process, so every Settings, resource and
# audit log built during one run reads the same timeline.
_PROCESS_START = time.monotonic()


def parse_as_of(text: str) -> dt.datetime:
    """``2026-11-02`` or ``2026-11-02T09:00:00+00:00`` as an aware date-time (UTC if naive)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{AS_OF_VARIABLE} is {text!r}: give an ISO date such as 2026-11-02 or a date-time "
            "such as 2026-11-02T09:00:00+00:00, or leave it unset to use the calendar"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Clock:
    """Now, in UTC: the calendar's, or ``as_of`` plus the time this process has run since."""

    as_of: dt.datetime | None = None

    @classmethod
    def from_env(cls, environ=None) -> Clock:
        value = (os.environ if environ is None else environ).get(AS_OF_VARIABLE, "").strip()
        return cls(parse_as_of(value) if value else None)

    def now(self) -> dt.datetime:
        if self.as_of is None:
            return dt.datetime.now(dt.UTC)
        return (self.as_of + dt.timedelta(seconds=time.monotonic() - _PROCESS_START)).astimezone(
            dt.UTC
        )

    def today(self) -> dt.date:
        return self.now().date()
