"""Delivery months: which reporting months the hub's partitions cover, and what each partner
delivered for a month (the landing assets' partitions in the Dagster UI, assets/ingest.py).

A delivery's month is its envelope's ``reporting_period`` (``YYYY-MM``, signed by the partner),
not the day it arrived: a late or corrected October extract that arrives in December is
October's. Plain Python over ``hub.deliveries``; no Dagster here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from pipelines.core.clock import Clock
from pipelines.core.warehouse import table_exists
from pipelines.governance.contracts import Contract

MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
# The Dagster run tag naming the reporting months a run re-materialises (a backfill): YYYY-MM[,YYYY-MM...].
MONTHS_TAG = "placelink/months"


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def previous_month(day: dt.date) -> dt.date:
    return (month_start(day) - dt.timedelta(days=1)).replace(day=1)


def first_month(contracts: Iterable[Contract], clock: Clock) -> dt.date:
    """The first reporting month the hub shows: the month before the earliest agreement begins
    (the first delivery accepted under it may report the month that just ended); with no
    agreement, the clock's month. Read from the contracts, so it never goes stale."""
    starts = [c.terms.valid_from for c in contracts]
    today = clock.today()
    first = previous_month(min(starts)) if starts else month_start(today)
    return min(first, month_start(today))


def months_after_calendar(month: dt.date) -> int:
    """How many months ``month`` is after the calendar's (0 if it is not)."""
    # Dagster's partitions follow the calendar, whatever the hub's clock says: a clock without
    # PLACELINK_AS_OF is the calendar's.
    calendar = Clock().today()
    return max(0, (month.year - calendar.year) * 12 + month.month - calendar.month)


def parse_month(text: str) -> str:
    """``YYYY-MM`` as given, or ValueError saying what to give."""
    if not MONTH.fullmatch(text.strip()):
        raise ValueError(f"month {text!r}: give a reporting month as YYYY-MM, e.g. 2026-10")
    return text.strip()


@dataclass(frozen=True)
class MonthDelivery:
    """One accepted extract for a dataset's reporting month (no content digest, no values)."""

    file_name: str
    extract_id: str
    delivery_kind: str  # full | delta (full when the header predates the field)
    rows_delivered: int
    rows_in_use: int  # its rows still in the landing table (later deliveries replace rows)
    received_at: dt.datetime


def month_deliveries(
    con: duckdb.DuckDBPyConnection, month: str, datasets: Iterable[str]
) -> dict[str, list[MonthDelivery]]:
    """The accepted extracts of reporting ``month`` by dataset (of ``datasets`` only), oldest first,
    leaving out those retention has deleted. A dataset with none is absent."""
    if not table_exists(con, "hub", "deliveries"):
        return {}
    wanted = sorted(set(datasets))
    deleted = (
        "AND extract_id NOT IN (SELECT extract_id FROM hub.retention_deletions)"
        if table_exists(con, "hub", "retention_deletions")
        else ""
    )
    rows = con.execute(
        f"""
        SELECT dataset, file_name, extract_id, coalesce(delivery_kind, 'full'), row_count, received_at
        FROM hub.deliveries
        WHERE status = 'accepted' AND kind IS DISTINCT FROM 'withdrawal' AND reporting_period = ?
          AND list_contains(?, dataset) {deleted}
        ORDER BY received_at, file_name
    """,
        [month, wanted],
    ).fetchall()
    found: dict[str, list[MonthDelivery]] = {}
    for dataset, file_name, extract_id, kind, row_count, received_at in rows:
        in_use = (
            con.execute(
                f"SELECT count(*) FROM landing.{dataset} WHERE _extract_id = ?", [extract_id]
            ).fetchall()[0][0]
            if table_exists(con, "landing", dataset)
            else 0
        )
        found.setdefault(dataset, []).append(
            MonthDelivery(file_name, extract_id, kind, row_count or 0, in_use, received_at)
        )
    return found


def months_of(con: duckdb.DuckDBPyConnection, extract_ids: Iterable[str]) -> list[str]:
    """The reporting months of these accepted extracts, in order."""
    ids = sorted(set(extract_ids))
    if not ids:
        return []
    return [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT reporting_period FROM hub.deliveries WHERE list_contains(?, extract_id) "
            "AND reporting_period IS NOT NULL ORDER BY 1",
            [ids],
        ).fetchall()
    ]


def landing_table_rows(con: duckdb.DuckDBPyConnection, dataset: str) -> int:
    """How many rows a dataset's landing table holds now (every month)."""
    return con.execute(f"SELECT count(*) FROM landing.{dataset}").fetchall()[0][0]
