"""Receive extracts from the inbox: check each against its contract, land it or hold it.

Every file is handled on its own: a bad file from one partner is quarantined with its
reason and never stops the others. Checks run in a fixed order and stop at the first
failure. Accepted rows replace earlier rows with the same ``record_token`` (a partner
re-sending a corrected record), so a dataset's landing table is its latest state.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.audit import AuditLog
from pipelines.contracts import Contract, ContractError
from pipelines.extract_file import EXTRACT_FORMAT, read_extract_header
from pipelines.hub.quarantine import ExtractRejected, Rejection, free_name, hold
from pipelines.quality.validate import check_quality
from pipelines.settings import Settings

DELIVERIES_DDL = """
CREATE TABLE IF NOT EXISTS hub.deliveries (
    file_name VARCHAR NOT NULL,
    received_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,            -- accepted | quarantined
    extract_id VARCHAR,
    contract_id VARCHAR,
    contract_version VARCHAR,
    partner_id VARCHAR,
    dataset VARCHAR,
    reporting_period VARCHAR,
    row_count BIGINT,
    invalid_counts JSON,
    opted_out_rows BIGINT,
    failed_check VARCHAR,
    reason VARCHAR,
    stored_as VARCHAR
)
"""


@dataclass
class Receipt:
    """What happened to one inbox file."""

    file_name: str
    status: str
    contract_id: str | None = None
    dataset: str | None = None
    row_count: int | None = None
    reason: str | None = None
    header: dict = field(default_factory=dict)


def _reject(check: str, expected: str, found: str, action: str, contract: str | None = None):
    raise ExtractRejected(Rejection(check, expected, found, action, contract))


def check_extract(path: Path, contracts: dict[str, Contract],
                  contract_problems: dict[str, ContractError], seen_extract_ids: set[str],
                  today: dt.date) -> tuple[dict, Contract]:
    """Run the arrival checks in order; return (header, contract) or raise ExtractRejected."""
    if path.stat().st_size == 0:
        _reject("format", f"a {EXTRACT_FORMAT} file", "an empty (0-byte) file",
                "ask the partner to re-send the extract; the transfer probably failed")
    try:
        header = read_extract_header(path)
    except Exception as exc:  # any unreadable file is a format failure, never a crash
        _reject("format", f"a {EXTRACT_FORMAT} file (Parquet with a 'placelink' header)",
                f"a file that cannot be read as one ({type(exc).__name__})",
                "prepare the extract with `placelink partner prepare` and re-send it")
    if header.get("format") != EXTRACT_FORMAT:
        _reject("format", f"format '{EXTRACT_FORMAT}'", f"format '{header.get('format')}'",
                "prepare the extract with a matching version of the partner kit")

    contract_id = header.get("contract_id")
    if contract_id in contract_problems:
        _reject("contract", f"a valid contract '{contract_id}'",
                f"the contract file is invalid: {contract_problems[contract_id]}",
                "fix the contract (see `placelink contracts check`), then release the extract")
    contract = contracts.get(contract_id)
    if contract is None:
        _reject("contract", "a contract id known to the hub", f"'{contract_id}'",
                f"check the --contract used by the partner; known: {', '.join(sorted(contracts))}")
    label = contract.label
    if header.get("partner_id") != contract.partner_id:
        _reject("contract", f"partner '{contract.partner_id}'", f"partner '{header.get('partner_id')}'",
                "only the partner named in the contract may send under it", label)
    in_force, why = contract.in_force(today)
    if not in_force:
        _reject("contract in force", "an approved contract within its validity window", why,
                "the IG officer must approve or renew the agreement; then release the extract", label)
    dataset_name = header.get("dataset")
    if dataset_name not in contract.datasets:
        _reject("dataset", f"one of {', '.join(contract.datasets)}", f"'{dataset_name}'",
                "send only datasets the agreement lists", label)

    schema = pq.read_schema(path)
    allowed = list(contract.datasets[dataset_name].columns)
    extra = [c for c in schema.names if c not in allowed]
    missing = [c for c in allowed if c not in schema.names]
    if extra:
        _reject("columns", f"only the contract's columns ({', '.join(allowed)})",
                f"column(s) not in the contract: {', '.join(extra)}",
                "remove them at the partner, or ask the IG officer to add them to the contract "
                "(a governance-significant change)", label)
    if missing:
        _reject("columns", "every column of the contract",
                f"missing column(s): {', '.join(missing)}",
                "re-prepare the extract with the current contract", label)

    wrong_types = [f"{c} ({schema.field(c).type}, contract says {contract.datasets[dataset_name].item(c).logical_type})"
                   for c in allowed if not _type_fits(schema.field(c).type, contract.datasets[dataset_name].item(c).logical_type)]
    if wrong_types:
        _reject("types", "column types as the contract declares them",
                "; ".join(wrong_types), "fix the column types at the partner and re-send", label)

    rows = pq.ParquetFile(path).metadata.num_rows
    if rows != header.get("row_count"):
        _reject("row count", f"{header.get('row_count')} rows (header)", f"{rows} rows",
                "the file was altered or truncated; ask the partner to re-send", label)
    if header.get("extract_id") in seen_extract_ids:
        _reject("replay", "an extract id not received before",
                f"extract id {header.get('extract_id')} was already accepted",
                "nothing: the earlier delivery is in use. Re-prepare to send new data", label)
    return header, contract


def _type_fits(arrow_type: pa.DataType, logical_type: str) -> bool:
    if pa.types.is_null(arrow_type):
        return True  # an all-empty column carries no type; quality checks judge emptiness
    if logical_type == "date":
        return pa.types.is_date(arrow_type)
    if logical_type == "integer":
        return pa.types.is_integer(arrow_type)
    if logical_type == "number":
        return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    if logical_type == "boolean":
        return pa.types.is_boolean(arrow_type)
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_binary(arrow_type)


def _land(con: duckdb.DuckDBPyConnection, path: Path, header: dict, contract: Contract,
          received_at: dt.datetime) -> None:
    dataset = contract.datasets[header["dataset"]]
    schema = pq.read_schema(path)
    selects = []
    for column in dataset.columns:
        # Bloom encodings arrive as raw bytes; BIT makes Dice a bit_count in linkage.
        kind = str(schema.field(column).type)
        selects.append(f'CAST("{column}" AS BIT) AS "{column}"' if kind in ("binary", "large_binary")
                       else f'"{column}"')
    select = ", ".join(selects)
    table = f"landing.{dataset.name}"
    con.execute(f"CREATE TEMP TABLE incoming AS SELECT {select}, ? AS _extract_id, "
                f"CAST(? AS TIMESTAMP) AS _received_at FROM read_parquet(?)",
                [header["extract_id"], received_at.replace(tzinfo=None), str(path)])
    try:
        con.execute(f"DELETE FROM {table} WHERE record_token IN (SELECT record_token FROM incoming)")
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
    finally:
        con.execute("DROP TABLE incoming")


def _record(con, receipt_row: dict) -> None:
    columns = ", ".join(receipt_row)
    marks = ", ".join("?" for _ in receipt_row)
    con.execute(f"INSERT INTO hub.deliveries ({columns}) VALUES ({marks})", list(receipt_row.values()))


def receive_inbox(settings: Settings, con: duckdb.DuckDBPyConnection,
                  contracts: dict[str, Contract], contract_problems: dict[str, ContractError],
                  audit: AuditLog, now: dt.datetime | None = None) -> list[Receipt]:
    """Check, land or hold every file in the inbox; returns one receipt per file."""
    now = now or dt.datetime.now(dt.UTC)
    con.execute(DELIVERIES_DDL)
    ensure_landing_tables(con, contracts)
    seen = {row[0] for row in con.execute(
        "SELECT extract_id FROM hub.deliveries WHERE status = 'accepted' AND extract_id IS NOT NULL"
    ).fetchall()}
    receipts: list[Receipt] = []
    for path in sorted(p for p in settings.inbox.iterdir() if p.is_file() and not p.name.startswith(".")):
        audit.append("extract_received", file=path.name, bytes=path.stat().st_size)
        try:
            header, contract = check_extract(path, contracts, contract_problems, seen, now.date())
            check_quality(con, pq.read_table(path), header, contract, path.name, now)  # holds on ERROR rules
        except ExtractRejected as rejected:
            r = rejected.rejection
            held = hold(path, settings.quarantine, r, now)
            _record(con, {"file_name": path.name, "received_at": now.replace(tzinfo=None),
                          "status": "quarantined", "failed_check": r.check,
                          "reason": r.message(path.name), "stored_as": str(held)})
            audit.append("extract_quarantined", file=path.name, check=r.check,
                         contract=r.contract, reason=r.message(path.name))
            receipts.append(Receipt(path.name, "quarantined", reason=r.message(path.name)))
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            try:
                _land(con, path, header, contract, now)
            except duckdb.Error as exc:
                # The database's message can quote values; keep only the kind of failure.
                con.execute("ROLLBACK")
                r = Rejection("load", "rows that load into the dataset's landing table",
                              f"a {type(exc).__name__} while loading",
                              "check the extract's column types against earlier deliveries", contract.label)
                held = hold(path, settings.quarantine, r, now)
                _record(con, {"file_name": path.name, "received_at": now.replace(tzinfo=None),
                              "status": "quarantined", "failed_check": r.check,
                              "reason": r.message(path.name), "stored_as": str(held)})
                audit.append("extract_quarantined", file=path.name, check=r.check,
                             contract=contract.id, reason=r.message(path.name))
                receipts.append(Receipt(path.name, "quarantined", reason=r.message(path.name)))
                continue
            vault = settings.vault / contract.id
            vault.mkdir(parents=True, exist_ok=True)
            stored = free_name(vault, path.name)
            _record(con, {
                "file_name": path.name, "received_at": now.replace(tzinfo=None), "status": "accepted",
                "extract_id": header["extract_id"], "contract_id": contract.id,
                "contract_version": contract.version, "partner_id": contract.partner_id,
                "dataset": header["dataset"], "reporting_period": header.get("reporting_period"),
                "row_count": header["row_count"],
                "invalid_counts": json.dumps(header.get("invalid_counts", {})),
                "opted_out_rows": header.get("opted_out_rows"), "stored_as": str(stored)})
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        shutil.move(str(path), stored)
        seen.add(header["extract_id"])
        audit.append("extract_accepted", file=path.name, extract_id=header["extract_id"],
                     contract=contract.id, contract_version=contract.version,
                     dataset=header["dataset"], rows=header["row_count"])
        receipts.append(Receipt(path.name, "accepted", contract.id, header["dataset"],
                                header["row_count"], header=header))
    return receipts


_DUCKDB_TYPES = {"date": "DATE", "integer": "INTEGER", "number": "DOUBLE", "boolean": "BOOLEAN",
                 "timestamp": "TIMESTAMP"}


def _landing_type(item) -> str:
    if item.name.endswith("_bloom"):
        return "BIT"
    if item.name == "year_of_birth":
        return "SMALLINT"
    return _DUCKDB_TYPES.get(item.logical_type, "VARCHAR")


def ensure_landing_tables(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> None:
    """Create each contract dataset's landing table (empty until a delivery arrives), so
    models run even before every partner has sent data."""
    for contract in contracts.values():
        for dataset in contract.datasets.values():
            columns = ", ".join(f'"{i.name}" {_landing_type(i)}' for i in dataset.items)
            con.execute(f"CREATE TABLE IF NOT EXISTS landing.{dataset.name} "
                        f"({columns}, _extract_id VARCHAR, _received_at TIMESTAMP)")
