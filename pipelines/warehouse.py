"""The hub's working DuckDB database (``warehouse.duckdb``)."""
from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.settings import Settings

SCHEMAS = ("landing", "hub", "staging", "cohorts", "outcomes", "publish")


def connect(settings: Settings, database: Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (one writer at a time) with spills kept under PLACELINK_HOME."""
    settings.ensure_dirs()
    con = duckdb.connect(str(database or settings.warehouse))
    con.execute("SET temp_directory = ?", [str(settings.duckdb_temp)])
    if settings.duckdb_memory_limit:
        con.execute("SET memory_limit = ?", [settings.duckdb_memory_limit])
    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    return con


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> bool:
    # fetchall, not fetchone: DuckDB 2.0 refuses the connection's next query while a result is unfinished.
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name]).fetchall()[0][0])
