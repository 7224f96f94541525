"""Person records: one row per landed record in hub.record_identity, one per identity record in
hub.person_records, whose features do not depend on the order the landed rows are read in; built
by landing partition, equal to a full build after any change, and whole after a stopped build."""

import datetime as dt
import random

import duckdb
import pyarrow as pa
import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import load_contracts
from pipelines.governance.retention import _delete_extract
from pipelines.hub.ingest import ensure_landing_tables
from pipelines.hub.withdrawals import apply_withdrawal
from pipelines.linkage import person_records
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
        "extract_id",
    ]
    assert con.execute(
        f"SELECT count(*) FROM hub.record_identity WHERE dataset = '{name}' "
        "AND postcode_token IS NOT DISTINCT FROM (CASE WHEN record_token = 'r3' THEN NULL ELSE 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee' END)"
    ).fetchall() == [(3,)]


def test_records_of_one_identity_in_two_datasets_received_together_take_the_later_datasets(con):
    # Same partner, same identity tokens, same received time: the larger dataset name wins the
    # tie. Each record is row 0 of its landing table, so the features must be read from the
    # right table, not just the right row.
    nhs = [
        c
        for c in CONTRACTS.values()
        if {"ae_attendances", "emergency_admissions"} <= set(c.datasets)
    ]
    contract = nhs[0]
    _land(con, "ae_attendances", [_record("r1", "1010", LATE)])
    _land(con, "emergency_admissions", [_record("r2", "0110", LATE)])
    sources = [(contract, "emergency_admissions"), (contract, "ae_attendances")]

    assert build_person_records(con, sources) == {"records": 2, "identity_records": 1}
    assert con.execute(
        "SELECT partner_id, given_name_bloom::VARCHAR FROM hub.person_records"
    ).fetchall() == [(contract.partner_id, "0110")]


def test_a_full_build_fits_a_memory_limit_that_the_widest_features_do_not(con, tmp_path):
    # Issue 24: choosing each identity record's latest record by an arg_max over all its features
    # held a copy of them per identity record in memory DuckDB cannot spill, and the full build at
    # 1M people ran out of the default 3GB limit (docs/benchmarks.md, sixth round). Here 20,000
    # identity records of three records each, with wide features, under a limit that the old
    # grouping ran out of (measured: it needed between 75MB and 100MB; this one about 40MB).
    contract, name = _dataset_with("given_name_bloom", "family_name_bloom")
    have = set(contract.datasets[name].columns)
    values = ", ".join(
        f"md5(i::VARCHAR) AS {f}"
        if f in person_records.IDENTITY_KEY and f != "sex"
        else f"bitstring(CASE WHEN k = 2 THEN '1' ELSE '0' END, 1000) AS {f}"
        if t == "BIT"
        else f"md5(k::VARCHAR || i::VARCHAR || '{f}') AS {f}"
        for f, t in LINKAGE_FEATURES.items()
        if f in have and f != "sex"
    )
    con.execute(f"""
        INSERT INTO landing.{name} BY NAME
        SELECT md5('r' || i || '-' || k) AS record_token, 'x' || k AS _extract_id,
               TIMESTAMP '2026-10-01' + to_days(CAST(k AS INTEGER)) AS _received_at, {values}
        FROM range(20000) a(i), range(3) b(k)""")
    con.execute("SET temp_directory = ?", [str(tmp_path)])
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '64MB'")

    assert build_person_records(con, [(contract, name)]) == {
        "records": 60000,
        "identity_records": 20000,
    }
    # Every identity record has its latest (third) record's features.
    assert con.execute(
        "SELECT count(*) FROM hub.person_records WHERE given_name_bloom = bitstring('1', 1000)"
    ).fetchall() == [(20000,)]


# --- built by partition (issue 24) -------------------------------------------------------------

BUILT_TABLES = (
    "hub.record_identity",
    "hub.person_records",
    "hub.person_record_partitions",
    "hub.person_record_partition_identities",
)


class _Place:
    """Landed deliveries of a few datasets of two partners, landed as ingest lands them: an
    extract's rows replace earlier rows with the same record token, under the new extract id."""

    def __init__(self, con, seed: int):
        self.con = con
        self.rng = random.Random(seed)
        # A small population, so people recur across extracts and datasets.
        self.people = [self._person() for _ in range(40)]

    def _token(self) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(32))

    def _person(self) -> dict:
        # Some without an NHS number or a date of birth: those without both stay on their own.
        return {
            "nhs_number_token": self._token() if self.rng.random() < 0.7 else None,
            "given_name_token": self._token(),
            "family_name_token": self._token(),
            "date_of_birth_token": self._token() if self.rng.random() < 0.9 else None,
            "sex": self.rng.choice(["F", "M"]),
        }

    def record(self, token: str | None = None) -> dict:
        person = self.rng.choice(self.people)
        return {
            "record_token": token or self._token(),
            **person,
            # Derived from the clear values: can differ between records of one identity.
            "given_name_bloom": "".join(self.rng.choice("01") for _ in range(16)),
            "postcode_token": self.rng.choice([self._token(), None]),
        }

    def deliver(self, name: str, extract_id: str, received: dt.datetime, rows: list[dict]):
        con = self.con
        con.register("delivery", pa.Table.from_pylist(rows))
        try:
            con.execute(
                f"DELETE FROM landing.{name} WHERE record_token IN (SELECT record_token FROM delivery)"
            )
            con.execute(
                f"INSERT INTO landing.{name} BY NAME SELECT *, ? AS _extract_id, "
                "CAST(? AS TIMESTAMP) AS _received_at FROM delivery",
                [extract_id, received],
            )
        finally:
            con.unregister("delivery")

    def tokens(self, name: str, extract_id: str | None = None) -> list[str]:
        where = "" if extract_id is None else f"WHERE _extract_id = '{extract_id}'"
        return [
            r[0]
            for r in self.con.execute(
                f"SELECT record_token FROM landing.{name} {where} ORDER BY record_token"
            ).fetchall()
        ]


def _snapshot(con, suffix: str) -> None:
    for table in BUILT_TABLES:
        con.execute(f"CREATE OR REPLACE TABLE {table}_{suffix} AS SELECT * FROM {table}")


def _differing_rows(con, a: str, b: str) -> int:
    return con.execute(
        f"SELECT (SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})) "
        f"+ (SELECT count(*) FROM (SELECT * FROM {b} EXCEPT ALL SELECT * FROM {a}))"
    ).fetchall()[0][0]


def _assert_equals_full_build(con, sources) -> None:
    """The tables built so far equal a full build from the same landing tables; left as they were."""
    _snapshot(con, "built")
    build_person_records(con, sources, full=True)
    for table in ("hub.record_identity", "hub.person_records"):
        assert (
            con.execute(f"SELECT count(*) FROM {table}").fetchall()
            == con.execute(f"SELECT count(*) FROM {table}_built").fetchall()
        )
        assert _differing_rows(con, table, f"{table}_built") == 0, table
    for table in BUILT_TABLES:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {table}_built")
        con.execute(f"DROP TABLE {table}_built")


def _sources(*names: str):
    return [(c, name) for c in CONTRACTS.values() for name in c.datasets if name in names]


@pytest.fixture
def hub(con):
    con.execute(
        "CREATE TABLE hub.withdrawn_records (contract_id VARCHAR, dataset VARCHAR, "
        "record_token VARCHAR, withdrawal_id VARCHAR, reason VARCHAR, withdrawn_at TIMESTAMP, "
        "PRIMARY KEY (dataset, record_token))"
    )
    return con


@pytest.mark.parametrize("seed", [1, 2])
def test_built_by_partition_equals_a_full_build_after_every_kind_of_change(hub, seed):
    con, place = hub, _Place(hub, seed)
    council, events, vcs = "csc_referrals", "ae_attendances", "family_support_enrolments"
    everything = _sources(council, events, vcs)
    month = [dt.datetime(2026, m, 3, 7, 0) for m in range(1, 7)]

    council_rows = [place.record() for _ in range(30)]
    place.deliver(council, "council-01", month[0], council_rows)
    place.deliver(events, "ae-01", month[0], [place.record() for _ in range(40)])
    place.deliver(vcs, "vcs-01", month[0], [place.record() for _ in range(15)])
    # A record with no identity to speak of stays on its own.
    place.deliver(vcs, "vcs-01b", month[0], [{"record_token": "lonely"}])
    first = build_person_records(con, everything)
    assert first["records"] == 86
    _assert_equals_full_build(con, everything)

    # A new month's extract.
    place.deliver(events, "ae-02", month[1], [place.record() for _ in range(40)])
    build_person_records(con, everything)
    _assert_equals_full_build(con, everything)

    # A re-sent record token: the record moves to the new extract, with new features.
    resent = place.tokens(events, "ae-01")[:3]
    place.deliver(events, "ae-03", month[2], [place.record(t) for t in resent])
    build_person_records(con, everything)
    _assert_equals_full_build(con, everything)

    # A withdrawal, as the hub applies it (it deletes from hub.record_identity too).
    withdrawn = place.tokens(events)[5:9] + place.tokens(vcs, "vcs-01")[:2]
    for name, tokens in ((events, withdrawn[:4]), (vcs, withdrawn[4:])):
        contract = next(c for c, n in everything if n == name)
        apply_withdrawal(
            con,
            contract,
            name,
            pa.table({"record_token": tokens}),
            f"w-{name}",
            None,
            month[3],
            lambda con, erased, now: 0,
        )
    build_person_records(con, everything)
    _assert_equals_full_build(con, everything)

    # A retention deletion of a whole extract, as retention deletes one.
    _delete_extract(None, con, "ae-01", events, stored_as=None)
    build_person_records(con, everything)
    _assert_equals_full_build(con, everything)

    # The council re-sends its whole dataset (some records changed, some new).
    snapshot = [place.record(t) for t in place.tokens(council)] + [place.record() for _ in range(5)]
    place.deliver(council, "council-05", month[4], snapshot)
    assert place.tokens(council, "council-01") == []
    build_person_records(con, everything)
    _assert_equals_full_build(con, everything)

    # The VCS partner's agreement is no longer in force: its dataset leaves linkage.
    in_force = _sources(council, events)
    counts = build_person_records(con, in_force)
    assert con.execute(
        f"SELECT count(*) FROM hub.record_identity WHERE dataset = '{vcs}'"
    ).fetchall() == [(0,)]
    assert counts["records"] == len(place.tokens(council)) + len(place.tokens(events))
    _assert_equals_full_build(con, in_force)

    # ... and in force again, with a new month beside it: its rows come back.
    place.deliver(events, "ae-06", month[5], [place.record() for _ in range(10)])
    build_person_records(con, everything)
    _assert_equals_full_build(con, everything)


def test_an_unchanged_place_leaves_the_tables_as_they_are(hub):
    place = _Place(hub, 7)
    sources = _sources("ae_attendances")
    place.deliver("ae_attendances", "ae-01", EARLY, [place.record() for _ in range(20)])
    build_person_records(hub, sources)
    _snapshot(hub, "before")

    assert build_person_records(hub, sources)["records"] == 20

    for table in BUILT_TABLES:
        assert _differing_rows(hub, table, f"{table}_before") == 0, table


def test_a_partition_that_lost_and_gained_as_many_rows_is_rebuilt(hub):
    # Not a path ingest takes (an extract's rows land once), but the fingerprint, not only the
    # count, decides that a partition is unchanged.
    place = _Place(hub, 10)
    sources = _sources("ae_attendances")
    place.deliver("ae_attendances", "ae-01", EARLY, [place.record() for _ in range(20)])
    build_person_records(hub, sources)
    gone = place.tokens("ae_attendances")[0]
    hub.execute(f"DELETE FROM landing.ae_attendances WHERE record_token = '{gone}'")
    place.deliver("ae_attendances", "ae-01", EARLY, [place.record()])

    build_person_records(hub, sources)

    assert hub.execute(
        f"SELECT count(*) FROM hub.record_identity WHERE record_token = '{gone}'"
    ).fetchall() == [(0,)]
    _assert_equals_full_build(hub, sources)


def test_a_change_in_what_a_feature_is_rebuilds_everything(hub, monkeypatch):
    # The stamp of the feature definitions differs from the last build's: nothing is kept.
    place = _Place(hub, 8)
    sources = _sources("ae_attendances")
    place.deliver("ae_attendances", "ae-01", EARLY, [place.record() for _ in range(20)])
    build_person_records(hub, sources)
    hub.execute("UPDATE hub.person_records SET given_name_bloom = NULL")  # what an old rule made

    monkeypatch.setattr(person_records, "FEATURES_VERSION", "next")
    build_person_records(hub, sources)

    assert hub.execute(
        "SELECT count(*) FROM hub.person_records WHERE given_name_bloom IS NULL"
    ).fetchall() == [(0,)]
    assert hub.execute(
        "SELECT DISTINCT features_version FROM hub.person_record_partitions"
    ).fetchall() == [("next",)]


class _StopsAt:
    """A connection that fails at its ``n``-th statement, as a run killed there would stop."""

    def __init__(self, con, n: int):
        self.con, self.left, self.statements = con, n, []

    def execute(self, sql, params=None):
        self.statements.append(sql)
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt("killed")
        return self.con.execute(sql, params or [])

    def __getattr__(self, name):
        return getattr(self.con, name)


@pytest.mark.parametrize("full", [False, True])
def test_a_build_stopped_anywhere_leaves_the_last_build_and_the_next_one_repairs(hub, full):
    place = _Place(hub, 9)
    sources = _sources("csc_referrals", "ae_attendances")
    place.deliver("ae_attendances", "ae-01", EARLY, [place.record() for _ in range(20)])
    place.deliver("csc_referrals", "c-01", EARLY, [place.record() for _ in range(10)])
    build_person_records(hub, sources)
    place.deliver("ae_attendances", "ae-02", LATE, [place.record() for _ in range(20)])
    resent = place.tokens("csc_referrals")[:4]
    place.deliver("csc_referrals", "c-02", LATE, [place.record(t) for t in resent])
    _snapshot(hub, "before")
    counting = _StopsAt(hub, 0)
    build_person_records(counting, sources, full=full)  # which statements a build runs
    commit = counting.statements.index("COMMIT") + 1
    for table in BUILT_TABLES:
        hub.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {table}_before")

    # Stopped at every third statement, and at the commit.
    for n in [*range(1, commit, 3), commit]:
        with pytest.raises(KeyboardInterrupt):
            build_person_records(_StopsAt(hub, n), sources, full=full)
        for table in BUILT_TABLES:
            assert _differing_rows(hub, table, f"{table}_before") == 0, (n, table)

    build_person_records(hub, sources)
    assert hub.execute(
        "SELECT count(*) FROM information_schema.tables WHERE ends_with(table_name, '__next')"
    ).fetchall() == [(0,)]
    _assert_equals_full_build(hub, sources)


def _latest_records_features(con, sources) -> str:
    """A plain reference for hub.person_records: each identity record's latest record (received
    last, then the larger dataset name and record token), by a window over the landing tables."""
    records = " UNION ALL ".join(
        person_records._dataset_records(contract, name) for contract, name in sources
    )
    return f"""
        SELECT {person_records._identity_id()} AS unique_id, partner_id, {", ".join(LINKAGE_FEATURES)}
        FROM ({records})
        QUALIFY row_number() OVER (PARTITION BY unique_id
                                   ORDER BY _received_at DESC, dataset DESC, record_token DESC) = 1"""


@pytest.mark.parametrize("checkpoint", [False, True])
def test_features_are_the_latest_records_after_landed_rows_were_deleted(tmp_path, checkpoint):
    # The build reads each identity record's features back from its landing table by row
    # position. Re-sent records and withdrawals delete landed rows, leaving gaps, which a
    # checkpoint may compact (moving rows); whichever, the features are the latest record's.
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute("CREATE SCHEMA landing")
    con.execute("CREATE SCHEMA hub")
    ensure_landing_tables(con, CONTRACTS)
    place = _Place(con, 11)
    events, council = "ae_attendances", "csc_referrals"
    sources = _sources(council, events)
    place.deliver(events, "ae-01", EARLY, [place.record() for _ in range(60)])
    place.deliver(council, "c-01", EARLY, [place.record() for _ in range(30)])
    build_person_records(con, sources)
    place.deliver(events, "ae-02", LATE, [place.record(t) for t in place.tokens(events)[::3]])
    gone = place.tokens(council)[::4]
    con.execute(f"DELETE FROM landing.{council} WHERE list_contains(?, record_token)", [gone])
    if checkpoint:
        con.execute("CHECKPOINT")

    build_person_records(con, sources)  # by partition
    assert (
        _differing_rows(con, "hub.person_records", f"({_latest_records_features(con, sources)})")
        == 0
    )
    build_person_records(con, sources, full=True)
    assert (
        _differing_rows(con, "hub.person_records", f"({_latest_records_features(con, sources)})")
        == 0
    )
    con.close()
