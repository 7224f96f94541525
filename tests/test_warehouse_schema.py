"""The hub's tables come from one list of numbered migrations, applied once when the warehouse is
opened for writing; a warehouse made before migrations were numbered is upgraded without loss."""

import duckdb
import pytest

from pipelines.core import warehouse_schema
from pipelines.core.settings import Settings
from pipelines.core.warehouse import connect
from pipelines.core.warehouse_schema import LATEST, Migration, migrate, schema_version

# What a hub of an older version made (hub.deliveries and hub.linkage_runs as they first were,
# before later versions added columns), and no hub.schema_migrations.
OLD_WAREHOUSE = [
    "CREATE SCHEMA hub",
    "CREATE SCHEMA landing",
    """CREATE TABLE hub.deliveries (
        file_name VARCHAR NOT NULL, received_at TIMESTAMP NOT NULL, status VARCHAR NOT NULL,
        extract_id VARCHAR, contract_id VARCHAR, contract_version VARCHAR, partner_id VARCHAR,
        dataset VARCHAR, reporting_period VARCHAR, row_count BIGINT, invalid_counts JSON,
        opted_out_rows BIGINT, failed_check VARCHAR, reason VARCHAR, stored_as VARCHAR)""",
    """CREATE TABLE hub.linkage_runs (
        run_at TIMESTAMP NOT NULL, identity_records INTEGER NOT NULL, persons INTEGER NOT NULL,
        link_rate DOUBLE NOT NULL, max_cluster_size INTEGER NOT NULL, keys_new INTEGER,
        keys_merged INTEGER, keys_split INTEGER, identity_records_with_changed_key INTEGER,
        check_passed BOOLEAN)""",
    "CREATE TABLE landing.ae_attendances (record_token VARCHAR, _extract_id VARCHAR)",
    """INSERT INTO hub.deliveries (file_name, received_at, status, extract_id, row_count, stored_as)
       VALUES ('nhs-ae-2026-09.plx', TIMESTAMP '2026-10-02 09:00', 'accepted', 'env-1', 2,
               'vault/nhs/nhs-ae-2026-09.plx')""",
    """INSERT INTO hub.linkage_runs VALUES
       (TIMESTAMP '2026-10-02 10:00', 150, 100, 0.6, 3, 100, 0, 0, 0, true)""",
    "INSERT INTO landing.ae_attendances VALUES ('tok-a', 'env-1'), ('tok-b', 'env-1')",
]


@pytest.fixture
def settings(tmp_path):
    settings = Settings.from_env(
        {"PLACELINK_HOME": str(tmp_path / "home"), "PLACELINK_AS_OF": "2026-11-02"}
    )
    settings.ensure_dirs()
    return settings


def _hub_tables(con) -> set[str]:
    return {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'hub'"
        ).fetchall()
    }


def test_a_new_warehouse_has_every_hub_table_at_the_latest_version(settings):
    con = connect(settings)
    try:
        assert schema_version(con) == LATEST
        assert {
            "deliveries",
            "pending_audit",
            "quality_deliveries",
            "quality_results",
            "contract_status",
            "retention_deletions",
            "withdrawn_records",
            "linkage_runs",
            "person_key_register",
            "person_key_events",
            "publications",
            "schema_migrations",
        } <= _hub_tables(con)
    finally:
        con.close()


def test_an_old_warehouse_is_upgraded_without_loss_and_the_version_recorded(settings):
    old = duckdb.connect(str(settings.warehouse))
    for statement in OLD_WAREHOUSE:
        old.execute(statement)
    old.close()

    con = connect(settings)
    try:
        assert con.execute(
            "SELECT file_name, status, extract_id, row_count, stored_as, content_sha256, kind, "
            "delivery_kind, delivery_id FROM hub.deliveries"
        ).fetchall() == [
            (
                "nhs-ae-2026-09.plx",
                "accepted",
                "env-1",
                2,
                "vault/nhs/nhs-ae-2026-09.plx",
                None,
                None,
                None,
                None,
            )
        ]
        assert con.execute(
            "SELECT persons, link_rate, check_passed, previous_link_rate FROM hub.linkage_runs"
        ).fetchall() == [(100, 0.6, True, None)]
        assert con.execute("SELECT count(*) FROM landing.ae_attendances").fetchall() == [(2,)]
        # the hub's clock (PLACELINK_AS_OF) dates it
        assert con.execute(
            "SELECT version, CAST(applied_at AS DATE) FROM hub.schema_migrations ORDER BY version"
        ).fetchall() == [(v, settings.today()) for v in range(1, LATEST + 1)]
    finally:
        con.close()

    # applied once: opening it again changes nothing
    con = connect(settings)
    try:
        assert con.execute("SELECT count(*) FROM hub.schema_migrations").fetchall() == [(LATEST,)]
        assert con.execute("SELECT count(*) FROM hub.deliveries").fetchall() == [(1,)]
    finally:
        con.close()


def test_a_migration_that_fails_leaves_the_warehouse_at_the_last_version_it_finished(
    settings, monkeypatch
):
    con = connect(settings)
    try:
        broken = Migration(
            LATEST + 1,
            "a table, then a statement that fails (as a run killed in the middle would leave it)",
            ("CREATE TABLE hub.half_made (a INTEGER)", "SELECT * FROM hub.no_such_table"),
        )
        monkeypatch.setattr(warehouse_schema, "MIGRATIONS", (*warehouse_schema.MIGRATIONS, broken))
        monkeypatch.setattr(warehouse_schema, "LATEST", LATEST + 1)
        with pytest.raises(duckdb.CatalogException):
            migrate(con, settings.now())
        assert schema_version(con) == LATEST and "half_made" not in _hub_tables(con)

        fixed = Migration(LATEST + 1, "a table", ("CREATE TABLE hub.half_made (a INTEGER)",))
        monkeypatch.setattr(
            warehouse_schema, "MIGRATIONS", (*warehouse_schema.MIGRATIONS[:-1], fixed)
        )
        assert migrate(con, settings.now()) == [LATEST + 1]
        assert schema_version(con) == LATEST + 1 and "half_made" in _hub_tables(con)
    finally:
        con.close()


def test_a_warehouse_written_by_a_newer_placelink_is_refused(settings):
    con = connect(settings)
    con.execute(
        "INSERT INTO hub.schema_migrations VALUES (?, 'from the future', TIMESTAMP '2027-01-01')",
        [LATEST + 1],
    )
    con.close()
    with pytest.raises(RuntimeError, match=f"schema version {LATEST + 1}.*written by a newer"):
        connect(settings)


def test_staged_person_keys_an_earlier_version_left_in_the_warehouse_are_dropped(settings):
    # Keys used to be staged in warehouse tables and stayed there when a run's linkage check
    # failed, outside the reach of withdrawals and retention; they are now the run's temp tables.
    con = duckdb.connect(str(settings.warehouse))
    for statement in OLD_WAREHOUSE:
        con.execute(statement)
    con.execute("CREATE TABLE hub.person_keys_staged (identity_id VARCHAR, person_key VARCHAR)")
    con.execute("CREATE TABLE hub.person_key_events_staged (run_at TIMESTAMP, event VARCHAR)")
    con.close()
    con = connect(settings)
    try:
        tables = _hub_tables(con)
        assert "person_keys_staged" not in tables and "person_key_events_staged" not in tables
        assert "linkage_runs" in tables and schema_version(con) == LATEST
    finally:
        con.close()
