"""What a publication was built from (pipelines/publish/publication_inputs.py), on a bare warehouse: which input
a run names as changed, and that the latest publication is the last one recorded, whatever the clock."""

import datetime as dt
import shutil

import pytest

from pipelines.core.settings import REPO_ROOT, Settings
from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.publish.publication_inputs import anything_new, last_publication, record_publication

NOW = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)


@pytest.fixture
def hub(tmp_path):
    shutil.copytree(REPO_ROOT / "contracts", tmp_path / "home" / "contracts")
    settings = Settings.from_env(
        {"PLACELINK_HOME": str(tmp_path / "home"), "PLACELINK_AS_OF": "2026-11-02"}
    )
    settings.ensure_dirs()
    settings.published.write_bytes(b"a published file")
    con = connect(settings)  # with the hub's tables (pipelines.core.warehouse_schema)
    contracts, problems = load_hub_contracts(settings)
    yield settings, con, contracts, problems
    con.close()


def _deliver(con, extract_id: str, kind: str = "extract") -> None:
    con.execute(
        "INSERT INTO hub.deliveries (file_name, received_at, status, extract_id, kind) "
        "VALUES (?, TIMESTAMP '2026-11-02 09:00', 'accepted', ?, ?)",
        [f"{extract_id}.plx", extract_id, kind],
    )


def test_nothing_new_only_after_a_publication_and_until_an_input_changes(hub):
    settings, con, contracts, problems = hub
    assert not anything_new(settings, con, contracts, problems).nothing_new  # never published
    _deliver(con, "e1")
    record_publication(settings, con, contracts, problems, "run-1", NOW)
    verdict = anything_new(settings, con, contracts, problems)
    assert (
        verdict.nothing_new and "by run run-1" in verdict.reason and "unchanged" in verdict.reason
    )
    assert not anything_new(settings, con, contracts, problems, forced="a backfill").nothing_new

    _deliver(con, "w1", kind="withdrawal")
    verdict = anything_new(settings, con, contracts, problems)
    assert not verdict.nothing_new and verdict.changed == [
        "deliveries (new extracts or withdrawals)"
    ]


@pytest.mark.parametrize(
    "change, named",
    [
        (
            lambda s: s.published.write_bytes(b"another file"),
            "the published file is missing or not the one last published",
        ),
        (
            lambda s: s.published.unlink(),
            "the published file is missing or not the one last published",
        ),
        (lambda s: (s.models / "linkage_model.json").write_text("{}"), "the saved linkage model"),
        (
            lambda s: (s.reference / "lsoa_reference.csv").write_text("lsoa_code\n"),
            "the area reference",
        ),
        (
            lambda s: (s.contracts_dir / "vcs-family-support.yaml").unlink(),
            "data-sharing agreements (files or status today)",
        ),
    ],
)
def test_each_kind_of_change_is_named(hub, change, named):
    settings, con, contracts, problems = hub
    record_publication(settings, con, contracts, problems, "run-1", NOW)
    change(settings)
    contracts, problems = load_hub_contracts(settings)
    verdict = anything_new(settings, con, contracts, problems)
    assert not verdict.nothing_new and verdict.changed == [named]


def test_the_latest_publication_is_the_last_recorded_even_if_the_clock_went_back(hub):
    settings, con, contracts, problems = hub
    record_publication(settings, con, contracts, problems, "run-1", NOW)
    record_publication(settings, con, contracts, problems, "run-2", NOW - dt.timedelta(days=30))
    assert last_publication(con).run_id == "run-2"
