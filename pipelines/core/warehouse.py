"""The hub's working DuckDB database (``warehouse.duckdb``)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from pipelines.core.settings import Settings
from pipelines.core.warehouse_schema import migrate

# The stage mark (pipelines.core.stages) around a step's closing of the warehouse, when DuckDB
# checkpoints what the step wrote.
WAREHOUSE_CLOSE = "warehouse: checkpoint as a step closes it"


def connect(settings: Settings, database: Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (one writer at a time) with spills kept under PLACELINK_HOME, its
    schema brought up to date (pipelines.core.warehouse_schema)."""
    settings.ensure_dirs()
    con = duckdb.connect(str(database or settings.warehouse))
    con.execute("SET temp_directory = ?", [str(settings.duckdb_temp)])
    if settings.duckdb_memory_limit:
        con.execute("SET memory_limit = ?", [settings.duckdb_memory_limit])
    try:
        migrate(con, settings.now())
    except BaseException:
        con.close()
        raise
    return con


def table_exists(
    con: duckdb.DuckDBPyConnection, schema: str, name: str, database: str | None = None
) -> bool:
    """Whether a table or view ``schema.name`` exists (in ``database`` if given, e.g. ``temp``
    for the connection's temp tables; else in any attached database)."""
    # fetchall, not fetchone: DuckDB 2.0 refuses some work (registering a table) while a result
    # is unfinished, and fetchone leaves it so.
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ? "
            "AND table_catalog = coalesce(?, table_catalog)",
            [schema, name, database],
        ).fetchall()[0][0]
    )


def qualified_table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """:func:`table_exists` for a table named as in SQL: ``schema.name``, or ``database.schema.name``
    (``temp.main.name`` for one of the connection's temp tables)."""
    *database, schema, name = table.split(".")
    return table_exists(con, schema, name, *database)


# DuckDB quotes values in single quotes (a conversion error quotes the value that failed) and
# names and file paths in double quotes, except a constraint error's key, which is a value too.
# Names and paths help the reader; values may be tokens and never leave the hub's data.
_VALUE = re.compile(r"'[^']*'|(?<=key )\"[^\"]*\"")
_LONG_HEX = re.compile(r"(?i)\b[0-9a-f]{16,}\b")


def describe_database_error(exc: duckdb.Error) -> str:
    """The kind and first line of a DuckDB error with every value replaced by '…': table and
    column names and file paths stay, values (which may be tokens) do not."""
    text = str(exc).strip()
    first_line = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: " + _LONG_HEX.sub("…", _VALUE.sub("'…'", first_line))


def database_error_action(exc: duckdb.Error) -> str:
    """What an operator does about a DuckDB error, in a sentence."""
    text = str(exc)
    if "Could not set lock" in text or "Conflicting lock" in text:
        # Runs take the hub's run lock and operators' commands never open the warehouse, so the
        # holder is something else: a DuckDB shell or a script of someone's own.
        return (
            "a process outside placelink's runs holds the warehouse (a DuckDB shell, a notebook or a script "
            "opening warehouse.duckdb): close it and re-run; analysts query the published file instead"
        )
    if isinstance(exc, duckdb.OutOfMemoryException) or "memory" in text.lower():
        return "raise PLACELINK_DUCKDB_MEMORY_LIMIT or free memory on the machine, then re-run"
    if "No space left" in text:
        return "free disk space under PLACELINK_HOME (DuckDB spills to duckdb_tmp/), then re-run"
    return (
        "re-run once the cause is fixed; if it happens again, report it to the hub's data team with the run "
        "id and step (the step's log in the Dagster UI shows where it failed)"
    )
