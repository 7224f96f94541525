"""``hub.record_person``: the person key of every landed record, kept up to date by what moved.

It is ``hub.record_identity`` joined to ``hub.person_keys`` on the identity id, and it changes
with the keys, in their transaction (:func:`pipelines.linkage.person_keys.promote_person_keys`).
Rewriting all of it every run cost what all history holds (3.77M rows at 1M people, most of the
time the write: docs/benchmarks.md), so only the records whose row can have moved since the last
promote are deleted and joined again:

- records of an identity record whose cluster is not exactly a previous person (the
  carry-forward's own tables say which: :data:`MOVED_IDENTITIES`; every other identity record
  kept its key);
- records of a landing partition (dataset, extract) that is new since the table was last brought
  up to date, made differently, or not only smaller (the person-records build's manifest,
  ``hub.person_record_partitions``, is saved with the table as :data:`BUILT_FOR`): each delivery
  lands under its own extract id, so a new or re-sent record, or one whose identity id moved, is
  in a new partition, and a partition that only lost rows (withdrawn, past retention, or re-sent:
  then in a new one) holds the rest as they were;
- every record of a dataset that has left linkage (its agreement no longer in force).

A record deleted from the landing tables by a withdrawal or by retention is deleted from this
table by that step itself, in its transaction (pipelines/hub/withdrawals.py,
pipelines/governance/retention.py). The table is rebuilt whole on a first run, when the manifest
of the last update or the person-records manifest is missing, and, as a guard, when the table no
longer has one row per record of ``hub.record_identity``. tests/linkage/test_record_person.py
compares it with the full join after new months, re-sent records, withdrawals, retention,
merges, splits and a dataset leaving linkage.
"""

from __future__ import annotations

import logging

import duckdb

from pipelines.core.warehouse import qualified_table_exists
from pipelines.linkage.person_records import BUILT_PARTITIONS

log = logging.getLogger(__name__)

RECORD_PERSON = "hub.record_person"
# The person-records partitions hub.record_person was last brought up to date with (a copy of
# BUILT_PARTITIONS: dataset, extract id, row count and fingerprint; no record or identifier).
BUILT_FOR = "hub.record_person_partitions"
# Temp table of the run's connection, left by stage_person_keys: the identity ids whose key may
# differ from the saved one (absent: every key may have moved, e.g. a first run).
MOVED_IDENTITIES = "temp.main.person_keys_moved"
_STALE = "record_person_stale"  # temp: (dataset, record_token) of the rows to join again

_JOINED = """
    SELECT r.dataset, r.partner_id, r.record_token, k.person_key
    FROM hub.record_identity r JOIN hub.person_keys k USING (identity_id)"""


def update_record_person(con: duckdb.DuckDBPyConnection) -> int | None:
    """Bring ``hub.record_person`` up to date with ``hub.record_identity`` and the saved keys,
    in the caller's transaction (after ``hub.person_keys`` was written). Returns how many records'
    rows were joined again, or None when the table was rebuilt whole."""

    def run(sql: str) -> list:
        # fetchall: DuckDB 2.0 refuses new work while a result is unfinished
        return con.execute(sql).fetchall()

    rewritten = None
    if all(
        qualified_table_exists(con, t)
        for t in (RECORD_PERSON, BUILT_FOR, BUILT_PARTITIONS, MOVED_IDENTITIES)
    ):
        rewritten = _update_moved(con)
    if rewritten is None:
        run(f"CREATE OR REPLACE TABLE {RECORD_PERSON} AS {_JOINED}")
    if qualified_table_exists(con, BUILT_PARTITIONS):
        run(f"CREATE OR REPLACE TABLE {BUILT_FOR} AS SELECT * FROM {BUILT_PARTITIONS}")
    else:
        run(f"DROP TABLE IF EXISTS {BUILT_FOR}")
    return rewritten


def _update_moved(con: duckdb.DuckDBPyConnection) -> int | None:
    """Delete and join again the rows that can have moved (the module docstring); None when the
    table must be rebuilt whole instead."""

    def run(sql: str) -> list:
        return con.execute(sql).fetchall()

    columns = [
        run(f"SELECT column_name, column_type FROM (DESCRIBE {table})")
        for table in (BUILT_PARTITIONS, BUILT_FOR)
    ]
    if columns[0] != columns[1]:  # the manifest changed shape (a newer build): compare nothing
        return None
    same_partition = "f.dataset = r.dataset AND f.extract_id IS NOT DISTINCT FROM r.extract_id"
    # A partition is fresh unless it was there, made the same way, with the same rows or fewer:
    # a landed row is never changed in place and only a new delivery (a new extract id) adds rows,
    # so a partition that only shrank (withdrawn, retained, or re-sent under a new extract id:
    # in that new, fresh partition) holds rows whose identity id has not changed.
    run(f"""CREATE OR REPLACE TEMP TABLE record_person_fresh AS
            SELECT * FROM {BUILT_PARTITIONS} p WHERE NOT EXISTS (
                SELECT 1 FROM {BUILT_FOR} b
                WHERE b.dataset = p.dataset AND b.extract_id IS NOT DISTINCT FROM p.extract_id
                  AND b.definition = p.definition AND b.features_version = p.features_version
                  AND (b.records > p.records
                       OR (b.records = p.records AND b.fingerprint = p.fingerprint)))""")
    fresh, moved, left = run(f"""
        SELECT (SELECT count(*) FROM record_person_fresh), (SELECT count(*) FROM {MOVED_IDENTITIES}),
               (SELECT count(*) FROM (SELECT dataset FROM {BUILT_FOR}
                                      EXCEPT SELECT dataset FROM {BUILT_PARTITIONS}))""")[0]
    try:
        if left:
            run(f"""DELETE FROM {RECORD_PERSON} WHERE dataset NOT IN
                    (SELECT dataset FROM {BUILT_PARTITIONS})""")
        if fresh or moved:
            parts = []
            if fresh:
                parts.append(f"""SELECT r.dataset, r.record_token FROM hub.record_identity r
                    WHERE EXISTS (SELECT 1 FROM record_person_fresh f WHERE {same_partition})""")
            if moved:
                parts.append(f"""SELECT r.dataset, r.record_token FROM hub.record_identity r
                    SEMI JOIN {MOVED_IDENTITIES} m USING (identity_id)""")
            run(f"CREATE OR REPLACE TEMP TABLE {_STALE} AS " + " UNION ".join(parts))
            same_record = (
                "s.dataset = {t}.dataset AND s.record_token IS NOT DISTINCT FROM {t}.record_token"
            )
            run(f"""DELETE FROM {RECORD_PERSON} p USING {_STALE} s
                    WHERE {same_record.format(t="p")}""")
            run(f"""INSERT INTO {RECORD_PERSON}
                    SELECT r.dataset, r.partner_id, r.record_token, k.person_key
                    FROM hub.record_identity r JOIN hub.person_keys k USING (identity_id)
                    WHERE EXISTS (SELECT 1 FROM {_STALE} s WHERE {same_record.format(t="r")})""")
            rewritten = run(f"SELECT count(*) FROM {_STALE}")[0][0]
            run(f"DROP TABLE {_STALE}")
        else:
            rewritten = 0
    finally:
        run("DROP TABLE IF EXISTS record_person_fresh")
    # Guard: one row per record (every identity record has a key). A step that deleted landed
    # records without deleting their rows here would leave rows behind; rebuilt whole, and said.
    held, records = run(
        f"SELECT (SELECT count(*) FROM {RECORD_PERSON}), (SELECT count(*) FROM hub.record_identity)"
    )[0]
    if held != records:
        log.warning(
            "hub.record_person held %d rows for %d landed records: rebuilt whole", held, records
        )
        return None
    return rewritten
