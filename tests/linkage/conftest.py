"""The small place's identity records, as linkage reads them (built once per test session)."""

import duckdb
import pyarrow as pa
import pytest


@pytest.fixture(scope="session")
def small_place_person_records(published_small_hub) -> pa.Table:
    """``hub.person_records`` of the small place, ordered by ``unique_id`` (read from the session's
    published hub: the whole run built them as linkage reads them)."""
    con = duckdb.connect(str(published_small_hub.settings.warehouse), read_only=True)
    try:
        return con.sql("SELECT * FROM hub.person_records ORDER BY unique_id").to_arrow_table()
    finally:
        con.close()
