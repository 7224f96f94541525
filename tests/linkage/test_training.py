"""Training on a small place: EM runs on every blocked pair, without Splink's sampling probe."""
import logging

import dagster as dg
import duckdb
import pytest

from assets.ingest import received_extracts
from assets.linkage import person_records
from pipelines.linkage.model import EM_SAMPLE_FROM_RECORDS, train
from pipelines.resources import PlacelinkResource


@pytest.fixture(scope="module")
def records(small_place, tmp_path_factory):
    settings = small_place.stage_hub(tmp_path_factory.mktemp("training_hub"))
    result = dg.materialize([received_extracts, person_records],
                            resources={"placelink": PlacelinkResource(home=str(settings.home))})
    assert result.success
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return con.sql("SELECT * FROM hub.person_records ORDER BY unique_id").to_arrow_table()
    finally:
        con.close()


def test_a_small_place_trains_without_sampling_warnings(records, caplog):
    assert records.num_rows < EM_SAMPLE_FROM_RECORDS
    with caplog.at_level(logging.INFO, logger="splink"):
        model = train(records)

    sampling = [r.getMessage() for r in caplog.records if "[EM sampling]" in r.getMessage()]
    assert sampling == []
    levels = [level for comparison in model.splink_settings["comparisons"]
              for level in comparison["comparison_levels"] if not level.get("is_null_level")]
    assert levels and all(level.get("m_probability") is not None for level in levels)
