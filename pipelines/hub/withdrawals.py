"""Withdrawals after delivery: delete the records a partner withdraws, and all that came from them.

A partner sends a withdrawal list (``placelink partner withdraw``: record tokens only, sealed
like an extract, envelope ``kind: withdrawal``) when a person opts out, or a record must be
erased, after it was delivered. Ingest verifies it like any envelope (format, contract and
partner, the contract's signing key, dataset, decryption, content hash, row count, replay, a
single ``record_token`` column, no clear identifiers) but not that the agreement is still in
force: a suspended or expired agreement's data is still held, and must still be withdrawable.

:func:`apply_withdrawal` then, in one transaction, deletes the records' rows from ``landing``
and the linkage rows derived from them (``hub.record_identity``, ``hub.record_person``); an
identity record left with no record leaves ``hub.person_records`` and the key history (linkage's
:func:`pipelines.linkage.person_keys.forget_identities`, which the caller passes in, since the hub
sits below linkage), so a person whose every record is
withdrawn loses their ``person_key`` for good. The tokens are remembered in
``hub.withdrawn_records``, so a later delivery that still carries one of those records does not
bring it back (ingest drops and counts it). The next run's linkage, models and publication are
built without them. The audit log gets one ``records_withdrawn`` event: counts, never tokens.

The vaulted envelopes the records arrived in stay encrypted as received (they are the partner's
signed deliveries) until retention deletes them; nothing is ever landed from them again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipelines.core.warehouse import table_exists
from pipelines.governance.contracts import Contract, DataItem, Dataset

# Tables holding one row per landed record, keyed by (dataset, record_token).
DERIVED_TABLES = ("hub.record_identity", "hub.record_person")


# Erases identity records from linkage's key history in the caller's transaction and returns how
# many person keys that retired: pipelines.linkage.person_keys.forget_identities.
IdentityEraser = Callable[[duckdb.DuckDBPyConnection, list[str], dt.datetime], int]


def withdrawal_list_spec(dataset: str) -> Dataset:
    """What a withdrawal list may hold: one column of record tokens (for the identifier scan)."""
    return Dataset(
        dataset,
        "withdrawal list",
        (DataItem("record_token", "string", "token", True, True, "the record to withdraw"),),
    )


@dataclass(frozen=True)
class Withdrawal:
    """What one withdrawal list removed (counts only)."""

    tokens: int
    landing_rows: int
    derived_rows: int
    identity_records: int
    person_keys_retired: int


def apply_withdrawal(
    con: duckdb.DuckDBPyConnection,
    contract: Contract,
    dataset: str,
    tokens: pa.Table,
    withdrawal_id: str,
    reason: str | None,
    now: dt.datetime,
    erase_identities: IdentityEraser,
    in_transaction: bool = False,
) -> Withdrawal:
    """Delete the listed records of ``dataset`` and what was derived from them; remember the tokens.

    In its own transaction, unless ``in_transaction`` (the caller's, which then commits it together
    with the delivery's record: pipelines.hub.delivery_states). ``erase_identities`` takes the
    identity records left with no record out of the person-key history."""

    def run(sql: str, params: list | None = None) -> list:
        # fetchall: DuckDB 2.0 refuses new work while a result is unfinished
        return con.execute(sql, params or []).fetchall()

    con.register("withdrawal_list", tokens.select(["record_token"]))
    if not in_transaction:
        run("BEGIN TRANSACTION")
    try:
        run(
            "CREATE OR REPLACE TEMP TABLE withdrawn AS "
            "SELECT DISTINCT record_token FROM withdrawal_list WHERE record_token IS NOT NULL"
        )
        listed = "(SELECT record_token FROM withdrawn)"
        identities: list[str] = []
        if table_exists(con, "hub", "record_identity"):
            identities = [
                row[0]
                for row in run(
                    "SELECT DISTINCT identity_id FROM hub.record_identity "
                    f"WHERE dataset = ? AND record_token IN {listed}",
                    [dataset],
                )
            ]
        derived = sum(
            run(f"DELETE FROM {table} WHERE dataset = ? AND record_token IN {listed}", [dataset])[
                0
            ][0]
            for table in DERIVED_TABLES
            if table_exists(con, *table.split("."))
        )
        landing = (
            run(f"DELETE FROM landing.{dataset} WHERE record_token IN {listed}")[0][0]
            if table_exists(con, "landing", dataset)
            else 0
        )
        # Identity records with no record left are gone from the hub, and from the key history.
        erased: list[str] = []
        if identities:
            con.register("touched_identities", pa.table({"identity_id": identities}))
            try:
                erased = [
                    row[0]
                    for row in run(
                        "SELECT identity_id FROM touched_identities WHERE identity_id "
                        "NOT IN (SELECT identity_id FROM hub.record_identity)"
                    )
                ]
            finally:
                con.unregister("touched_identities")
        if erased and table_exists(con, "hub", "person_records"):
            con.register("erased_identities", pa.table({"identity_id": erased}))
            try:
                run(
                    "DELETE FROM hub.person_records WHERE unique_id IN (SELECT identity_id FROM erased_identities)"
                )
            finally:
                con.unregister("erased_identities")
        keys_retired = erase_identities(con, erased, now)
        run(
            "INSERT INTO hub.withdrawn_records SELECT ?, ?, record_token, ?, ?, ?::TIMESTAMP FROM withdrawn "
            "ON CONFLICT DO NOTHING",
            [contract.id, dataset, withdrawal_id, reason, now.replace(tzinfo=None)],
        )
        count = run("SELECT count(*) FROM withdrawn")[0][0]
        run("DROP TABLE withdrawn")
        if not in_transaction:
            run("COMMIT")
    except Exception:
        if not in_transaction:
            run("ROLLBACK")
        raise
    finally:
        con.unregister("withdrawal_list")
    return Withdrawal(count, landing, derived, len(erased), keys_retired)
