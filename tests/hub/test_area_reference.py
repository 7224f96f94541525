"""The hub's area reference (PLACELINK_HOME/reference/lsoa_reference.csv) is needed only once a
landed record holds an LSOA: a new hub whose partners send their LSOAs empty (no postcode lookup)
runs without it, and says every person's area is unknown (issue 17)."""

import dagster as dg
import pytest

from assets.ingest import area_reference
from assets.resources import PlacelinkResource
from pipelines.core.settings import REPO_ROOT as REPO


def _hub(tmp_path, lsoas: list[str | None]):
    resource = PlacelinkResource(home=str(tmp_path / "hub"), contracts_dir=str(REPO / "contracts"))
    with resource.warehouse() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS landing")
        con.execute(
            "CREATE TABLE landing.family_support_enrolments AS "
            "SELECT * FROM (SELECT unnest($1::VARCHAR[]) AS lsoa_code)",
            [lsoas],
        )
    return resource


def _run(resource):
    return dg.materialize([area_reference], resources={"placelink": resource}, raise_on_error=False)


@pytest.mark.parametrize("lsoas", [[], [None, None]])
def test_without_the_file_a_hub_holding_no_lsoa_runs_on_and_says_areas_are_unknown(
    tmp_path, lsoas, capfd
):
    result = _run(_hub(tmp_path, lsoas))
    assert result.success
    (loaded,) = result.asset_materializations_for_node("hub__lsoa_reference")
    assert loaded.metadata["lsoas"].value == 0
    logged = capfd.readouterr().err
    assert "no landed record holds an LSOA" in logged
    assert "every person's area is unknown" in logged


def test_without_the_file_a_landed_lsoa_stops_the_run_naming_what_to_copy(tmp_path):
    result = _run(_hub(tmp_path, [None, "E01000001", "E01000002"]))
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    assert "2 landed record(s) under contract(s)" in message
    assert "vcs-family-support" in message and "lsoa_reference.csv is missing" in message
    assert "copy the LSOA reference file" in message
