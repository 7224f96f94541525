"""The hub's own tables in the warehouse, as one ordered list of numbered migrations.

Every table the hub keeps about its own work (deliveries and their pending audit events, quality
verdicts, contract status, retention deletions, withdrawn records, linkage runs, the person-key
register and history, the latest publication) is created here and nowhere else. When the
warehouse is opened for writing (:func:`pipelines.core.warehouse.connect`), the migrations it has not
had are applied in order, each in one transaction together with its row in
``hub.schema_migrations`` (version, description, applied_at), so a run killed while migrating
leaves the warehouse at the last version it finished, and the next run carries on from there.

Migration 1 is the schema as placelink made it before migrations were numbered: every statement
is ``IF NOT EXISTS``, so a warehouse made by any earlier version (its tables there, some columns
added by later versions missing, no ``hub.schema_migrations``) is brought up to it without losing
a row. Later changes are new migrations appended to ``MIGRATIONS``; a migration once released is
never edited.

Not here, on purpose:

* the landing tables (``landing.<dataset>``): their columns come from the contracts, so they are
  data, not schema (pipelines.hub.ingest.ensure_landing_tables creates one per contract dataset);
* what each run rebuilds whole (person records, person keys, the SQL models' tables, the area
  reference, effect estimates): outputs created by the step that computes them;
* the published file, built apart and swapped in (pipelines.publish.published_file).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

# The schemas of the warehouse; the hub's own tables live in ``hub``.
SCHEMAS = ("landing", "hub", "staging", "cohorts", "outcomes", "publish")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


DELIVERIES = """
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
)"""
DELIVERIES_COLUMNS = (
    "content_sha256 VARCHAR",
    # extract | withdrawal (a list of records the partner withdraws: pipelines.hub.withdrawals)
    "kind VARCHAR",
    # full | delta, as the partner's extract header states it (NULL before it was recorded: full)
    "delivery_kind VARCHAR",
    # the journal id of the delivery that made the record (NULL before issue 20)
    "delivery_id VARCHAR",
)
PENDING_AUDIT = """
CREATE TABLE IF NOT EXISTS hub.pending_audit (
    delivery_id VARCHAR PRIMARY KEY,   -- the journal id of the delivery
    event JSON NOT NULL                -- the audit event to write once the commit is done
)"""
QUALITY_DELIVERIES = """
CREATE TABLE IF NOT EXISTS hub.quality_deliveries (
    file_name VARCHAR NOT NULL,
    received_at TIMESTAMP NOT NULL,     -- the ingest run (one per receive_inbox call)
    extract_id VARCHAR,
    contract_id VARCHAR,
    contract_version VARCHAR,
    dataset VARCHAR,
    row_count BIGINT,
    previous_row_count BIGINT,
    outcome VARCHAR NOT NULL,           -- passed | warned | held
    rules BIGINT,
    failed_errors BIGINT,
    failed_warnings BIGINT,
    seconds DOUBLE                      -- validating, in the quality worker process
)"""
# how long ingest waited for the verdict: what the gate added to the run (quality/worker.py)
QUALITY_DELIVERIES_COLUMNS = ("waited_seconds DOUBLE",)
QUALITY_RESULTS = """
CREATE TABLE IF NOT EXISTS hub.quality_results (
    file_name VARCHAR NOT NULL,
    received_at TIMESTAMP NOT NULL,
    extract_id VARCHAR,
    contract_id VARCHAR,
    dataset VARCHAR,
    rule VARCHAR NOT NULL,
    column_name VARCHAR,
    severity VARCHAR NOT NULL,
    source VARCHAR,
    expectation VARCHAR,
    description VARCHAR,
    passed BOOLEAN NOT NULL,
    unexpected_count BIGINT,
    checked_rows BIGINT,
    sample_rows JSON,                    -- row numbers only (1 = first data row), never values
    observed VARCHAR,
    summary VARCHAR
)"""
CONTRACT_STATUS = """
CREATE TABLE IF NOT EXISTS hub.contract_status (
    contract_id VARCHAR PRIMARY KEY,
    contract_version VARCHAR,
    partner_id VARCHAR,
    status VARCHAR NOT NULL,      -- approval status, or unsigned / expired / not_yet_valid / invalid / missing
    in_use BOOLEAN NOT NULL,      -- whether its data is linked and published
    reason VARCHAR,
    file VARCHAR,
    seen_at TIMESTAMP NOT NULL
)"""
# The digest of the signed content this run saw (pipelines.governance.contract_content): a change is audited.
CONTRACT_STATUS_COLUMNS = ("content_sha256 VARCHAR",)
RETENTION_DELETIONS = """
CREATE TABLE IF NOT EXISTS hub.retention_deletions (
    extract_id VARCHAR PRIMARY KEY,
    contract_id VARCHAR,
    contract_version VARCHAR,
    dataset VARCHAR,
    received_at TIMESTAMP,
    retain_until DATE,
    deleted_at TIMESTAMP,
    landing_rows_deleted BIGINT,
    derived_rows_deleted BIGINT,
    file_deleted BOOLEAN
)"""
WITHDRAWN_RECORDS = """
CREATE TABLE IF NOT EXISTS hub.withdrawn_records (
    contract_id VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    record_token VARCHAR NOT NULL,
    withdrawal_id VARCHAR NOT NULL,   -- the withdrawal envelope's id
    reason VARCHAR,                   -- opt_out | erasure
    withdrawn_at TIMESTAMP NOT NULL,
    PRIMARY KEY (dataset, record_token)
)"""
LINKAGE_RUNS = """
CREATE TABLE IF NOT EXISTS hub.linkage_runs (
    run_at TIMESTAMP NOT NULL,
    identity_records INTEGER NOT NULL,
    persons INTEGER NOT NULL,
    link_rate DOUBLE NOT NULL,
    max_cluster_size INTEGER NOT NULL,
    keys_new INTEGER,
    keys_merged INTEGER,
    keys_split INTEGER,
    identity_records_with_changed_key INTEGER,
    check_passed BOOLEAN
)"""
# Columns added later (issue 20): what the check found, against which baseline, and which
# accepted changes (ids of `linkage_change_accepted` audit events) this run used up.
LINKAGE_RUNS_COLUMNS = ("previous_link_rate DOUBLE", "problems VARCHAR", "accepted_changes VARCHAR")
PERSON_KEY_REGISTER = """
CREATE TABLE IF NOT EXISTS hub.person_key_register (
    person_key VARCHAR PRIMARY KEY,
    issued_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP,
    retired_into VARCHAR
)"""
PERSON_KEY_EVENTS = """
CREATE TABLE IF NOT EXISTS hub.person_key_events (
    run_at TIMESTAMP NOT NULL,
    event VARCHAR NOT NULL,          -- new | merge | split | retired | erased (withdrawn)
    person_key VARCHAR NOT NULL,     -- the key the event is about
    other_person_key VARCHAR,        -- merge: the key absorbed; split: the key split off
    identity_records INTEGER         -- identity records moved by the event
)"""
PUBLICATIONS = """
CREATE TABLE IF NOT EXISTS hub.publications (   -- the latest publication only
    run_id VARCHAR,
    published_at TIMESTAMP NOT NULL,
    inputs JSON NOT NULL,              -- input name -> SHA-256 of its parts (INPUT_NAMES)
    published_sha256 VARCHAR NOT NULL
)"""


def _columns(table: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {c}" for c in columns)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the hub's tables as placelink made them before migrations were numbered",
        (
            DELIVERIES,
            *_columns("hub.deliveries", DELIVERIES_COLUMNS),
            PENDING_AUDIT,
            QUALITY_DELIVERIES,
            *_columns("hub.quality_deliveries", QUALITY_DELIVERIES_COLUMNS),
            QUALITY_RESULTS,
            CONTRACT_STATUS,
            *_columns("hub.contract_status", CONTRACT_STATUS_COLUMNS),
            RETENTION_DELETIONS,
            WITHDRAWN_RECORDS,
            LINKAGE_RUNS,
            *_columns("hub.linkage_runs", LINKAGE_RUNS_COLUMNS),
            PERSON_KEY_REGISTER,
            PERSON_KEY_EVENTS,
            PUBLICATIONS,
        ),
    ),
    Migration(
        2,
        "hub.linkage_runs.scoring: 'incremental', or 'full relink: ' and why a run scored every pair",
        _columns("hub.linkage_runs", ("scoring VARCHAR",)),
    ),
    Migration(
        3,
        "person keys are staged in the run's temp tables: the warehouse copies an earlier version "
        "left behind (from a run whose linkage check failed) are dropped",
        (
            "DROP TABLE IF EXISTS hub.person_keys_staged",
            "DROP TABLE IF EXISTS hub.person_key_events_staged",
        ),
    ),
    Migration(
        4,
        "hub.linkage_runs.new_records: per dataset, how many identity records were new in the run "
        "and how many of them linked (JSON counts), the baseline the next runs' new records are "
        "compared with",
        _columns("hub.linkage_runs", ("new_records VARCHAR",)),
    ),
)
LATEST = MIGRATIONS[-1].version

VERSIONS = """
CREATE TABLE IF NOT EXISTS hub.schema_migrations (
    version INTEGER PRIMARY KEY,
    description VARCHAR NOT NULL,
    applied_at TIMESTAMP NOT NULL
)"""


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The last migration applied to this warehouse (0: none recorded)."""
    con.execute(VERSIONS)
    # fetchall, not fetchone: DuckDB 2.0 refuses new work while a result is unfinished.
    return con.execute("SELECT coalesce(max(version), 0) FROM hub.schema_migrations").fetchall()[0][
        0
    ]


def migrate(con: duckdb.DuckDBPyConnection, now: dt.datetime) -> list[int]:
    """Create the warehouse's schemas and apply every migration it has not had, in order, each in
    its own transaction with its version row; returns the versions applied now (none when the
    warehouse is up to date, which costs one query)."""
    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    current = schema_version(con)
    if current > LATEST:
        raise RuntimeError(
            f"the warehouse is at schema version {current}, but this placelink knows versions up "
            f"to {LATEST}: it was written by a newer placelink. Run that version (or restore the "
            "warehouse from before it ran)"
        )
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in migration.statements:
                con.execute(statement)
            con.execute(
                "INSERT INTO hub.schema_migrations VALUES (?, ?, ?)",
                [migration.version, migration.description, now.replace(tzinfo=None)],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    return applied
