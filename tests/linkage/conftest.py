"""The small place's identity records, as linkage reads them (built once per test session)."""

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from assets.ingest import landing_specs, received_extracts
from assets.linkage import person_records_asset
from assets.resources import PlacelinkResource
from pipelines.settings import Settings

# The graph of the suite's environment (the repository's agreements), as the code location's.
person_records = person_records_asset(landing_specs(Settings.from_env()))


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
