"""A place too small to train a model on is told so, not linked to no one in silence (issue 17:
two partners of 40 people each ran to a published file with every person unlinked)."""

from __future__ import annotations

import pytest

from pipelines.core.settings import Settings
from pipelines.core.warehouse import connect
from pipelines.linkage import link_person_records
from pipelines.linkage.model import MODEL_FILE
from pipelines.linkage.person_records import NothingToLink


def _hub(home, records):
    settings = Settings.from_env({"PLACELINK_HOME": str(home), "PLACELINK_AS_OF": "2026-11-02"})
    settings.ensure_dirs()
    con = connect(settings)
    con.register("handful", records)
    con.execute("CREATE TABLE hub.person_records AS SELECT * FROM handful")
    con.execute(
        "CREATE TABLE hub.record_identity AS SELECT 'records' AS dataset, partner_id, "
        "unique_id AS record_token, unique_id AS identity_id FROM handful"
    )
    con.unregister("handful")
    return settings, con


def test_a_model_no_rule_could_train_stops_the_linkage_and_is_not_saved(
    small_place_person_records, tmp_path
):
    settings, con = _hub(tmp_path / "home", small_place_person_records.slice(0, 12))
    try:
        with pytest.raises(NothingToLink) as stopped:
            link_person_records(con, settings)
        message = str(stopped.value)
        assert (
            "could not be trained" in message and "pairs among the 12 identity records" in message
        )
        assert "Fix: run again when more records have landed" in message
        assert not (settings.models / MODEL_FILE).exists()  # the next run trains again
        held = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'person_keys'"
        ).fetchone()[0]
        assert held == 0  # no key was issued
    finally:
        con.close()
    tokens = [
        t
        for t in small_place_person_records.slice(0, 12).column("given_name_token").to_pylist()
        if t
    ]
    assert tokens and not any(t in message for t in tokens)
