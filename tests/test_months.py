"""Month after month through `placelink run` (pipelines/orchestration/run.py), on a small place in a temp folder:
each partner-month shows as a partition of its landing asset, a later or corrected delivery lands in
its own month's partition, a backfill re-materialises a month, and a run with nothing new skips
linkage and publication, says so and leaves the published file as it was."""

import dagster as dg
import duckdb
import pytest

from pipelines.governance.audit import hub_audit_log
from pipelines.orchestration.run import dagster_instance, nothing_new, partner_months, run_pipeline

DATASETS = {
    "csc_referrals",
    "school_attendance",
    "homelessness_applications",
    "ae_attendances",
    "emergency_admissions",
    "mental_health_referrals",
    "family_support_enrolments",
}


def _partitions(settings, dataset: str) -> set[str]:
    with dagster_instance(settings) as instance:
        return set(instance.get_materialized_partitions(dg.AssetKey(["landing", dataset])))


def _materialisations(settings, dataset: str, month: str) -> list[dict]:
    """The metadata of every materialisation of one partner-month, oldest first."""
    with dagster_instance(settings) as instance:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["landing", dataset]), asset_partitions=[month]
            ),
            limit=100,
            ascending=True,
        ).records
    return [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in records]


def _skipped_steps(result) -> set[str]:
    return {e.step_key for e in result.all_events if e.event_type_value == "STEP_SKIPPED"}


def _without_one_row(table):
    return table.slice(1)


@pytest.fixture(scope="module")
def months_hub(small_place, tmp_path_factory):
    """A hub run four times: month 1; nothing new; month 2 of one dataset with a corrected month 1
    of another; a backfill of month 1. Each run's result, and the published file's bytes after it."""
    settings = small_place.stage_hub(tmp_path_factory.mktemp("months_hub"))
    runs = {}

    def run(name, **kwargs):
        result = run_pipeline(settings, log_level="WARNING", **kwargs)
        assert result.success, name
        runs[name] = (result, settings.published.read_bytes())

    run("month 1")
    run("nothing new")
    small_place.reseal(
        "ae_attendances",
        settings.inbox / "nhs-ae-2026-11.plx",
        mutate_table=_without_one_row,
        reporting_period="2026-11",
    )
    small_place.reseal(
        "csc_referrals",
        settings.inbox / "council-csc-2026-10-corrected.plx",
        mutate_table=_without_one_row,
    )
    run("month 2")
    run("backfill", months=["2026-10"])
    run("nothing new again")
    return settings, runs


def test_each_partner_month_is_a_partition_of_its_landing_asset(months_hub, small_place):
    settings, runs = months_hub
    result, _ = runs["month 1"]
    assert set(partner_months(result)) == {f"{d} 2026-10" for d in DATASETS}
    (first,) = _materialisations(settings, "ae_attendances", "2026-10")[:1]
    delivered = small_place.envelope("ae_attendances").envelope
    assert first["delivery_id"] == delivered.envelope_id
    assert first["rows"] == first["rows_delivered"] == delivered.row_count
    assert first["delivery_kind"] in {"full", "delta"}
    assert first["received_at"].startswith("2026-11-02")
    assert first["deliveries"] == 1
    # nothing digest-like or row-level in what the UI shows
    assert not any(isinstance(v, str) and len(v) == 64 for v in first.values())


def test_a_later_month_lands_in_its_own_partition_and_the_others_stay_missing(months_hub):
    settings, runs = months_hub
    result, _ = runs["month 2"]
    assert partner_months(result) == ["ae_attendances 2026-11", "csc_referrals 2026-10"]
    assert _partitions(settings, "ae_attendances") == {"2026-10", "2026-11"}
    for dataset in DATASETS - {"ae_attendances"}:
        assert _partitions(settings, dataset) == {"2026-10"}, (
            dataset
        )  # 2026-11 missing: not delivered


def test_a_corrected_delivery_rematerialises_its_month(months_hub, small_place):
    settings, _ = months_hub
    first, corrected = _materialisations(settings, "csc_referrals", "2026-10")[:2]
    assert corrected["deliveries"] == 2 and corrected["delivery_id"] != first["delivery_id"]
    assert corrected["rows_delivered"] == first["rows_delivered"] - 1


def test_a_run_with_one_new_delivery_links_and_publishes_again(months_hub):
    settings, runs = months_hub
    result, published = runs["month 2"]
    assert nothing_new(result) is None
    assert "hub__person_keys" not in _skipped_steps(
        result
    ) and "published__shared_outcomes" not in _skipped_steps(result)
    assert published != runs["month 1"][1]
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        (periods,) = con.execute(
            "SELECT list(DISTINCT reporting_period ORDER BY reporting_period) FROM hub.deliveries "
            "WHERE status = 'accepted'"
        ).fetchone()
    assert periods == ["2026-10", "2026-11"]


def test_a_run_with_nothing_new_skips_linkage_and_publication_and_says_so(months_hub):
    settings, runs = months_hub
    for before, name in (("month 1", "nothing new"), ("backfill", "nothing new again")):
        result, published = runs[name]
        reason = nothing_new(result)
        assert reason is not None and reason.startswith("nothing new since the publication of"), (
            name
        )
        assert "skipped" in reason and "unchanged" in reason
        skipped = _skipped_steps(result)
        assert {"person_records", "linked_persons", "published__shared_outcomes"} <= skipped, (
            skipped
        )
        assert published == runs[before][1], (
            name
        )  # byte for byte the file the last publication wrote
        assert partner_months(result) == []
    events = [e for e in hub_audit_log(settings).events() if e["event"] == "run_nothing_new"]
    assert len(events) == 2
    assert [e for e in hub_audit_log(settings).events() if e["event"] == "published"].__len__() == 3


def test_backfilling_a_month_rematerialises_its_partitions_and_what_depends_on_it(months_hub):
    settings, runs = months_hub
    result, published = runs["backfill"]
    assert partner_months(result) == sorted(f"{d} 2026-10" for d in DATASETS)
    assert nothing_new(result) is None  # nothing arrived, but a backfill rebuilds downstream
    assert not {"person_records", "linked_persons", "published__shared_outcomes"} & _skipped_steps(
        result
    )
    assert result.dagster_run.tags["placelink/months"] == "2026-10"
    assert len(_materialisations(settings, "school_attendance", "2026-10")) == 2
    assert _partitions(settings, "ae_attendances") == {"2026-10", "2026-11"}  # 2026-11 untouched
    assert len(_materialisations(settings, "ae_attendances", "2026-11")) == 1
