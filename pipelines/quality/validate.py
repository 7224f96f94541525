"""The quality gate of ingest: validate one delivery before it lands, record what was found.

Ingest calls ``start_quality_check`` after a file passes the contract checks and
``finish_quality_check`` before landing it; in between the delivery is validated in a worker
process (:mod:`pipelines.quality.worker`) while ingest opens the next file.
A delivery that fails an ``error`` rule is held (:class:`ExtractRejected` with check
``quality``), so it never reaches ``landing.<dataset>`` and nothing downstream sees it;
``warn`` failures land and are recorded. Either way the results go to
``hub.quality_results`` (one row per rule) and ``hub.quality_deliveries`` (one per delivery),
which the Dagster asset checks and ``reports/quality.html`` read.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipelines.core.rejection import ExtractRejected, Rejection
from pipelines.core.stages import stage
from pipelines.governance.contracts import Contract
from pipelines.quality import worker
from pipelines.quality.gx_suite import RuleResult, run_rules
from pipelines.quality.rules import ERROR, WARN, QualityRuleError, rules_for


@dataclass(frozen=True)
class QualityVerdict:
    """The quality of one delivery: every rule's result and what happens to the delivery."""

    file_name: str
    contract: Contract
    dataset: str
    rows: int
    previous_rows: int | None
    results: tuple[RuleResult, ...]
    seconds: float

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed]

    @property
    def failed_errors(self) -> list[RuleResult]:
        return [r for r in self.failed if r.rule.severity == ERROR]

    @property
    def failed_warnings(self) -> list[RuleResult]:
        return [r for r in self.failed if r.rule.severity == WARN]

    @property
    def outcome(self) -> str:
        return "held" if self.failed_errors else "warned" if self.failed_warnings else "passed"

    def message(self) -> str:
        """One line naming the delivery, the contract and every failed rule."""
        failed = self.failed_errors or self.failed_warnings
        if not failed:
            return f"{self.file_name} ({self.contract.label}, {self.dataset}): all {len(self.results)} quality rules passed"
        level = "ERROR" if self.failed_errors else "WARN"
        return (
            f"{self.file_name} ({self.contract.label}, {self.dataset}): {len(failed)} {level} quality "
            f"rule(s) failed: " + "; ".join(r.summary() for r in failed)
        )


def validate_delivery(
    table: pa.Table,
    contract: Contract,
    dataset: str,
    file_name: str,
    today: dt.date,
    previous_rows: int | None = None,
) -> QualityVerdict:
    """Validate one delivery's rows (an Arrow table, as decrypted) against its contract's rules."""
    started = time.perf_counter()
    try:
        rules = rules_for(contract, dataset, table.num_rows, today, previous_rows)
    except QualityRuleError as exc:
        raise ExtractRejected(
            Rejection(
                "quality",
                "quality rules that placelink can run",
                str(exc),
                "the IG officer or data engineer fixes the contract's quality entry; then move the file "
                "from quarantine back to the inbox",
                contract.label,
            )
        ) from None
    results = run_rules(table, rules, dataset)
    return QualityVerdict(
        file_name,
        contract,
        dataset,
        table.num_rows,
        previous_rows,
        tuple(results),
        time.perf_counter() - started,
    )


def previous_row_count(
    con: duckdb.DuckDBPyConnection, contract_id: str, dataset: str, kind: str = "full"
) -> int | None:
    """Rows of the latest accepted delivery of this contract and dataset of the same ``kind``
    (a 20-row delta is compared with the last delta, not the last full snapshot), if any."""
    row = con.execute(
        """
        SELECT row_count FROM hub.deliveries
        WHERE status = 'accepted' AND contract_id = ? AND dataset = ? AND kind IS DISTINCT FROM 'withdrawal'
          AND coalesce(delivery_kind, 'full') = ?
        ORDER BY received_at DESC LIMIT 1""",
        [contract_id, dataset, kind],
    ).fetchone()
    return row[0] if row else None


def record_verdict(
    con: duckdb.DuckDBPyConnection,
    verdict: QualityVerdict,
    extract_id: str | None,
    received_at: dt.datetime,
    waited: float | None = None,
) -> None:
    at = received_at.replace(tzinfo=None)
    c = verdict.contract
    con.execute(
        "INSERT INTO hub.quality_deliveries (file_name, received_at, extract_id, contract_id, "
        "contract_version, dataset, row_count, previous_row_count, outcome, rules, failed_errors, "
        "failed_warnings, seconds, waited_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            verdict.file_name,
            at,
            extract_id,
            c.id,
            c.version,
            verdict.dataset,
            verdict.rows,
            verdict.previous_rows,
            verdict.outcome,
            len(verdict.results),
            len(verdict.failed_errors),
            len(verdict.failed_warnings),
            round(verdict.seconds, 3),
            None if waited is None else round(waited, 3),
        ],
    )
    rows = [
        [
            verdict.file_name,
            at,
            extract_id,
            c.id,
            verdict.dataset,
            r.rule.name,
            r.rule.column,
            r.rule.severity,
            r.rule.source,
            r.rule.expectation,
            r.rule.description,
            r.passed,
            r.unexpected_count,
            r.checked_rows,
            json.dumps(list(r.sample_rows)),
            r.observed,
            r.summary(),
        ]
        for r in verdict.results
    ]
    if rows:
        # One statement for every rule: executemany runs one statement per row (~1 ms each).
        row = "(" + ", ".join("?" * len(rows[0])) + ")"
        con.execute(
            f"INSERT INTO hub.quality_results VALUES {', '.join([row] * len(rows))}",
            [value for r in rows for value in r],
        )


@stage("quality checks")
def start_quality_check(
    con: duckdb.DuckDBPyConnection,
    table: pa.Table | None,
    header: dict,
    contract: Contract,
    file_name: str,
    now: dt.datetime,
    parquet: bytes | None = None,
) -> worker.PendingVerdict:
    """Hand one delivery to the quality worker (its decrypted ``parquet`` when given, else its
    ``table``: see :func:`worker.submit`); ingest goes on with the next file meanwhile."""
    dataset = header["dataset"]
    previous = previous_row_count(con, contract.id, dataset, header.get("delivery_kind", "full"))
    return worker.submit(
        validate_delivery, table, contract, dataset, file_name, now.date(), previous, parquet
    )


@stage("quality checks")
def finish_quality_check(
    con: duckdb.DuckDBPyConnection,
    pending: worker.PendingVerdict,
    header: dict,
    contract: Contract,
    now: dt.datetime,
) -> QualityVerdict:
    """Wait for one delivery's verdict and record it; raise :class:`ExtractRejected` (check
    ``quality``) if an ``error`` rule failed, so ingest holds it and lands the others."""
    verdict = pending.result()
    record_verdict(con, verdict, header.get("extract_id"), now, pending.waited)
    if verdict.failed_errors:
        raise ExtractRejected(
            Rejection(
                "quality",
                f"every ERROR quality rule of dataset {verdict.dataset} to pass",
                "; ".join(r.summary() for r in verdict.failed_errors),
                "rows are named by their position in the extract the partner sent (1 = first data row); the "
                "partner corrects the source and re-sends. If the rule is wrong (for example a real change in "
                "size), ask the IG officer to change the contract's quality entry, then move the file from "
                "quarantine back to the inbox",
                contract.label,
            )
        )
    return verdict
