"""Delivery cadence: which datasets are due, which arrived, which are late.

A contract's optional ``delivery`` term (:class:`~pipelines.governance.contracts.DeliveryTerms`) says a
dataset is delivered every month or quarter, due by a day of the month after the period ends.
On a given day the hub expects the latest period whose due date has passed (and that ended after
the agreement began: nothing is owed for a period before it); a dataset is
*overdue* when no accepted delivery covers that period (a delivery of a later period covers the
earlier ones: a partner that sent October's extract is not late with September's).

What arrived is read from the audit log's ``extract_accepted`` events, never from the
warehouse, so operators' commands (``placelink hub deliveries --overdue``) and the hourly
overdue sensor never open the database a run is writing. Periods are counted only while the
agreement is in force: nothing is expected before ``valid_from`` or from a suspended flow.
No Dagster imports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from pipelines.core.alerts import DELIVERIES_OVERDUE, Alert
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import AuditLog, hub_audit_log
from pipelines.governance.contracts import Contract, DeliverySchedule

# The Dagster asset check on every landing table that says whether its dataset is on time.
OVERDUE_CHECK = "delivery_on_time"


def _month_index(period: str) -> int:
    year, month = period.split("-")
    return int(year) * 12 + int(month) - 1


def _period(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _covering_index(schedule: DeliverySchedule, index: int) -> int:
    """The last month of the period that month ``index`` belongs to (itself, or its quarter's end)."""
    return index if schedule.frequency == "monthly" else index - index % 3 + 2


def due_date(schedule: DeliverySchedule, period: str) -> dt.date:
    """When the delivery for ``period`` (YYYY-MM; for a quarter, any of its months) is due."""
    after = _covering_index(schedule, _month_index(period)) + 1
    return dt.date(after // 12, after % 12 + 1, schedule.due_day)


def expected_period(schedule: DeliverySchedule, on: dt.date) -> str | None:
    """The latest period whose delivery was due before ``on`` (a delivery due on the 10th is
    late from the 11th); for a quarter, the quarter's last month."""
    index = on.year * 12 + on.month - 1 - 1  # last month
    index = _covering_index(schedule, index)
    step = 1 if schedule.frequency == "monthly" else 3
    while due_date(schedule, _period(index)) >= on:
        index -= step
    return _period(index)


@dataclass(frozen=True)
class AcceptedDelivery:
    """One accepted extract, as the audit log recorded it."""

    contract_id: str
    dataset: str
    period: str  # the reporting period the partner stated (YYYY-MM)
    accepted_at: str  # ISO date-time
    kind: str = "full"


def _fallback_period(accepted_at: str) -> str:
    # Events written before the period was audited: assume the month before it arrived.
    day = dt.date.fromisoformat(accepted_at[:10])
    return _period(day.year * 12 + day.month - 2)


def accepted_deliveries(audit: AuditLog) -> list[AcceptedDelivery]:
    """Every accepted extract in the audit log (read only), oldest first."""
    found = []
    for event in audit.events():
        if event.get("event") != "extract_accepted" or not event.get("dataset"):
            continue
        contract = str(event.get("contract") or "").split(" v", 1)[0]
        period = event.get("reporting_period") or _fallback_period(event["at"])
        found.append(
            AcceptedDelivery(
                contract,
                event["dataset"],
                period,
                event["at"],
                event.get("delivery_kind") or "full",
            )
        )
    return found


@dataclass(frozen=True)
class DeliveryStatus:
    """Where one dataset stands on a day: what came last, what was expected, and how late it is."""

    contract_id: str
    dataset: str
    frequency: str
    due_day: int
    kind: str
    last_period: str | None
    last_accepted_at: str | None
    expected_period: str | None  # None: nothing due yet under this agreement
    due_on: str | None
    days_overdue: int
    next_period: str
    next_due_on: str

    @property
    def overdue(self) -> bool:
        return self.days_overdue > 0

    @property
    def key(self) -> str:
        """Identifies one late period of one dataset (the overdue sensor alerts each once)."""
        return f"{self.contract_id}/{self.dataset}/{self.expected_period}"

    def describe(self) -> str:
        last = (
            f"last delivered period {self.last_period} (accepted {self.last_accepted_at[:10]})"
            if self.last_period
            else "nothing delivered yet"
        )
        if self.overdue:
            return (
                f"{self.contract_id} {self.dataset}: period {self.expected_period} was due by {self.due_on}, "
                f"{self.days_overdue} day(s) overdue; {last}"
            )
        return f"{self.contract_id} {self.dataset}: on time; {last}; next due {self.next_due_on} ({self.next_period})"

    def to_metadata(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_metadata(cls, metadata: Mapping) -> DeliveryStatus | None:
        """Rebuilt from an asset check's metadata (Dagster wraps each value); None if it is not one."""
        values = {k: getattr(v, "value", v) for k, v in metadata.items()}
        try:
            return cls(**{name: values.get(name) for name in cls.__dataclass_fields__})
        except TypeError:
            return None


def delivery_status(
    contract: Contract, dataset: str, delivered: Iterable[AcceptedDelivery], on: dt.date
) -> DeliveryStatus | None:
    """Where ``dataset`` of ``contract`` stands on ``on``; None if the contract sets no cadence."""
    schedule = contract.delivery_schedule(dataset)
    if schedule is None:
        return None
    mine = [d for d in delivered if d.contract_id == contract.id and d.dataset == dataset]
    last = max(mine, key=lambda d: (_month_index(d.period), d.accepted_at), default=None)
    expected = expected_period(schedule, on)
    due = due_date(schedule, expected)
    start = contract.terms.valid_from
    first = _covering_index(schedule, start.year * 12 + start.month - 1)
    if _covering_index(schedule, _month_index(expected)) < first:
        expected = None  # a period that ended before the agreement began is not owed under it
    covered = expected is None or (
        last is not None
        and _covering_index(schedule, _month_index(last.period))
        >= _covering_index(schedule, _month_index(expected))
    )
    in_force = contract.in_force(on)[0]
    late = 0 if covered or not in_force else (on - due).days
    # The next period due: after the one expected and after the last delivered, and not before the
    # agreement began.
    step = 1 if schedule.frequency == "monthly" else 3
    candidates = [first]
    if expected:
        candidates.append(_covering_index(schedule, _month_index(expected)) + step)
    if last:
        candidates.append(_covering_index(schedule, _month_index(last.period)) + step)
    following = _period(max(candidates))
    return DeliveryStatus(
        contract.id,
        dataset,
        schedule.frequency,
        schedule.due_day,
        schedule.kind,
        last.period if last else None,
        last.accepted_at if last else None,
        expected,
        due.isoformat() if expected else None,
        late,
        following,
        due_date(schedule, following).isoformat(),
    )


def delivery_statuses(
    contracts: Mapping[str, Contract], delivered: list[AcceptedDelivery], on: dt.date
) -> list[DeliveryStatus]:
    """Every dataset with a cadence, in contract and dataset order."""
    found = []
    for contract in sorted(contracts.values(), key=lambda c: c.id):
        for dataset in contract.datasets:
            status = delivery_status(contract, dataset, delivered, on)
            if status is not None:
                found.append(status)
    return found


def overdue_deliveries(settings) -> list[DeliveryStatus]:
    """The datasets overdue on the hub's today (``settings``: :class:`pipelines.core.settings.Settings`),
    from its contracts and audit log; opens nothing for writing."""
    contracts, _ = load_hub_contracts(settings)  # signatures checked: a draft is due nowhere
    statuses = delivery_statuses(
        contracts, accepted_deliveries(hub_audit_log(settings)), settings.today()
    )
    return [s for s in statuses if s.overdue]


def overdue_alert(overdue: list[DeliveryStatus], link: str = "") -> Alert:
    """One alert listing every overdue dataset (contract id, dataset, period, due date, days late)."""
    facts = tuple(
        f"{o.contract_id} / {o.dataset}: period {o.expected_period} due by {o.due_on}, "
        f"{o.days_overdue} day(s) overdue"
        + (f" (last delivered: {o.last_period})" if o.last_period else " (nothing delivered yet)")
        for o in overdue
    )
    return Alert(
        DELIVERIES_OVERDUE,
        f"{len(overdue)} delivery(ies) overdue",
        facts,
        "ask the partner when the extract will come (`placelink hub deliveries --overdue` lists them); "
        "if the agreement's cadence changed, the IG officer updates its delivery term",
        link,
    )
