"""Person records: one row per landed record in hub.record_identity, one per identity record in
hub.person_records, whose features do not depend on the order the landed rows are read in."""

import datetime as dt

import duckdb
import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import load_contracts
from pipelines.hub.ingest import ensure_landing_tables
from pipelines.linkage.person_records import LINKAGE_FEATURES, build_person_records

CONTRACTS, _ = load_contracts(REPO_ROOT / "contracts")
EARLY = dt.datetime(2026, 10, 5, 8, 0)
LATE = dt.datetime(2026, 11, 2, 9, 0)


def _dataset_with(*columns: str):
    """A contract and one of its datasets that carry ``columns`` (the repo's agreements)."""
    for contract in CONTRACTS.values():
        for name, dataset in contract.datasets.items():
            if set(columns) <= set(dataset.columns):
                return contract, name
    raise AssertionError(f"no dataset in the repo's contracts carries {columns}")


def _land(con, name: str, rows: list[dict]) -> None:
    for row in rows:
        names = ", ".join(f'"{c}"' for c in row)
        con.execute(
            f"INSERT INTO landing.{name} ({names}) VALUES ({', '.join('?' for _ in row)})",
            list(row.values()),
        )


def _record(token: str, bloom: str, received: dt.datetime, **more) -> dict:
    return {
        "record_token": token,
        "nhs_number_token": "a" * 32,
        "given_name_token": "b" * 32,
        "family_name_token": "c" * 32,
        "date_of_birth_token": "d" * 32,
        "given_name_bloom": bloom,
        "_extract_id": f"extract-{received:%m}",
        "_received_at": received,
        **more,
    }


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA landing")
    con.execute("CREATE SCHEMA hub")
    ensure_landing_tables(con, CONTRACTS)
    yield con
    con.close()


@pytest.mark.parametrize("late_first", [False, True])
def test_an_identity_record_has_its_latest_records_features_whatever_the_order(con, late_first):
    # Two attendances of one patient agree on every identity token, but a later extract carries a
    # different given-name Bloom filter (a corrected spelling); a third record has no identity.
    contract, name = _dataset_with("nhs_number_token", "given_name_bloom", "postcode_token")
    rows = [
        _record("r1", "1010", EARLY, postcode_token="e" * 32),
        _record("r2", "0110", LATE, postcode_token="e" * 32),
    ]
    _land(con, name, rows[::-1] if late_first else rows)
    _land(con, name, [{"record_token": "r3", "_extract_id": "x", "_received_at": EARLY}])

    counts = build_person_records(con, [(contract, name)])

    assert counts == {"records": 3, "identity_records": 2}
    assert con.execute(
        "SELECT count(DISTINCT identity_id) FROM hub.record_identity WHERE record_token IN ('r1', 'r2')"
    ).fetchall() == [(1,)]
    person = con.execute(
        "SELECT partner_id, nhs_number_token, given_name_bloom::VARCHAR FROM hub.person_records "
        "WHERE unique_id = (SELECT identity_id FROM hub.record_identity WHERE record_token = 'r1')"
    ).fetchall()
    assert person == [(contract.partner_id, "a" * 32, "0110")]
    # Splink's input keeps every linkage feature, in the same order; record_identity only what
    # the models and checks read from it (the features are read from person_records).
    columns = [r[0] for r in con.execute("DESCRIBE hub.person_records").fetchall()]
    assert columns == ["unique_id", "partner_id", *LINKAGE_FEATURES]
    assert [r[0] for r in con.execute("DESCRIBE hub.record_identity").fetchall()] == [
        "dataset",
        "partner_id",
        "record_token",
        "postcode_token",
        "identity_id",
    ]
    assert con.execute(
        f"SELECT count(*) FROM hub.record_identity WHERE dataset = '{name}' "
        "AND postcode_token IS NOT DISTINCT FROM (CASE WHEN record_token = 'r3' THEN NULL ELSE 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee' END)"
    ).fetchall() == [(3,)]
