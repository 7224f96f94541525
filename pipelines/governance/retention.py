"""Retention: delete extracts, and the rows derived from them, at the end of their agreement's retention.

An accepted extract is kept for its contract's ``retention.period_months`` counted from
the day the hub received it. After that, :func:`apply_retention` deletes the vaulted file,
the extract's rows in ``landing`` and the linkage rows derived from them, records the
deletion in ``hub.retention_deletions`` and writes one ``retention_deleted`` audit event
per extract (counts and ids, never values). It deletes nothing else: a file outside the
vault is never touched, and an extract whose contract is unknown or invalid is kept
(its retention period cannot be read) and reported.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.core.settings import Settings
from pipelines.core.stages import stage
from pipelines.core.stored_paths import migrate_stored_paths, resolve_stored
from pipelines.core.warehouse import table_exists
from pipelines.governance.audit import AuditLog
from pipelines.governance.contracts import Contract
from pipelines.governance.linkage_changes import record_acceptance

# Tables holding one row per landed record, keyed by (dataset, record_token).
DERIVED_TABLES = ("hub.record_identity", "hub.record_person")


@dataclass(frozen=True)
class Deletion:
    extract_id: str
    contract_id: str
    dataset: str
    retain_until: dt.date
    landing_rows: int
    derived_rows: int
    file_deleted: bool


@dataclass(frozen=True)
class RetentionResult:
    deleted: list[Deletion]
    kept_unknown_contract: list[str]  # extract ids whose contract cannot be read


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus whole calendar months (31 Jan + 1 month = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for last_day in (31, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, last_day))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def retain_until(received_at: dt.datetime | dt.date, contract: Contract) -> dt.date:
    """The last day an extract received at ``received_at`` may be kept."""
    received = received_at.date() if isinstance(received_at, dt.datetime) else received_at
    return add_months(received, contract.terms.retention.period_months)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


@stage("governance: contract status and retention")
def apply_retention(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    audit: AuditLog,
    now: dt.datetime | None = None,
) -> RetentionResult:
    """Delete every accepted extract past its contract's retention (``now``: default, the hub's clock)."""
    now = now or settings.now()
    if not table_exists(con, "hub", "deliveries"):
        return RetentionResult([], [])
    migrate_stored_paths(con, settings.home, audit, now)
    # Extracts only: a withdrawal list (tokens of records already deleted) is kept as the evidence.
    candidates = con.execute("""
        SELECT d.extract_id, d.contract_id, d.contract_version, d.dataset, d.received_at, d.stored_as
        FROM hub.deliveries d
        WHERE d.status = 'accepted' AND d.extract_id IS NOT NULL AND d.kind IS DISTINCT FROM 'withdrawal'
          AND d.extract_id NOT IN (SELECT extract_id FROM hub.retention_deletions)
        ORDER BY d.received_at, d.extract_id
    """).fetchall()
    deleted: list[Deletion] = []
    unknown: list[str] = []
    for extract_id, contract_id, version, dataset, received_at, stored_as in candidates:
        contract = contracts.get(contract_id)
        if contract is None:
            unknown.append(extract_id)
            continue
        until = retain_until(received_at, contract)
        if now.date() <= until:
            continue
        deletion = _delete_extract(settings, con, extract_id, dataset, stored_as)
        deletion = Deletion(extract_id, contract_id, dataset, until, *deletion)
        con.execute(
            "INSERT INTO hub.retention_deletions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                extract_id,
                contract_id,
                version,
                dataset,
                received_at,
                until,
                now.replace(tzinfo=None),
                deletion.landing_rows,
                deletion.derived_rows,
                deletion.file_deleted,
            ],
        )
        audit.append(
            "retention_deleted",
            at=now,
            contract=contract_id,
            contract_version=version,
            dataset=dataset,
            extract_id=extract_id,
            received_at=received_at.isoformat(timespec="seconds"),
            retention_months=contract.terms.retention.period_months,
            retain_until=until.isoformat(),
            landing_rows_deleted=deletion.landing_rows,
            derived_rows_deleted=deletion.derived_rows,
            file_deleted=deletion.file_deleted,
            deletion_method=contract.terms.retention.deletion_method,
        )
        deleted.append(deletion)
    emptied = whole_datasets_deleted(con, deleted)
    if emptied:
        # Linkage will see these datasets' records gone, and its link rate may move sharply: a known
        # change, accepted here for the next linkage run (pipelines.linkage.accepted_changes).
        record_acceptance(
            audit,
            "retention deleted every extract of "
            + ", ".join(f"{dataset} ({contract})" for contract, dataset in emptied),
            datasets=[d for _, d in emptied],
        )
    if unknown:
        audit.append(
            "retention_skipped",
            at=now,
            extracts=len(unknown),
            reason="their contract is unknown or invalid, so the retention period cannot be "
            "read; fix the contract (see `placelink contracts check`)",
        )
    return RetentionResult(deleted, unknown)


def whole_datasets_deleted(
    con: duckdb.DuckDBPyConnection, deleted: list[Deletion]
) -> list[tuple[str, str]]:
    """(contract, dataset) of the datasets whose last accepted extract ``deleted`` holds."""
    gone = sorted({(d.contract_id, d.dataset) for d in deleted})
    emptied = []
    for contract_id, dataset in gone:
        left = con.execute(
            """
            SELECT count(*) FROM hub.deliveries
            WHERE status = 'accepted' AND dataset = ? AND kind IS DISTINCT FROM 'withdrawal'
              AND extract_id NOT IN (SELECT extract_id FROM hub.retention_deletions)""",
            [dataset],
        ).fetchall()[0][0]
        if not left:
            emptied.append((contract_id, dataset))
    return emptied


def _delete_extract(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    extract_id: str,
    dataset: str,
    stored_as: str | None,
) -> tuple[int, int, bool]:
    landing_rows = derived_rows = 0
    con.execute("BEGIN TRANSACTION")
    try:
        if table_exists(con, "landing", dataset):
            tokens = f"SELECT record_token FROM landing.{dataset} WHERE _extract_id = ?"
            for table in DERIVED_TABLES:
                schema, name = table.split(".")
                if table_exists(con, schema, name):
                    derived_rows += con.execute(
                        f"DELETE FROM {table} WHERE dataset = ? AND record_token IN ({tokens})",
                        [dataset, extract_id],
                    ).fetchone()[0]
            landing_rows = con.execute(
                f"DELETE FROM landing.{dataset} WHERE _extract_id = ?", [extract_id]
            ).fetchone()[0]
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    file_deleted = False
    if stored_as:
        stored = resolve_stored(stored_as, settings.home)
        # Only ever a file inside the vault: retention never deletes anything else.
        if _inside(stored, settings.vault) and stored.is_file():
            stored.unlink()
            file_deleted = True
    return landing_rows, derived_rows, file_deleted
