"""One configuration path (issue 19): the graph, its resource and a headless run follow the
settings they are given, never the process's environment, which they neither read for the graph
nor write."""

import os
import shutil

import dagster as dg
import pytest

from pipelines.core.settings import REPO_ROOT, Settings
from pipelines.orchestration.definitions import placelink_definitions
from pipelines.orchestration.run import run_pipeline

FAMILY_SUPPORT = "vcs-family-support.yaml"
# What only the family-support agreement brings: its landing table and the models that read it.
FAMILY_SUPPORT_ASSETS = {
    "landing/family_support_enrolments",
    "cohorts/programme_cohort",
    "publish/outcomes_by_ward",
}


def _without_family_support(folder):
    folder.mkdir(parents=True)
    for path in (REPO_ROOT / "contracts").glob("*.yaml"):
        if path.name != FAMILY_SUPPORT:
            shutil.copy2(path, folder / path.name)
    return folder


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


def _keys(defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}


@pytest.fixture
def environment_writes(monkeypatch) -> list[str]:
    """The names written to or deleted from ``os.environ`` while the test runs (but pytest's own
    PYTEST_CURRENT_TEST)."""
    written: list[str] = []
    environ = type(os.environ)
    set_item, del_item = environ.__setitem__, environ.__delitem__

    def recording_set(self, name, value):
        if name != "PYTEST_CURRENT_TEST":
            written.append(name)
        set_item(self, name, value)

    def recording_del(self, name):
        if name != "PYTEST_CURRENT_TEST":
            written.append(name)
        del_item(self, name)

    monkeypatch.setattr(environ, "__setitem__", recording_set)
    monkeypatch.setattr(environ, "__delitem__", recording_del)
    return written


def test_two_hubs_in_one_process_get_the_graphs_of_their_own_contracts(
    tmp_path, environment_writes
):
    before = _environment()
    # Nothing from this process's environment: each hub's settings name all they need.
    every = Settings.from_env({}, home=tmp_path / "a", contracts_dir=REPO_ROOT / "contracts")
    fewer = Settings.from_env(
        {}, home=tmp_path / "b", contracts_dir=_without_family_support(tmp_path / "contracts-b")
    )

    defs_every, defs_fewer = placelink_definitions(every), placelink_definitions(fewer)

    keys_every, keys_fewer = _keys(defs_every), _keys(defs_fewer)
    assert FAMILY_SUPPORT_ASSETS <= keys_every
    assert not FAMILY_SUPPORT_ASSETS & keys_fewer
    assert {"landing/ae_attendances", "published/shared_outcomes"} <= keys_every & keys_fewer
    # each graph's resource holds its own hub: the steps of a run read that home, nothing else
    assert defs_every.resources["placelink"].settings().home == (tmp_path / "a").resolve()
    assert defs_fewer.resources["placelink"].settings().home == (tmp_path / "b").resolve()
    # and the order of building does not matter: the first graph is not the second's
    assert _keys(placelink_definitions(every)) == keys_every
    assert environment_writes == [] and _environment() == before


def test_a_headless_run_uses_its_own_hubs_graph_and_leaves_the_environment_alone(
    small_place, tmp_path, environment_writes
):
    # The code location of the environment's hub is loaded first, as a test run or a CLI process
    # may have done: its graph has every agreement's tables.
    from pipelines.orchestration.code_location import defs

    assert FAMILY_SUPPORT_ASSETS <= _keys(defs)
    settings = small_place.stage_hub(tmp_path / "hub")
    (settings.contracts_dir / FAMILY_SUPPORT).unlink()  # this hub has no family-support partner
    before = _environment()

    result = run_pipeline(settings, log_level="ERROR")

    materialised = {
        e.asset_key.to_user_string() for e in result.all_events if e.is_step_materialization
    }
    assert {"hub/deliveries", "hub/person_keys", "published/shared_outcomes"} <= materialised
    assert not FAMILY_SUPPORT_ASSETS & materialised
    assert environment_writes == [] and _environment() == before
