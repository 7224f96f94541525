"""Linkage through Dagster on a small place: month one without the VCS extract, month two with it."""

import shutil

import dagster as dg
import duckdb
import pytest

from assets.ingest import landing_specs, received_extracts
from assets.linkage import linked_persons, person_records_asset, plausible_linkage
from assets.resources import PlacelinkResource
from pipelines.core.settings import Settings
from pipelines.linkage.model import TrainedModel
from pipelines.linkage.threshold import HIGHEST, LOWEST
from tests.browser import rendered_dom

# The graph of the suite's environment (the repository's agreements), as the code location's.
person_records = person_records_asset(landing_specs(Settings.from_env()))

LINKAGE = [received_extracts, person_records, linked_persons, plausible_linkage]


def keys(settings) -> dict[str, str]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return dict(con.execute("SELECT identity_id, person_key FROM hub.person_keys").fetchall())
    finally:
        con.close()


@pytest.fixture(scope="module")
def months(small_place, tmp_path_factory):
    vcs = "family_support_enrolments"
    others = [e.header.dataset for e in small_place.extracts if e.header.dataset != vcs]
    settings = small_place.stage_hub(tmp_path_factory.mktemp("linkage_months"), datasets=others)
    resources = {"placelink": PlacelinkResource(home=str(settings.home))}
    first = dg.materialize(LINKAGE, resources=resources, raise_on_error=False)
    month_one = keys(settings)
    small_place.stage_hub(settings.home, datasets=[vcs])
    second = dg.materialize(LINKAGE, resources=resources, raise_on_error=False)
    return settings, first, month_one, second, keys(settings)


def check_results(result) -> list[dg.AssetCheckEvaluation]:
    return [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]


def test_both_months_pass_the_blocking_linkage_check(months):
    _, first, _, second, _ = months
    assert first.success and second.success
    for result in (first, second):
        evaluations = check_results(result)
        assert len(evaluations) == 2  # on hub/person_keys and hub/record_person
        assert all(e.passed for e in evaluations), [e.metadata for e in evaluations]


def test_a_new_months_records_keep_existing_people_on_their_keys(months):
    settings, _, month_one, _, month_two = months
    assert len(month_two) > len(month_one)  # the VCS identity records arrived
    changed = sum(1 for i, k in month_one.items() if month_two[i] != k)
    assert changed / len(month_one) < 0.005
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        events = dict(
            con.execute(
                "SELECT event, count(*) FROM hub.person_key_events "
                "WHERE run_at = (SELECT max(run_at) FROM hub.person_key_events) GROUP BY 1"
            ).fetchall()
        )
    finally:
        con.close()
    assert events.get("new", 0) >= 1  # VCS-only people
    # a key only changes through a recorded merge or split
    assert changed == 0 or events.get("merge", 0) + events.get("split", 0) >= 1


def test_the_model_is_saved_once_and_reused(months):
    settings, first, _, second, _ = months

    def retrained(result):
        (event,) = [
            e
            for e in result.get_asset_materialization_events()
            if e.asset_key.path == ["hub", "person_keys"]
        ]
        return event.materialization.metadata["model_retrained"].value

    assert retrained(first) is True and retrained(second) is False
    model = TrainedModel.load(settings.models)
    assert model is not None and model.training_records > 0
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        runs = con.execute("SELECT count(*) FROM hub.linkage_runs").fetchall()[0][0]
    finally:
        con.close()
    assert runs == 2


def test_qa_report_shows_every_partner_and_the_chart(months):
    settings, *_ = months
    dom = rendered_dom(settings.reports / "linkage_qa.html")
    assert "Linkage check passed" in dom
    assert "<svg" in dom or "<canvas" in dom
    for partner in ("council", "nhs", "vcs"):
        assert f"<td>{partner}</td>" in dom
    assert "keys carried forward" in dom


def test_a_failed_linkage_check_stops_the_assets_downstream(months, tmp_path, monkeypatch):
    settings, *_ = months
    home = tmp_path / "home"
    shutil.copytree(settings.home, home)
    # Largest real person on the small place holds several identity records: call 2 implausible.
    monkeypatch.setenv("PLACELINK_LINKAGE_MAX_CLUSTER_SIZE", "2")

    @dg.asset(deps=[["hub", "record_person"]])
    def downstream_model() -> None:
        """Stands for the SQL models that read person keys."""

    result = dg.materialize(
        [person_records, linked_persons, plausible_linkage, downstream_model],
        resources={"placelink": PlacelinkResource(home=str(home))},
        raise_on_error=False,
    )
    evaluations = check_results(result)
    assert {e.asset_key.to_user_string() for e in evaluations} == {
        "hub/person_keys",
        "hub/record_person",
    }
    assert not any(e.passed for e in evaluations)
    assert "over-linking" in evaluations[0].metadata["problems"].value
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "hub/person_keys" in materialised and "downstream_model" not in materialised


def test_a_month_where_every_delivery_was_held_stops_linkage_with_a_reason(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=[])
    (settings.inbox / "junk.plx").write_bytes(b"not an envelope")
    result = dg.materialize(
        [received_extracts, person_records, linked_persons],
        resources={"placelink": PlacelinkResource(home=str(settings.home))},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "nothing to link" in failure.step_failure_data.user_failure_data.description


def test_the_first_run_calibrates_a_threshold_that_the_next_run_reuses(months):
    settings, first, _, second, _ = months
    model = TrainedModel.load(settings.models)
    assert model.threshold is not None and LOWEST <= model.threshold <= HIGHEST
    assert "valley" in model.threshold_method and model.masks_placeholders
    used = [
        m.metadata["threshold"].value
        for r in (first, second)
        for m in r.asset_materializations_for_node("linked_persons")
        if "threshold" in m.metadata
    ]
    assert used == [model.threshold, model.threshold]
    report = (settings.reports / "linkage_qa.html").read_text()
    assert "No field holds a value shared by implausibly many records" in report
    assert "EM training rules: date_of_birth_token" in report


def saved_key_state(settings) -> tuple[dict[str, str], list, int, list]:
    """The saved keys, the register of issued keys, the key history's length and record_person."""
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return (
            dict(con.execute("SELECT identity_id, person_key FROM hub.person_keys").fetchall()),
            sorted(con.execute("SELECT * FROM hub.person_key_register").fetchall()),
            con.execute("SELECT count(*) FROM hub.person_key_events").fetchall()[0][0],
            sorted(con.execute("SELECT * FROM hub.record_person").fetchall()),
        )
    finally:
        con.close()


def materialised(result, key: str) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == key
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def without_partner(settings, partner: str) -> None:
    """The identity records as if one partner's datasets had gone missing (a bad month's input)."""
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute("DELETE FROM hub.person_records WHERE partner_id = ?", [partner])
    finally:
        con.close()


def test_a_run_that_fails_the_check_saves_no_key_and_a_normal_rerun_gives_the_same_keys(
    months, tmp_path
):
    settings, *_ = months
    home = tmp_path / "home"
    shutil.copytree(settings.home, home)
    copy = type(settings).from_env({"PLACELINK_HOME": str(home)})
    before = saved_key_state(copy)
    resources = {"placelink": PlacelinkResource(home=str(home))}
    # A bad run: the council's records are missing, so its people's keys would retire for good.
    without_partner(copy, "council")
    bad = dg.materialize(
        [linked_persons, plausible_linkage], resources=resources, raise_on_error=False
    )
    (evaluation, _) = check_results(bad)
    assert not evaluation.passed and "link rate moved" in evaluation.metadata["problems"].value
    staged = materialised(bad, "hub/person_keys")
    assert staged["keys_saved"] is False
    assert staged["keys_retired"] > 0  # what the bad run would have done to the saved keys
    assert saved_key_state(copy) == before  # keys, register, history and record_person untouched

    rerun = dg.materialize(
        LINKAGE[1:], resources=resources, raise_on_error=False
    )  # records rebuilt
    assert rerun.success and all(e.passed for e in check_results(rerun))
    after = saved_key_state(copy)
    assert after[0] == before[0] and after[1] == before[1] and after[3] == before[3]
    assert materialised(rerun, "hub/person_keys")["identity_records_with_changed_key"] == 0


def test_an_accepted_change_clears_the_next_run_and_moves_the_baseline(
    months, tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from pipelines.cli import main
    from pipelines.governance.audit import AuditLog

    settings, *_ = months
    home = tmp_path / "home"
    shutil.copytree(settings.home, home)
    copy = type(settings).from_env({"PLACELINK_HOME": str(home)})
    resources = {"placelink": PlacelinkResource(home=str(home))}
    before = saved_key_state(copy)
    # A known, lasting change of the link rate: the council's records are gone (its agreement ended).
    without_partner(copy, "council")
    checked = [linked_persons, plausible_linkage]
    for _ in range(2):  # without an acceptance, every run fails and names the command
        failed = dg.materialize(checked, resources=resources, raise_on_error=False)
        (evaluation, _) = check_results(failed)
        assert not evaluation.passed
        assert "placelink linkage accept-change" in evaluation.metadata["problems"].value
        assert saved_key_state(copy) == before

    monkeypatch.setenv("PLACELINK_HOME", str(home))
    accepted = CliRunner().invoke(
        main, ["linkage", "accept-change", "--reason", "council agreement ended"]
    )
    assert accepted.exit_code == 0, accepted.output
    assert "accepted the link rate's move from" in accepted.output
    (event,) = [
        e for e in AuditLog(copy.audit_dir).events() if e["event"] == "linkage_change_accepted"
    ]
    assert event["reason"] == "council agreement ended" and event["actor"].startswith("user:")
    assert abs(event["to_link_rate"] - event["from_link_rate"]) > 0.05

    cleared = dg.materialize(checked, resources=resources, raise_on_error=False)
    assert cleared.success and all(e.passed for e in check_results(cleared))
    metadata = materialised(cleared, "hub/person_keys")
    assert metadata["keys_saved"] is True and metadata["link_rate"] == pytest.approx(
        event["to_link_rate"], abs=1e-4
    )
    # the baseline moved: the run after passes without a new acceptance, and the acceptance is used up
    again = dg.materialize(checked, resources=resources, raise_on_error=False)
    assert again.success and all(e.passed for e in check_results(again))
    runs = [e for e in AuditLog(copy.audit_dir).events() if e["event"] == "linkage_run"]
    assert (
        runs[-2]["accepted_changes"] == [event["change_id"]] and runs[-1]["accepted_changes"] == []
    )


def test_placelink_linkage_threshold_overrides_the_saved_calibrated_threshold(months):
    from pipelines.linkage import threshold_in_use
    from pipelines.linkage.model import predict_clusters

    settings, *_ = months
    model = TrainedModel.load(settings.models)
    assert threshold_in_use(settings) == model.threshold  # the saved one, without the variable
    configured = type(settings).from_env(
        {"PLACELINK_HOME": str(settings.home), "PLACELINK_LINKAGE_THRESHOLD": "0.97"}
    )
    assert threshold_in_use(configured) == 0.97
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        records = con.sql("SELECT * FROM hub.person_records ORDER BY unique_id").to_arrow_table()
    finally:
        con.close()
    prediction = predict_clusters(records, model, configured.linkage_threshold)
    assert (prediction.threshold, prediction.threshold_method) == (0.97, "as configured")
    assert TrainedModel.load(settings.models).threshold == model.threshold  # not re-calibrated
