"""Quality in Dagster: asset checks on the landing tables, the blocking gate, the published
file, and the HTML report as a person sees it in a browser."""

import dagster as dg
import duckdb
import pytest

from assets.ingest import landing_specs, received_extracts
from assets.linkage import person_records_asset
from assets.quality import landing_checks, quality_report
from assets.resources import PlacelinkResource
from pipelines.core.settings import Settings
from pipelines.publish.disclosure import published_unsafe_cells
from tests.browser import rendered_dom, screenshot
from tests.quality.test_quality_gate import _future_dates, _write

# The graph of the suite's environment (the repository's agreements), as the code location's.
LANDING = landing_specs(Settings.from_env())
LANDING_CHECKS = landing_checks(LANDING)
person_records = person_records_asset(LANDING)


def _run(settings, raise_on_error=True):
    return dg.materialize(
        [received_extracts, person_records, quality_report, *LANDING_CHECKS],
        resources={
            "placelink": PlacelinkResource(
                home=str(settings.home), contracts_dir=str(settings.contracts_dir)
            )
        },
        raise_on_error=raise_on_error,
        # ingest writes the landing tables, so their checks run only when selected
        selection=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
    )


def _checks(result):
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def broken_run(small_place, tmp_path_factory):
    """Every partner's delivery, with the A&E extract carrying attendances in the future."""
    settings = small_place.stage_hub(tmp_path_factory.mktemp("quality_hub"))
    (settings.inbox / small_place.envelope("ae_attendances").envelope_path.name).unlink()
    _write(small_place, settings.inbox / "nhs-ae-2026-10-future.plx", _future_dates)
    return settings, _run(settings)


def test_broken_delivery_shows_as_a_failed_check_naming_delivery_and_rule(broken_run):
    _, result = broken_run
    assert result.success  # the other partners' data flowed on
    checks = _checks(result)
    ae = checks[("ae_attendances", "delivery_quality")]
    assert not ae.passed and ae.severity == dg.AssetCheckSeverity.ERROR
    messages = ae.metadata["messages"].value
    assert "nhs-ae-2026-10-future.plx" in messages and "arrival_date: plausible date" in messages
    assert (
        "| nhs-ae-2026-10-future.plx | ERROR | arrival_date: plausible date | 3 | 1, 2, 3 |"
        in ae.metadata["failed_rules"].value
    )
    for (dataset, name), evaluation in checks.items():
        if dataset != "ae_attendances" or name != "delivery_quality":
            assert evaluation.passed, (dataset, name)
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "hub/person_records" in materialised


def test_quality_report_lists_each_delivery_and_opens_in_a_browser(broken_run, tmp_path):
    settings, _ = broken_run
    page = settings.reports / "quality.html"
    dom = rendered_dom(page)
    assert "Data quality of partner deliveries" in dom
    assert "7 deliveries validated" in dom and "1 held in quarantine" in dom
    assert "nhs-ae-2026-10-future.plx" in dom and "held (not landed)" in dom
    assert "arrival_date: plausible date" in dom and "1, 2, 3" in dom
    screenshot(page, tmp_path / "quality.png")
    assert (tmp_path / "quality.png").stat().st_size > 10_000


def test_unvalidated_rows_in_a_landing_table_block_downstream(broken_run, small_place):
    settings, _ = broken_run
    con = duckdb.connect(str(settings.warehouse))
    con.execute(
        "INSERT INTO landing.emergency_admissions (record_token, admission_date, _extract_id, _received_at) "
        "VALUES (repeat('a', 32), DATE '2026-01-01', 'not-through-the-gate', now()::TIMESTAMP)"
    )
    con.close()
    result = _run(settings, raise_on_error=False)
    checks = _checks(result)
    assert not checks[("emergency_admissions", "only_validated_deliveries")].passed
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    # (nothing was delivered this time, so no landing partition is materialised; the check still runs)
    assert "hub/deliveries" in materialised and "hub/person_records" not in materialised


def test_published_cells_below_the_threshold_are_found(tmp_path):
    path = tmp_path / "shared_outcomes.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE outcomes_by_ward AS SELECT * FROM (VALUES (10, 25), (NULL, 0), (3, 40), (12, 45)) t(people, events)"
    )
    con.close()
    assert published_unsafe_cells(path, {"outcomes_by_ward": ["people", "events"]}) == {
        "outcomes_by_ward": 2
    }
