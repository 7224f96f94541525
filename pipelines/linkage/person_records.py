"""Person records: the identity part of every landed record, grouped for linkage.

Rows of one partner that carry exactly the same identity tokens (the same patient
registration seen in many A&E attendances, say) are one *identity record*; linkage
then works on identity records, not on every event. Rows with too little identity to
be sure (no NHS-number token and not all of names and date of birth) stay on their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import duckdb

from pipelines.core.column_types import duckdb_type
from pipelines.core.stages import stage
from pipelines.core.warehouse import qualified_table_exists, table_exists
from pipelines.governance.contracts import Contract
from pipelines.governance.flows import flows_in_use
from pipelines.linkage.comparisons import COLUMNS_BY_FIELD

# Columns Splink compares (the one list: comparisons.COLUMNS_BY_FIELD); a dataset whose
# contract omits one gets NULL for it.
LINKAGE_FEATURES: dict[str, str] = {
    name: duckdb_type(name) for columns in COLUMNS_BY_FIELD.values() for name in columns
}
# The features that define an identity; the rest are derived from these by the partner kit.
IDENTITY_KEY = (
    "nhs_number_token",
    "given_name_token",
    "family_name_token",
    "date_of_birth_token",
    "postcode_token",
    "sex",
)


class NothingToLink(ValueError):
    """No accepted records to link; the message says where to look."""


def landed_datasets(
    con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract], on: dt.date
) -> list[tuple[Contract, str]]:
    # Only flows whose agreement is in force on the hub's today: a suspended, terminated or
    # expired contract's rows stay landed but are left out of linkage and so of every model.
    return [
        (c, name)
        for c in flows_in_use(contracts, on).values()
        for name in c.datasets
        if table_exists(con, "landing", name)
    ]


# Bump when what an identity record is, or how its features are chosen, changes: the next build
# is then a full one (a contract's columns or partner are stamped per dataset, below).
FEATURES_VERSION = "4"
# The partitions (dataset, extract) the two tables were last built from, with a fingerprint of
# their rows, and the identity records each partition's records belonged to (a 64-bit hash of the
# identity id: a collision only regroups one identity record more than needed).
BUILT_PARTITIONS = "hub.person_record_partitions"
BUILT_IDENTITIES = "hub.person_record_partition_identities"
# What a full build writes beside the tables in use, under this suffix, before swapping them in.
FULL_BUILD = ("hub.record_identity", "hub.person_records", BUILT_IDENTITIES)
NEXT = "__next"


def _identity_id(partner_id: str = "partner_id", dataset: str = "dataset") -> str:
    key_parts = ", ".join(f"coalesce({c}, '')" for c in IDENTITY_KEY)
    return f"""CASE WHEN nhs_number_token IS NOT NULL
                     OR (given_name_token IS NOT NULL AND family_name_token IS NOT NULL
                         AND date_of_birth_token IS NOT NULL)
                THEN md5(concat_ws('|', {partner_id}, {key_parts}))
                ELSE md5(concat_ws('|', 'record', {dataset}, record_token))
           END"""


def _dataset_records(contract: Contract, name: str) -> str:
    """Every landed record of ``name`` with its extract, received time, row number in its landing
    table (``landed_row``: valid within one statement) and linkage features."""
    have = set(contract.datasets[name].columns)
    columns = ", ".join(
        f'"{f}"' if f in have else f"CAST(NULL AS {t}) AS {f}" for f, t in LINKAGE_FEATURES.items()
    )
    return (
        f"SELECT '{name}' AS dataset, '{contract.partner_id}' AS partner_id, record_token, "
        f"_extract_id AS extract_id, _received_at, rowid AS landed_row, {columns} "
        f"FROM landing.{name}"
    )


def _definition(contract: Contract, name: str) -> str:
    # What a dataset's rows become here: its contract's columns, its partner, and the identity rule.
    return hashlib.sha256(
        "\n".join([FEATURES_VERSION, _dataset_records(contract, name), _identity_id()]).encode()
    ).hexdigest()[:16]


def _same_partition(a: str, b: str) -> str:
    # A landed row may lack an extract id; a NULL one is still one partition.
    return f"{a}.dataset = {b}.dataset AND {a}.extract_id IS NOT DISTINCT FROM {b}.extract_id"


@stage("linkage: person records")
def build_person_records(
    con: duckdb.DuckDBPyConnection, sources: list[tuple[Contract, str]], full: bool = False
) -> dict[str, int]:
    """Bring ``hub.record_identity`` (one row per landed record: its dataset, partner, record token,
    postcode token, identity id and extract) and ``hub.person_records`` (one row per identity
    record, Splink's input) up to date with the landing tables of ``sources``.

    An identity record's features are those of its latest record (received last; then the larger
    dataset name and record token), so a build gives the same features whatever order DuckDB
    reads the rows in. Records of one identity record agree on every identity token but can differ
    in what is derived from the clear values (a Bloom filter, a name part).

    Only what changed is rebuilt (issue 24): a landed row is never changed in place, only deleted
    (a re-sent record token, a withdrawal, retention) or inserted under a new extract id, so a
    partition (dataset, extract) whose row count and fingerprint (a sum of hashes of its record
    tokens and received times) equal those of the last build holds the same rows. The rows of changed,
    new and vanished partitions are replaced, and every identity record they held before or hold
    now is regrouped from all its records. The result equals a full build (tests/linkage/
    test_person_records.py). A full build is made when ``full`` is set, when there is no record
    of the last build, or when :data:`FEATURES_VERSION` changed. The tables change in one
    transaction (a full build's are written beside them first and swapped in): a build stopped at
    any point leaves the previous tables, and the next build starts from them."""
    if not sources:
        raise NothingToLink("no extracts have been accepted yet: nothing to link")

    def run(sql: str, params: list | None = None) -> list:
        # fetchall: DuckDB 2.0 refuses new work while a result is unfinished
        return con.execute(sql, params or []).fetchall()

    # Neither table has an order (Splink's input is read ORDER BY unique_id); without one DuckDB
    # writes in parallel: faster, and it did not change the memory the grouping needs (measured,
    # docs/benchmarks.md, sixth round).
    order_kept = run("SELECT current_setting('preserve_insertion_order')")[0][0]
    run("SET preserve_insertion_order = false")
    try:
        run(
            "CREATE OR REPLACE TEMP TABLE landed_partitions AS "
            + " UNION ALL ".join(
                f"SELECT '{name}' AS dataset, _extract_id AS extract_id, count(*) AS records, "
                "sum(hash(record_token, _received_at))::HUGEINT AS fingerprint, "
                f"'{_definition(contract, name)}' AS definition FROM landing.{name} "
                "GROUP BY _extract_id"
                for contract, name in sources
            )
        )
        full = full or not _built_before(con)
        if full:
            # Built beside the tables in use, each committed as it is written, then swapped in
            # below: a whole build held in one transaction ran out of the 3GB memory limit at
            # 1M people (docs/benchmarks.md, fifth round). Stopped before the swap, these are
            # only leftovers that the next full build replaces.
            _build_all(con, sources, suffix=NEXT)
        run("BEGIN TRANSACTION")
        try:
            if full:
                for table in FULL_BUILD:
                    run(f"DROP TABLE IF EXISTS {table}")
                    run(f"ALTER TABLE {table}{NEXT} RENAME TO {table.split('.')[1]}")
            else:
                _build_changed(con, sources)
                for table in FULL_BUILD:  # a stopped full build's leftovers
                    run(f"DROP TABLE IF EXISTS {table}{NEXT}")
            run(f"""
                CREATE OR REPLACE TABLE {BUILT_PARTITIONS} AS
                SELECT *, '{FEATURES_VERSION}' AS features_version FROM landed_partitions""")
            records, identities = run(
                "SELECT (SELECT count(*) FROM hub.record_identity), "
                "(SELECT count(*) FROM hub.person_records)"
            )[0]
            run("COMMIT")
        except BaseException:
            run("ROLLBACK")
            raise
    finally:
        run("DROP TABLE IF EXISTS landed_partitions")
        run(f"SET preserve_insertion_order = {bool(order_kept)}")
    return {"records": records, "identity_records": identities}


def _built_before(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the tables hold a complete build by this code, to start from."""
    if not all(qualified_table_exists(con, t) for t in (*FULL_BUILD, BUILT_PARTITIONS)):
        return False
    versions = con.execute(f"SELECT DISTINCT features_version FROM {BUILT_PARTITIONS}").fetchall()
    if versions != [(FEATURES_VERSION,)]:
        return False
    # Rows removed from hub.person_records by anything but a build (a withdrawal's erased
    # identity records, a repair) are not in the manifest: rebuilt in full, as before.
    built, held = con.execute(
        f"SELECT (SELECT count(DISTINCT identity_hash) FROM {BUILT_IDENTITIES}), "
        "(SELECT count(*) FROM hub.person_records)"
    ).fetchall()[0]
    return built == held


def _build_all(
    con: duckdb.DuckDBPyConnection, sources: list[tuple[Contract, str]], suffix: str
) -> None:
    def run(sql: str) -> list:
        return con.execute(sql).fetchall()

    records = f"hub.record_identity{suffix}"
    # Each record's identity id is computed once, for hub.record_identity, and the grouping reads
    # it from there with the record's received time and landing position, which are then dropped
    # (a drop rewrites nothing). Computing it again for the grouping, or keeping the records in a
    # temp table to group from, each cost as much again as the md5 itself (docs/benchmarks.md,
    # "Person records: the identity id once"). One transaction: positions are valid only in the
    # transaction that read them.
    run("BEGIN TRANSACTION")
    try:
        run(f"CREATE OR REPLACE TABLE {records} AS {_identified(sources)}")
        run(f"CREATE OR REPLACE TABLE hub.person_records{suffix} AS {_grouped(sources, records)}")
        run(f"ALTER TABLE {records} DROP COLUMN position")
        run(f"ALTER TABLE {records} DROP COLUMN _received_at")
        run("COMMIT")
    except BaseException:
        run("ROLLBACK")
        raise
    run(f"""
        CREATE OR REPLACE TABLE {BUILT_IDENTITIES}{suffix} AS
        SELECT DISTINCT dataset, extract_id, hash(identity_id) AS identity_hash FROM {records}""")


def _numbered(sources: list[tuple[Contract, str]]) -> list[tuple[int, Contract, str]]:
    # Dataset numbers follow name order, as the tie-break on dataset does; a record's position is
    # its dataset's number and its landing table's rowid in one BIGINT.
    ordered = sorted(sources, key=lambda source: source[1])
    return [(number, contract, name) for number, (contract, name) in enumerate(ordered)]


def _identified(sources: list[tuple[Contract, str]], among: str = "") -> str:
    """Every landed record of ``sources`` (only those listed in the table ``among``, by dataset,
    extract id and record token, if given) with hub.record_identity's columns, its received time
    and its position (dataset number and ``rowid``), which is valid only in the transaction that
    read it (a checkpoint may compact a landing table and move its rows)."""

    def listed(name: str) -> str:
        # The dataset is a filter on ``among``, not a join key: as a join key, each dataset's
        # join built a hash table of every dataset's listed records (measured at 1M people).
        if not among:
            return ""
        return f"""WHERE EXISTS (SELECT 1 FROM {among} t WHERE t.dataset = '{name}'
                                 AND t.extract_id IS NOT DISTINCT FROM r.extract_id
                                 AND t.record_token IS NOT DISTINCT FROM r.record_token)"""

    return " UNION ALL ".join(
        f"SELECT dataset, partner_id, record_token, postcode_token, {_identity_id()} AS identity_id, "
        f"extract_id, _received_at, ({number}::BIGINT << 40) + landed_row AS position "
        f"FROM ({_dataset_records(contract, name)}) r {listed(name)}"
        for number, contract, name in _numbered(sources)
    )


def _grouped(sources: list[tuple[Contract, str]], identified: str) -> str:
    """One row per identity record in the table ``identified`` (records of ``sources`` as
    :func:`_identified` gives them, made in this transaction), with its latest record's features.

    The latest record is chosen narrow: per identity record, the position of its latest record,
    then its features are read from its landing table by ``rowid``, one dataset at a time (DuckDB
    then skips what the join does not need). An ``arg_max`` over a struct of the 24 features held
    a copy of the whole struct for each of 1.1M identity records, and a new one each time a later
    record replaced it, in memory that DuckDB cannot spill: the full build at 1M people ran out
    of the 3GB limit in most runs (docs/benchmarks.md, sixth round)."""
    features = ", ".join(f"f.{name}" for name in LINKAGE_FEATURES)
    by_dataset = " UNION ALL ".join(
        f"SELECT l.unique_id, f.partner_id, {features} "
        f"FROM latest l JOIN ({_dataset_records(contract, name)}) f "
        f"ON f.landed_row = l.position - ({number}::BIGINT << 40) "
        f"WHERE l.position >> 40 = {number}"
        for number, contract, name in _numbered(sources)
    )
    return f"""
        WITH latest AS MATERIALIZED (
            SELECT identity_id AS unique_id,
                   arg_max(position, (_received_at, dataset, record_token)) AS position
            FROM {identified} GROUP BY identity_id)
        {by_dataset}"""


def _build_changed(con: duckdb.DuckDBPyConnection, sources: list[tuple[Contract, str]]) -> None:
    def run(sql: str) -> list:
        return con.execute(sql).fetchall()

    # Partitions built last time that are gone or differ now, and those landed that were not built.
    run(f"""
        CREATE OR REPLACE TEMP TABLE stale_partitions AS
        SELECT dataset, extract_id FROM {BUILT_PARTITIONS} b
        WHERE NOT EXISTS (SELECT 1 FROM landed_partitions l WHERE {_same_partition("l", "b")}
                          AND l.records = b.records AND l.fingerprint = b.fingerprint
                          AND l.definition = b.definition)""")
    run(f"""
        CREATE OR REPLACE TEMP TABLE fresh_partitions AS
        SELECT dataset, extract_id FROM landed_partitions l
        WHERE NOT EXISTS (SELECT 1 FROM {BUILT_PARTITIONS} b WHERE {_same_partition("l", "b")}
                          AND l.records = b.records AND l.fingerprint = b.fingerprint
                          AND l.definition = b.definition)""")
    # Identity records whose records change: those the stale partitions held (remembered apart
    # from hub.record_identity, which withdrawals and retention delete from) and, below, those the
    # fresh partitions hold.
    run(f"""
        CREATE OR REPLACE TEMP TABLE touched_identities AS
        SELECT DISTINCT identity_hash FROM {BUILT_IDENTITIES} i
        WHERE EXISTS (SELECT 1 FROM stale_partitions s WHERE {_same_partition("s", "i")})""")
    for table in ("hub.record_identity", BUILT_IDENTITIES):
        run(f"""
            DELETE FROM {table} t
            WHERE EXISTS (SELECT 1 FROM stale_partitions s WHERE {_same_partition("s", "t")})""")
    fresh = {row[0] for row in run("SELECT DISTINCT dataset FROM fresh_partitions")}
    for contract, name in sources:
        if name not in fresh:
            continue
        run(f"""
            INSERT INTO hub.record_identity
            SELECT dataset, partner_id, record_token, postcode_token,
                   {_identity_id()} AS identity_id, extract_id
            FROM ({_dataset_records(contract, name)}) r
            WHERE EXISTS (SELECT 1 FROM fresh_partitions f WHERE {_same_partition("f", "r")})""")
    run(f"""
        CREATE OR REPLACE TEMP TABLE fresh_identities AS
        SELECT DISTINCT dataset, extract_id, hash(identity_id) AS identity_hash
        FROM hub.record_identity r
        WHERE EXISTS (SELECT 1 FROM fresh_partitions f WHERE {_same_partition("f", "r")})""")
    run(f"INSERT INTO {BUILT_IDENTITIES} SELECT * FROM fresh_identities")
    run("INSERT INTO touched_identities SELECT identity_hash FROM fresh_identities")
    # Regroup every touched identity record from all its records, wherever they landed.
    run("""
        CREATE OR REPLACE TEMP TABLE touched_records AS
        SELECT dataset, extract_id, record_token FROM hub.record_identity
        WHERE hash(identity_id) IN (SELECT identity_hash FROM touched_identities)""")
    run(
        "DELETE FROM hub.person_records "
        "WHERE hash(unique_id) IN (SELECT identity_hash FROM touched_identities)"
    )
    touched = {row[0] for row in run("SELECT DISTINCT dataset FROM touched_records")}
    if touched:
        regrouped = [(c, name) for c, name in sources if name in touched]
        records = _identified(regrouped, among="touched_records")
        run(f"CREATE OR REPLACE TEMP TABLE identified AS {records}")
        run(f"INSERT INTO hub.person_records {_grouped(regrouped, 'identified')}")
        run("DROP TABLE identified")
    for temp in (
        "stale_partitions",
        "fresh_partitions",
        "touched_identities",
        "fresh_identities",
        "touched_records",
    ):
        run(f"DROP TABLE {temp}")
