"""``hub.record_person`` is updated by what moved (issue 24), and after every kind of month it is
what rebuilding it whole gives: ``hub.record_identity`` joined to ``hub.person_keys``."""

import datetime as dt
import os
import secrets

import duckdb
import pyarrow as pa
import pytest

from pipelines.core.settings import Settings
from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.retention import _delete_extract
from pipelines.hub.withdrawals import apply_withdrawal
from pipelines.linkage import link_person_records
from pipelines.linkage.person_keys import forget_identities
from pipelines.linkage.person_records import build_person_records, landed_datasets

EVENTS, ENROLMENTS = "ae_attendances", "family_support_enrolments"
FULL_JOIN = """SELECT r.dataset, r.partner_id, r.record_token, k.person_key
               FROM hub.record_identity r JOIN hub.person_keys k USING (identity_id)"""


class _Hub:
    """A copy of the small place's hub after a whole run, changed as deliveries, withdrawals and
    retention change a hub, then built and linked as a run does (person records, then linkage)."""

    def __init__(self, settings: Settings):
        self.home = settings.home
        self.day = dt.datetime.fromisoformat(os.environ["PLACELINK_AS_OF"])

    def settings(self, **env: str) -> Settings:
        base = {
            "PLACELINK_HOME": str(self.home),
            "PLACELINK_AS_OF": self.day.isoformat(),
            # Every month here moves many keys of a small place on purpose: the check must let
            # the keys be saved, or there is nothing to compare.
            "PLACELINK_LINKAGE_MAX_LINK_RATE_CHANGE": "1",
            "PLACELINK_LINKAGE_MAX_CLUSTER_SIZE": "100000",
        }
        return Settings.from_env({**base, **env})

    def run(self, leave_out: str | None = None, **env: str):
        """Person records and linkage, as a monthly run; ``leave_out``: a dataset whose agreement
        is no longer in force (its records leave linkage)."""
        settings = self.settings(**env)
        contracts, _ = load_hub_contracts(settings)
        con = connect(settings)
        try:
            sources = [
                (c, name)
                for c, name in landed_datasets(con, contracts, settings.today())
                if name != leave_out
            ]
            build_person_records(con, sources)
            result = link_person_records(con, settings)
        finally:
            con.close()
        assert result.keys_saved, result.check.problems
        return result

    def sql(self, sql: str, params: list | None = None) -> list:
        con = duckdb.connect(str(self.home / "warehouse.duckdb"))
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def deliver(self, dataset: str, extract_id: str, select: str) -> None:
        """Land the rows ``select`` gives (from ``landing.{dataset}`` as ``l``) as ingest lands an
        extract: they replace the rows with the same record token, under the new extract id."""
        self.day += dt.timedelta(days=31)
        con = duckdb.connect(str(self.home / "warehouse.duckdb"))
        try:
            con.execute(f"CREATE TEMP TABLE delivery AS {select}")
            con.execute(
                f"DELETE FROM landing.{dataset} WHERE record_token IN "
                "(SELECT record_token FROM delivery)"
            )
            con.execute(
                f"INSERT INTO landing.{dataset} BY NAME SELECT * REPLACE "
                "(? AS _extract_id, ?::TIMESTAMP AS _received_at) FROM delivery",
                [extract_id, self.day],
            )
        finally:
            con.close()

    def tokens(self, dataset: str, where: str, limit: int) -> list[str]:
        return [
            r[0]
            for r in self.sql(
                f"SELECT record_token FROM landing.{dataset} WHERE {where} "
                f"ORDER BY record_token LIMIT {limit}"
            )
        ]

    def differing_rows(self) -> int:
        return self.sql(f"""
            SELECT (SELECT count(*) FROM (SELECT * FROM hub.record_person EXCEPT ALL {FULL_JOIN}))
                 + (SELECT count(*) FROM ({FULL_JOIN} EXCEPT ALL SELECT * FROM hub.record_person))
        """)[0][0]

    def records(self) -> int:
        return self.sql("SELECT count(*) FROM hub.record_identity")[0][0]


def _token() -> str:
    return secrets.token_hex(16)  # generated here, never a real token


@pytest.fixture(scope="module")
def hub(published_small_hub, tmp_path_factory):
    return _Hub(published_small_hub.copy(tmp_path_factory.mktemp("record_person") / "home"))


def test_record_person_equals_the_full_join_after_every_kind_of_month(hub):
    extract = hub.sql(f"SELECT min(_extract_id) FROM landing.{EVENTS}")[0][0]

    # A hub of an earlier version (no record of what the table was last updated with): the table
    # is rebuilt whole; then a month with nothing new writes no row again.
    hub.sql("DROP TABLE hub.record_person_partitions")
    assert hub.run().record_person_rewritten is None
    assert hub.differing_rows() == 0
    assert hub.run().record_person_rewritten == 0
    assert hub.differing_rows() == 0
    # A manifest of another shape (written by another version) is not compared: rebuilt whole.
    hub.sql("ALTER TABLE hub.record_person_partitions DROP COLUMN features_version")
    assert hub.run().record_person_rewritten is None
    assert hub.run().record_person_rewritten == 0

    # A new month: new records of people already known, new people, and re-sent records whose
    # identity changed (a corrected NHS number): their records move to another identity record.
    resent = ", ".join(f"'{t}'" for t in hub.tokens(EVENTS, "nhs_number_token IS NOT NULL", 20))
    hub.deliver(
        EVENTS,
        "ae-month-2",
        f"""(SELECT * REPLACE (md5(record_token || '-again') AS record_token)
             FROM landing.{EVENTS} ORDER BY md5(record_token || 'a') LIMIT 40)
            UNION ALL
            (SELECT * REPLACE (md5(record_token || '-new') AS record_token,
                               '{_token()}' || row_number() OVER () AS nhs_number_token)
             FROM landing.{EVENTS} ORDER BY md5(record_token || 'b') LIMIT 25)
            UNION ALL
            SELECT * REPLACE ('{_token()}' AS nhs_number_token) FROM landing.{EVENTS}
            WHERE record_token IN ({resent})""",
    )
    month = hub.run()
    # The delivery's records and those of the identity records whose key moved; the A&E extract
    # that lost the re-sent records is not written again.
    assert 85 <= month.record_person_rewritten < 1000
    assert month.key_changes.new > 0
    assert hub.differing_rows() == 0

    # The same extract landed again with changed rows (same rows counted, another fingerprint).
    again = ", ".join(f"'{t}'" for t in hub.tokens(EVENTS, "_extract_id = 'ae-month-2'", 10))
    hub.deliver(
        EVENTS,
        "ae-month-2",
        f"""SELECT * REPLACE ('{_token()}' AS nhs_number_token) FROM landing.{EVENTS}
            WHERE record_token IN ({again})""",
    )
    assert hub.run().record_person_rewritten >= 85
    assert hub.differing_rows() == 0

    # A withdrawal, as ingest applies it (with the key history's erasure).
    settings = hub.settings()
    contracts, _ = load_hub_contracts(settings)
    contract = next(c for c in contracts.values() if ENROLMENTS in c.datasets)
    con = connect(settings)
    try:
        tokens = [
            r[0]
            for r in con.execute(
                f"SELECT record_token FROM landing.{ENROLMENTS} ORDER BY record_token LIMIT 15"
            ).fetchall()
        ]
        withdrawal = apply_withdrawal(
            con,
            contract,
            ENROLMENTS,
            pa.table({"record_token": tokens}),
            "w-1",
            None,
            settings.now(),
            forget_identities,
        )
    finally:
        con.close()
    assert withdrawal.landing_rows == 15
    assert hub.run().record_person_rewritten < 1000
    assert hub.differing_rows() == 0

    # Retention deletes a whole extract: the first month's A&E extract.
    con = connect(hub.settings())
    try:
        landing_rows, _, _ = _delete_extract(None, con, extract, EVENTS, stored_as=None)
    finally:
        con.close()
    assert landing_rows > 0
    retained = hub.run()
    assert retained.record_person_rewritten is not None
    assert hub.differing_rows() == 0

    # Merges: the kept pairs linked again at a looser threshold.
    merged = hub.run(PLACELINK_LINKAGE_THRESHOLD="0.5")
    assert merged.key_changes.merges > 0
    assert 0 < merged.record_person_rewritten < hub.records() / 2
    assert hub.differing_rows() == 0

    # Splits: at a stricter one.
    split = hub.run(PLACELINK_LINKAGE_THRESHOLD="0.99999")
    assert split.key_changes.splits > 0
    assert 0 < split.record_person_rewritten < hub.records()
    assert hub.differing_rows() == 0

    # A dataset leaves linkage (its agreement no longer in force): its records' rows go.
    left = hub.run(leave_out=ENROLMENTS, PLACELINK_LINKAGE_THRESHOLD="0.99999")
    assert left.record_person_rewritten is not None
    assert hub.sql(f"SELECT count(*) FROM hub.record_person WHERE dataset = '{ENROLMENTS}'") == [
        (0,)
    ]
    assert hub.differing_rows() == 0

    # ... and comes back.
    back = hub.run(PLACELINK_LINKAGE_THRESHOLD="0.99999")
    assert back.record_person_rewritten > 0
    assert hub.differing_rows() == 0


def test_a_run_whose_check_fails_leaves_record_person_and_the_next_catches_up(
    published_small_hub, tmp_path
):
    # The check fails (no link-rate change allowed at all): neither the keys nor hub.record_person
    # change, and the next run that passes writes again what moved since the last saved keys.
    hub = _Hub(published_small_hub.copy(tmp_path / "home"))
    hub.run()
    before = hub.sql("SELECT * FROM hub.record_person ORDER BY ALL")
    hub.deliver(
        EVENTS,
        "ae-month-2",
        f"""SELECT * REPLACE (md5(record_token || '-new') AS record_token,
                              '{_token()}' || row_number() OVER () AS nhs_number_token)
            FROM landing.{EVENTS} ORDER BY md5(record_token || 'c') LIMIT 200""",
    )
    settings = hub.settings(
        PLACELINK_LINKAGE_MAX_LINK_RATE_CHANGE="0", PLACELINK_LINKAGE_MAX_CLUSTER_SIZE="1"
    )
    contracts, _ = load_hub_contracts(settings)
    con = connect(settings)
    try:
        build_person_records(con, landed_datasets(con, contracts, settings.today()))
        failed = link_person_records(con, settings)
    finally:
        con.close()
    assert not failed.keys_saved
    assert hub.sql("SELECT * FROM hub.record_person ORDER BY ALL") == before
    assert hub.run().record_person_rewritten >= 200
    assert hub.differing_rows() == 0
