"""The small place's identity records, as linkage reads them (built once per test session)."""

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from assets.ingest import received_extracts
from assets.linkage import person_records
from assets.resources import PlacelinkResource


@pytest.fixture(scope="session")
def small_place_person_records(small_place, tmp_path_factory) -> pa.Table:
    """``hub.person_records`` of the small place, ordered by ``unique_id``."""
    settings = small_place.stage_hub(tmp_path_factory.mktemp("person_records_hub"))
    result = dg.materialize(
        [received_extracts, person_records],
        resources={"placelink": PlacelinkResource(home=str(settings.home))},
    )
    assert result.success
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.sql("SELECT * FROM hub.person_records ORDER BY unique_id").to_arrow_table()
    finally:
        con.close()
