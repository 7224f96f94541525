"""Retention with a fake clock: only extracts past their agreement's retention go, and it is audited."""

import datetime as dt

import pytest

from pipelines.core.warehouse import connect
from pipelines.governance.audit import AuditLog
from pipelines.governance.retention import add_months, apply_retention
from pipelines.hub.ingest import receive_inbox
from pipelines.linkage.person_keys import forget_identities
from pipelines.linkage.person_records import build_person_records, landed_datasets

RECEIVED = dt.datetime(2026, 10, 5, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def hub(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "hub")
    con = connect(settings)
    contracts = small_place.contracts
    receipts = receive_inbox(
        settings,
        con,
        contracts,
        {},
        AuditLog(settings.audit_dir),
        now=RECEIVED,
        erase_identities=forget_identities,
    )
    assert all(r.status == "accepted" for r in receipts)
    build_person_records(con, landed_datasets(con, contracts, RECEIVED.date()))
    yield settings, con, contracts
    con.close()


def _count(con, sql):
    return con.execute(sql).fetchone()[0]


def test_add_months_keeps_to_real_calendar_days():
    assert add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2026, 10, 5), 60) == dt.date(2031, 10, 5)
    assert add_months(dt.date(2024, 2, 29), 12) == dt.date(2025, 2, 28)


def test_nothing_is_deleted_inside_the_retention_period(hub):
    settings, con, contracts = hub
    vaulted = sorted(settings.vault.rglob("*.plx"))
    # the VCS agreement keeps extracts 60 months: the last day is 2031-10-05
    result = apply_retention(
        settings,
        con,
        contracts,
        AuditLog(settings.audit_dir),
        now=dt.datetime(2031, 10, 5, 23, 0, tzinfo=dt.UTC),
    )
    assert result.deleted == []
    assert sorted(settings.vault.rglob("*.plx")) == vaulted
    assert not [
        e for e in AuditLog(settings.audit_dir).events() if e["event"] == "retention_deleted"
    ]


def test_extracts_past_retention_are_deleted_with_their_derived_rows(hub, small_place):
    settings, con, contracts = hub
    vcs_rows = small_place.extract("family_support_enrolments").rows_out
    other_landing = _count(con, "SELECT count(*) FROM landing.ae_attendances")
    outside = settings.home / "keep-me.parquet"
    outside.write_bytes(b"not in the vault")
    audit = AuditLog(settings.audit_dir)

    # one day after the VCS agreement's 60 months; the NHS and council keep 84 months
    result = apply_retention(
        settings, con, contracts, audit, now=dt.datetime(2031, 10, 6, 1, 0, tzinfo=dt.UTC)
    )

    assert [(d.contract_id, d.dataset) for d in result.deleted] == [
        ("vcs-family-support", "family_support_enrolments")
    ]
    assert result.deleted[0].landing_rows == vcs_rows and result.deleted[0].file_deleted
    assert _count(con, "SELECT count(*) FROM landing.family_support_enrolments") == 0
    assert (
        _count(
            con,
            "SELECT count(*) FROM hub.record_identity WHERE dataset = 'family_support_enrolments'",
        )
        == 0
    )
    assert not list((settings.vault / "vcs-family-support").glob("*.plx"))
    # everything else is untouched
    assert _count(con, "SELECT count(*) FROM landing.ae_attendances") == other_landing
    assert list((settings.vault / "nhs-acute-mental-health").glob("*.plx"))
    assert outside.exists()

    events = [e for e in audit.events() if e["event"] == "retention_deleted"]
    assert len(events) == 1
    assert (
        events[0]["contract"] == "vcs-family-support"
        and events[0]["landing_rows_deleted"] == vcs_rows
    )
    assert events[0]["retain_until"] == "2031-10-05" and events[0]["file_deleted"] is True
    assert audit.verify() is None

    # running again the same day deletes nothing more and writes no new deletion event
    again = apply_retention(
        settings, con, contracts, audit, now=dt.datetime(2031, 10, 6, 2, 0, tzinfo=dt.UTC)
    )
    assert again.deleted == []
    assert sum(e["event"] == "retention_deleted" for e in audit.events()) == 1


def test_after_the_longest_retention_every_extract_is_gone(hub):
    settings, con, contracts = hub
    result = apply_retention(
        settings,
        con,
        contracts,
        AuditLog(settings.audit_dir),
        now=dt.datetime(2033, 10, 6, tzinfo=dt.UTC),
    )
    assert len(result.deleted) == 7
    assert not list(settings.vault.rglob("*.plx"))
    for dataset in ("ae_attendances", "csc_referrals", "family_support_enrolments"):
        assert _count(con, f"SELECT count(*) FROM landing.{dataset}") == 0


def test_extract_of_an_unknown_contract_is_kept_and_reported(hub):
    settings, con, contracts = hub
    without_vcs = {k: v for k, v in contracts.items() if k != "vcs-family-support"}
    result = apply_retention(
        settings,
        con,
        without_vcs,
        AuditLog(settings.audit_dir),
        now=dt.datetime(2040, 1, 1, tzinfo=dt.UTC),
    )
    assert len(result.kept_unknown_contract) == 1
    assert _count(con, "SELECT count(*) FROM landing.family_support_enrolments") > 0
    skipped = [
        e for e in AuditLog(settings.audit_dir).events() if e["event"] == "retention_skipped"
    ]
    assert skipped and "contracts check" in skipped[0]["reason"]
