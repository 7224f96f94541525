"""Housekeeping: stored paths relative to the hub's home (a moved hub still deletes its expired
envelopes; old absolute rows are migrated), and held files purged from quarantine after the
configured time, audited, touching nothing else."""

import datetime as dt
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.core.settings import Settings
from pipelines.core.stored_paths import relative_stored
from pipelines.core.warehouse import connect
from pipelines.governance.audit import AuditLog, hub_audit_log
from pipelines.governance.retention import apply_retention
from pipelines.hub.housekeeping import purge_quarantine
from pipelines.hub.ingest import receive_inbox
from pipelines.linkage.person_keys import forget_identities

RECEIVED = dt.datetime(2026, 10, 5, 8, 0, tzinfo=dt.UTC)
AFTER_VCS_RETENTION = dt.datetime(2031, 10, 6, 1, 0, tzinfo=dt.UTC)


def _receive(settings, con, contracts):
    receive_inbox(
        settings,
        con,
        contracts,
        {},
        hub_audit_log(settings),
        now=RECEIVED,
        erase_identities=forget_identities,
    )


def _stored(settings):
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return dict(con.execute("SELECT file_name, stored_as FROM hub.deliveries").fetchall())
    finally:
        con.close()


def test_a_moved_hub_still_finds_and_deletes_its_expired_envelopes(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "old-place", datasets=["family_support_enrolments"])
    (settings.inbox / "broken.plx").write_bytes(b"not an envelope")
    con = connect(settings)
    _receive(settings, con, small_place.contracts)
    con.close()
    stored = _stored(settings)
    assert stored["broken.plx"] == "quarantine/broken.plx"
    (envelope,) = [v for k, v in stored.items() if k != "broken.plx"]
    assert envelope.startswith("vault/vcs-family-support/") and (settings.home / envelope).is_file()

    moved = Settings.from_env({"PLACELINK_HOME": str(tmp_path / "new-place")})
    shutil.move(settings.home, moved.home)
    con = connect(moved)
    try:
        result = apply_retention(
            moved, con, small_place.contracts, hub_audit_log(moved), now=AFTER_VCS_RETENTION
        )
    finally:
        con.close()
    assert [d.file_deleted for d in result.deleted] == [True]
    assert not (moved.home / envelope).exists()


def test_absolute_paths_written_before_are_made_relative_once_and_audited(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "hub", datasets=["family_support_enrolments"])
    con = connect(settings)
    _receive(settings, con, small_place.contracts)
    # as an older hub wrote them: absolute, and from a folder the hub has since left
    con.execute("UPDATE hub.deliveries SET stored_as = '/srv/old-hub/' || stored_as")
    con.execute(
        "INSERT INTO hub.deliveries (file_name, received_at, status, stored_as) "
        "VALUES ('elsewhere.plx', now(), 'quarantined', '/tmp/not-a-hub-file.plx')"
    )
    result = apply_retention(
        settings, con, small_place.contracts, hub_audit_log(settings), now=AFTER_VCS_RETENTION
    )
    rows = dict(con.execute("SELECT file_name, stored_as FROM hub.deliveries").fetchall())
    con.close()
    assert [d.file_deleted for d in result.deleted] == [True]
    assert all(v.startswith("vault/") for k, v in rows.items() if k != "elsewhere.plx")
    assert (
        rows["elsewhere.plx"] == "/tmp/not-a-hub-file.plx"
    )  # neither vault nor quarantine: left as it was
    (migrated,) = [
        e for e in hub_audit_log(settings).events() if e["event"] == "stored_paths_migrated"
    ]
    assert migrated["paths"] == 1


@pytest.mark.parametrize(
    "stored, relative",
    [
        ("/srv/hub/vault/c/a.plx", "vault/c/a.plx"),
        ("/home/x/.placelink/quarantine/b.plx.1", "quarantine/b.plx.1"),
        ("/data/vault/hub/vault/c/a.plx", "vault/c/a.plx"),  # the last vault folder is the hub's
        ("/tmp/other.plx", None),
    ],
)
def test_an_absolute_path_from_another_folder_is_read_from_its_vault_or_quarantine_on(
    stored, relative
):
    assert relative_stored(stored, Path("/elsewhere")) == relative


def _hold(quarantine, name, received_at, check="format"):
    (quarantine / name).write_bytes(b"held bytes")
    (quarantine / f"{name}.reason.json").write_text(
        json.dumps(
            {
                "file": name,
                "received_at": received_at.isoformat(timespec="seconds"),
                "check": check,
                "contract": "nhs-acute-mental-health v1.0.0",
                "expected": "x",
                "found": "y",
                "action": "z",
            }
        )
    )


def test_held_files_older_than_the_setting_are_purged_and_audited_and_nothing_else(tmp_path):
    quarantine = tmp_path / "quarantine"
    (quarantine / "released").mkdir(parents=True)
    now = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
    _hold(quarantine, "old.plx", now - dt.timedelta(days=91))
    _hold(quarantine, "recent.plx", now - dt.timedelta(days=89), check="quality")
    (quarantine / "released" / "earlier.plx.reason.json").write_text("{}")
    precious = tmp_path / "precious.parquet"
    precious.write_bytes(b"not the hub's to delete")
    (quarantine / "linked.plx").symlink_to(precious)
    (quarantine / "linked.plx.reason.json").write_text(
        json.dumps(
            {"file": "linked.plx", "received_at": "2026-01-01T00:00:00+00:00", "check": "format"}
        )
    )
    (quarantine / "unreadable.plx.reason.json").write_text("{not json")
    audit = AuditLog(tmp_path / "audit")

    purged = purge_quarantine(quarantine, 90, audit, now)

    assert sorted(p.held_as for p in purged) == ["linked.plx", "old.plx"]
    assert sorted(p.name for p in quarantine.iterdir()) == [
        "recent.plx",
        "recent.plx.reason.json",
        "released",
        "unreadable.plx.reason.json",
    ]
    assert precious.read_bytes() == b"not the hub's to delete"  # the link went, not its target
    assert (quarantine / "released" / "earlier.plx.reason.json").exists()
    events = [e for e in audit.events() if e["event"] == "quarantine_purged"]
    assert [(e["file"], e["check"], e["kept_days"]) for e in events] == [
        ("linked.plx", "format", 90),
        ("old.plx", "format", 90),
    ]
    assert audit.verify() is None
    assert (
        purge_quarantine(quarantine, 0, audit, now + dt.timedelta(days=400)) == []
    )  # 0 keeps for ever


def test_the_keep_days_setting_is_read_from_the_environment(tmp_path):
    assert Settings.from_env({"PLACELINK_HOME": str(tmp_path)}).quarantine_keep_days == 90
    assert (
        Settings.from_env(
            {"PLACELINK_HOME": str(tmp_path), "PLACELINK_QUARANTINE_KEEP_DAYS": "30"}
        ).quarantine_keep_days
        == 30
    )
    with pytest.raises(ValueError, match="PLACELINK_QUARANTINE_KEEP_DAYS is 'soon'"):
        Settings.from_env(
            {"PLACELINK_HOME": str(tmp_path), "PLACELINK_QUARANTINE_KEEP_DAYS": "soon"}
        )
