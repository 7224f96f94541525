"""Reading the quality results back: for the Dagster asset checks and the HTML report.

Everything here returns counts, rule names and row numbers only, never values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import duckdb

from pipelines.core.warehouse import table_exists


@dataclass
class DeliveryQuality:
    file_name: str
    received_at: object
    contract: str
    dataset: str
    rows: int
    previous_rows: int | None
    outcome: str
    rules: int
    failed_errors: int
    failed_warnings: int
    seconds: float
    failures: list[dict] = field(default_factory=list)

    def message(self) -> str:
        head = {
            "held": "HELD in quarantine (not landed)",
            "warned": "landed with warnings",
            "passed": "passed",
        }[self.outcome]
        lines = [f"{self.file_name} ({self.contract}, {self.dataset}, {self.rows:,} rows): {head}"]
        lines += [f"  [{f['severity'].upper()}] {f['summary']}" for f in self.failures]
        return "\n".join(lines)


_DELIVERY_COLUMNS = (
    "file_name, received_at, contract_id || ' v' || contract_version, dataset, row_count, "
    "previous_row_count, outcome, rules, failed_errors, failed_warnings, seconds"
)


def _failures(con: duckdb.DuckDBPyConnection, file_name: str, received_at) -> list[dict]:
    rows = con.execute(
        """
        SELECT rule, severity, unexpected_count, checked_rows, sample_rows, summary, description
        FROM hub.quality_results WHERE file_name = ? AND received_at = ? AND NOT passed
        ORDER BY severity, rule""",
        [file_name, received_at],
    ).fetchall()
    return [
        {
            "rule": r[0],
            "severity": r[1],
            "failing_rows": r[2],
            "checked_rows": r[3],
            "sample_rows": json.loads(r[4] or "[]"),
            "summary": r[5],
            "expected": r[6],
        }
        for r in rows
    ]


def deliveries(
    con: duckdb.DuckDBPyConnection, dataset: str | None = None, latest_run_only: bool = False
) -> list[DeliveryQuality]:
    """Validated deliveries, newest first; with ``latest_run_only``, those of the latest ingest run."""
    if not table_exists(con, "hub", "quality_deliveries"):
        return []
    where, params = [], []
    if dataset:
        where.append("dataset = ?")
        params.append(dataset)
    if latest_run_only:
        # The latest ingest run over every dataset: a dataset with no delivery in it has none.
        where.append("received_at = (SELECT max(received_at) FROM hub.deliveries)")
    sql = (
        f"SELECT {_DELIVERY_COLUMNS} FROM hub.quality_deliveries "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY received_at DESC, file_name"
    )
    out = []
    for row in con.execute(sql, params).fetchall():
        delivery = DeliveryQuality(*row)
        delivery.failures = _failures(con, delivery.file_name, delivery.received_at)
        out.append(delivery)
    return out


def unvalidated_extracts(con: duckdb.DuckDBPyConnection, dataset: str) -> int:
    """Extracts in ``landing.<dataset>`` without a passing (or warned) quality result."""
    if not table_exists(con, "landing", dataset):
        return 0
    if not table_exists(con, "hub", "quality_deliveries"):
        return con.execute(f"SELECT count(DISTINCT _extract_id) FROM landing.{dataset}").fetchone()[
            0
        ]
    return con.execute(f"""
        SELECT count(DISTINCT _extract_id) FROM landing.{dataset}
        WHERE _extract_id NOT IN (SELECT extract_id FROM hub.quality_deliveries
                                  WHERE outcome IN ('passed', 'warned') AND extract_id IS NOT NULL)
    """).fetchone()[0]
