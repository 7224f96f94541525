"""The audit event that accepts a known change of linkage's link rate (issue 20).

Written by an operator (``placelink linkage accept-change``), by governance when a flow leaves or
rejoins linkage (:func:`pipelines.governance.flows.record_flow_statuses`) and by retention that
deletes a whole dataset (:func:`pipelines.governance.retention.apply_retention`); read by the next
linkage run (:mod:`pipelines.linkage.accepted_changes`, which says how). Counts and rates only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from pipelines.governance.audit import AuditLog

EVENT = "linkage_change_accepted"


@dataclass(frozen=True)
class AcceptedChange:
    id: str
    actor: str
    reason: str
    from_rate: float | None  # the baseline the accepted shift moved from (None: not measured)
    to_rate: float | None  # the link rate the failed run measured (None: not measured)

    def covers(self, link_rate: float, tolerance: float) -> bool:
        """Whether a run linking at ``link_rate`` is the change accepted: any rate when no shift was
        measured (a retention deletion, accepted before linkage ran), else a rate within
        ``tolerance`` of the measured one (a different move still fails)."""
        return self.to_rate is None or abs(link_rate - self.to_rate) <= tolerance

    def describe(self) -> str:
        shift = (
            f"link rate {self.from_rate:.1%} -> {self.to_rate:.1%}"
            if self.from_rate is not None and self.to_rate is not None
            else "shift not yet measured"
        )
        return f"{self.reason} ({self.actor}; {shift})"

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> AcceptedChange:
        return cls(
            str(event["change_id"]),
            str(event.get("actor", "")),
            str(event.get("reason", "")),
            event.get("from_link_rate"),
            event.get("to_link_rate"),
        )


def record_acceptance(
    audit: AuditLog,
    reason: str,
    *,
    from_rate: float | None = None,
    to_rate: float | None = None,
    **fields: Any,
) -> AcceptedChange:
    """Append the ``linkage_change_accepted`` event (the audit log's actor is who accepted)."""
    if not reason.strip():
        raise ValueError(
            "give the reason for accepting the change (--reason): the IG officer reads it "
            "in the audit log"
        )
    change_id = uuid.uuid4().hex[:16]
    event = audit.append(
        EVENT,
        change_id=change_id,
        reason=reason.strip(),
        from_link_rate=None if from_rate is None else round(from_rate, 4),
        to_link_rate=None if to_rate is None else round(to_rate, 4),
        **fields,
    )
    return AcceptedChange.from_event(event)
