"""The whole graph, materialised with Dagster on a small synthetic place in a temp folder."""

import dagster as dg
import duckdb
import pytest

from assets.resources import PlacelinkResource
from pipelines.governance.audit import AuditLog
from pipelines.linkage.evaluation import linkage_accuracy
from pipelines.orchestration.code_location import defs


@pytest.fixture(scope="module")
def hub(published_small_hub):
    """The session's small place after one whole run (shared: these tests only read it)."""
    return published_small_hub.settings, published_small_hub.result


def test_every_asset_materialises(hub):
    _, result = hub
    materialised = {
        e.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
        if e.asset_key
    }
    assert {
        "hub/deliveries",
        "hub/person_keys",
        "cohorts/programme_cohort",
        "publish/outcomes_before_after",
        "published/shared_outcomes",
    } <= materialised


def test_ui_shows_every_inbox_file_with_its_outcome(hub, small_place):
    _, result = hub
    (deliveries,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "hub/deliveries"
    ]
    table = deliveries.materialization.metadata["files"].value
    for sealed in small_place.envelopes:
        assert f"| {sealed.envelope_path.name} | accepted |" in table
        outcome = deliveries.materialization.metadata[f"file {sealed.envelope_path.name}"].value
        assert outcome.startswith("accepted: ") and "rows into landing." in outcome


def test_linkage_matches_the_ground_truth(hub, small_place):
    settings, _ = hub
    accuracy = linkage_accuracy(
        settings.warehouse,
        small_place.place / "truth" / "ground_truth.csv",
        [(e.header.dataset, e.lookup_path) for e in small_place.extracts],
    )
    assert accuracy.identity_records.precision > 0.98
    assert accuracy.identity_records.recall > 0.97
    assert accuracy.records.records == sum(e.rows_out for e in small_place.extracts)


def test_published_file_is_disclosure_controlled_and_traceable(hub):
    settings, _ = hub
    con = duckdb.connect(str(settings.published), read_only=True)
    try:
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        assert {"outcomes_before_after", "outcomes_by_ward", "_about", "_definitions"} <= tables
        for table in ("outcomes_before_after", "outcomes_by_ward"):
            small = con.execute(
                f"SELECT count(*) FROM {table} WHERE people BETWEEN 1 AND 7 "
                f"OR events BETWEEN 1 AND 7 OR people % 5 <> 0 OR events % 5 <> 0"
            ).fetchone()[0]
            assert small == 0
        about = dict(con.execute("SELECT key, value FROM _about").fetchall())
        assert "1-7 redacted" in about["disclosure_rule"]
        assert {"nhs-acute-mental-health", "council-place-services", "vcs-family-support"} <= set(
            about["lineage"].split('"')
        )
        assert (
            con.execute(
                "SELECT count(*) FROM _definitions WHERE definition LIKE '%12 months%'"
            ).fetchone()[0]
            >= 2
        )
        # nothing row-level: no person keys or tokens in any published column
        columns = {
            r[0]
            for r in con.execute("SELECT column_name FROM information_schema.columns").fetchall()
        }
        assert not any("token" in c or c == "person_key" for c in columns)
    finally:
        con.close()


def test_audit_trail_is_intact_and_covers_each_stage(hub):
    settings, _ = hub
    log = AuditLog(settings.audit_dir)
    assert log.verify() is None
    events = {e["event"] for e in log.events()}
    assert {"extract_received", "extract_accepted", "linkage_run", "published"} <= events


def test_rerun_on_unchanged_inputs_keeps_every_person_key(published_small_hub, tmp_path):
    settings = published_small_hub.copy(tmp_path / "home")
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    before = dict(con.execute("SELECT identity_id, person_key FROM hub.person_keys").fetchall())
    con.close()
    again = dg.materialize(
        [
            a
            for a in defs.assets
            if isinstance(a, dg.AssetsDefinition)
            and (
                "linked_persons" in str(a.node_def.name) or "person_records" in str(a.node_def.name)
            )
        ],
        resources={
            "placelink": PlacelinkResource(
                home=str(settings.home), contracts_dir=str(settings.contracts_dir)
            )
        },
    )
    assert again.success
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    after = dict(con.execute("SELECT identity_id, person_key FROM hub.person_keys").fetchall())
    con.close()
    assert after == before
