"""PLACELINK_DUCKDB_MEMORY_LIMIT: a ceiling on each DuckDB database a run opens."""

import pyarrow as pa
import pytest

from pipelines.core.settings import Settings
from pipelines.core.warehouse import connect
from pipelines.linkage.model import _duckdb_records


def memory_limit(con) -> str:
    return con.execute(
        "SELECT value::VARCHAR FROM duckdb_settings() WHERE name = 'memory_limit'"
    ).fetchone()[0]


def test_the_limit_is_read_from_the_environment_and_bad_sizes_are_refused(tmp_path):
    assert Settings.from_env({"PLACELINK_HOME": str(tmp_path)}).duckdb_memory_limit == "3GB"
    assert (
        Settings.from_env(
            {"PLACELINK_HOME": str(tmp_path), "PLACELINK_DUCKDB_MEMORY_LIMIT": ""}
        ).duckdb_memory_limit
        == ""
    )
    limited = Settings.from_env(
        {"PLACELINK_HOME": str(tmp_path), "PLACELINK_DUCKDB_MEMORY_LIMIT": " 6GB "}
    )
    assert limited.duckdb_memory_limit == "6GB"
    with pytest.raises(
        ValueError, match=r"PLACELINK_DUCKDB_MEMORY_LIMIT is 'lots': give a size such as '3GB'"
    ):
        Settings.from_env(
            {"PLACELINK_HOME": str(tmp_path), "PLACELINK_DUCKDB_MEMORY_LIMIT": "lots"}
        )


def test_the_warehouse_and_splinks_database_get_the_limit(tmp_path):
    settings = Settings.from_env(
        {"PLACELINK_HOME": str(tmp_path), "PLACELINK_DUCKDB_MEMORY_LIMIT": "300MB"}
    )
    warehouse = connect(settings)
    try:
        limit = memory_limit(warehouse)
        default = Settings.from_env(
            {"PLACELINK_HOME": str(tmp_path / "other"), "PLACELINK_DUCKDB_MEMORY_LIMIT": ""}
        )
        unlimited = connect(default)
        try:
            assert limit != memory_limit(unlimited)
        finally:
            unlimited.close()
        assert limit.startswith(("286", "300"))  # DuckDB shows it in MiB or MB
    finally:
        warehouse.close()
    _, splink, _ = _duckdb_records(pa.table({"unique_id": [1, 2]}), tmp_path, "300MB")
    try:
        assert memory_limit(splink) == limit
    finally:
        splink.close()
