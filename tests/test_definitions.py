import warnings

import dagster as dg

from pipelines.sensors import inbox_sensor


def test_definitions_load_and_resolve_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from pipelines.definitions import defs

        graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"hub/deliveries", "landing/ae_attendances", "hub/person_keys",
            "cohorts/programme_cohort", "published/shared_outcomes"} <= keys
    # lineage read from the SQL: the cohort depends on linked persons through staging
    upstream = {k.to_user_string() for k in graph.get(dg.AssetKey(["cohorts", "programme_cohort"])).parent_keys}
    assert upstream == {"landing/family_support_enrolments", "hub/record_person"}
    assert defs.resolve_job_def("placelink_refresh") is not None
    assert defs.resolve_schedule_def("monthly_refresh").cron_schedule == "0 6 2 * *"


def test_inbox_sensor_requests_one_run_per_new_set_of_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PLACELINK_HOME", str(tmp_path))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    assert isinstance(inbox_sensor(dg.build_sensor_context()), dg.SkipReason)

    (inbox / "a.parquet").write_bytes(b"x")
    first = inbox_sensor(dg.build_sensor_context())
    assert isinstance(first, dg.RunRequest)

    again = inbox_sensor(dg.build_sensor_context(cursor=first.run_key.removeprefix("inbox-")))
    assert isinstance(again, dg.SkipReason)

    (inbox / "b.parquet").write_bytes(b"y")
    second = inbox_sensor(dg.build_sensor_context(cursor=first.run_key.removeprefix("inbox-")))
    assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key


def test_jobs_run_in_one_process_because_the_warehouse_has_one_writer():
    from pipelines.definitions import defs

    for name in ("placelink_refresh", "placelink_retention"):
        assert defs.resolve_job_def(name).executor_def.name == "in_process"
