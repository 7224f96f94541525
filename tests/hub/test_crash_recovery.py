"""Ingest killed at every step boundary, then run again: nothing lost, nothing twice.

Each case runs ingest in a child process with ``PLACELINK_FAULT=ingest:<step>`` (it kills
itself with SIGKILL there: no cleanup of any kind; tests/hub/killed_ingest.py), then runs it again here and checks what a
data team and an IG officer would: every delivery's rows landed once, one accepted or held
audit event per delivery and a chain that verifies, every envelope in exactly one of the
inbox / vault / quarantine, quarantine list and release working.
"""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess

import pytest

from pipelines.core.settings import Settings
from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import AuditLog, hub_audit_log
from pipelines.hub.ingest import receive_inbox
from pipelines.hub.journal import INGEST_STEPS, ReceivedLedger, inbox_files
from pipelines.hub.quarantine import REASON_SUFFIX, held_files, release
from pipelines.linkage.person_keys import forget_identities
from tests.hub.killed_ingest import receive_killed
from tests.hub.test_ingest import NOW

GOOD = ("emergency_admissions", "family_support_enrolments")
BAD = "zz broken.plx"  # last in name order: the accepted files come first


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_killed(settings, step):
    """Ingest in a child process killed at ``step``; returns its exit status."""
    env = {
        **os.environ,
        "PLACELINK_HOME": str(settings.home),
        "PLACELINK_CONTRACTS": str(settings.contracts_dir),
        "PLACELINK_FAULT": f"ingest:{step}",
    }
    # Output to a file, not a pipe: a process the killed one left behind must not hold the test.
    log = settings.home.parent / f"killed at {step}.log"
    status = receive_killed(env, NOW, log, timeout=600)
    assert status == -signal.SIGKILL, (step, status, log.read_text()[-3000:])


def _receive_again(settings):
    contracts, problems = load_hub_contracts(settings)
    con = connect(settings)
    try:
        return receive_inbox(
            settings,
            con,
            contracts,
            problems,
            hub_audit_log(settings),
            now=NOW,
            erase_identities=forget_identities,
        )
    finally:
        con.close()


@contextlib.contextmanager
def _unchangeable(folder):
    """``folder`` as an SFTP drop folder often is to the hub: files can be read, not moved or removed."""
    if os.geteuid() == 0:  # root ignores permission bits; an immutable folder stops it too
        if (
            shutil.which("chattr") is None
            or subprocess.run(["chattr", "+i", str(folder)]).returncode
        ):
            pytest.skip("cannot make a folder unchangeable for root here (chattr +i)")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def _staged(small_place, root):
    settings = small_place.stage_hub(root / "home", datasets=list(GOOD))
    (settings.inbox / BAD).write_bytes(b"")  # held by the format check
    sent = {p.name: _sha(p) for p in settings.inbox.iterdir()}
    return Settings.from_env(
        {"PLACELINK_HOME": str(settings.home), "PLACELINK_AS_OF": os.environ["PLACELINK_AS_OF"]}
    ), sent


def _check_everything_once(small_place, settings, sent, read_only):
    con = connect(settings)
    try:
        deliveries = con.execute(
            "SELECT file_name, status, extract_id, stored_as FROM hub.deliveries"
        ).fetchall()
        for dataset in GOOD:
            rows, extracts = con.execute(
                f"SELECT count(*), count(DISTINCT _extract_id) FROM landing.{dataset}"
            ).fetchone()
            assert (rows, extracts) == (small_place.extract(dataset).rows_out, 1), dataset
        assert not con.execute("SELECT count(*) FROM hub.pending_audit").fetchone()[0]
    finally:
        con.close()
    # one record per delivery, no false replay, every stored_as names a file that is there
    assert sorted(status for _, status, _, _ in deliveries) == [
        "accepted",
        "accepted",
        "quarantined",
    ], deliveries
    assert all((settings.home / stored_as).is_file() for *_, stored_as in deliveries)

    audit = hub_audit_log(settings)
    events = list(audit.events())
    accepted = [e for e in events if e["event"] == "extract_accepted"]
    held = [e for e in events if e["event"] == "extract_quarantined"]
    assert sorted(e["file"] for e in accepted) == sorted(n for n in sent if n != BAD)
    assert [e["file"] for e in held] == [BAD] and held[0]["check"] == "format"
    assert audit.verify() is None
    audit.append("test_probe")  # the signed head is in step with the log: the hub can write to it

    # every envelope in exactly one place: the vault, quarantine, or (received) the inbox
    def files(folder):
        return [
            p
            for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith(REASON_SUFFIX) and "released" not in p.parts
        ]

    kept = [_sha(p) for folder in (settings.vault, settings.quarantine) for p in files(folder)]
    assert sorted(kept) == sorted(sent.values())
    assert not [
        p
        for p in settings.home.rglob(".*")
        if p.is_file() and "dagster" not in p.parts and p.parent != settings.home
    ]  # no half-made copies, temporary reasons or journals
    assert not list((settings.home / "ingest" / "journal").glob("*"))
    if read_only:
        assert sorted(p.name for p in settings.inbox.iterdir()) == sorted(
            sent
        )  # still there, untouched
        assert all(ReceivedLedger(settings.home).received(settings.inbox / n) for n in sent)
        assert inbox_files(settings) == []
    else:
        assert not list(settings.inbox.iterdir())

    listed = held_files(settings.quarantine)
    assert [(i["file"], i["check"]) for i in listed] == [(BAD, "format")]
    if not read_only:
        back = release(settings.quarantine, listed[0]["held_as"], settings.inbox, audit)
        assert back.name == BAD and not held_files(settings.quarantine)


def _boundaries(read_only):
    steps = [s for s in INGEST_STEPS if s != "recovered"]
    return steps if read_only else [s for s in steps if s != "vault-copied"]  # a move needs no copy


@pytest.mark.parametrize("step", _boundaries(read_only=False))
def test_ingest_killed_at_each_step_is_finished_by_the_next_run(small_place, tmp_path, step):
    settings, sent = _staged(small_place, tmp_path)
    _run_killed(settings, step)
    _receive_again(settings)
    _check_everything_once(small_place, settings, sent, read_only=False)


# Where copying differs from moving; the other boundaries of a read-only inbox run with the slow tests.
_COPY_STEPS = ("vault-copied", "vaulted", "landed", "moved", "hold-recorded", "cleared")


@pytest.mark.parametrize(
    "step",
    [
        s if s in _COPY_STEPS else pytest.param(s, marks=pytest.mark.slow)
        for s in _boundaries(read_only=True)
    ],
)
def test_ingest_from_an_unchangeable_inbox_killed_at_each_step(small_place, tmp_path, step):
    settings, sent = _staged(small_place, tmp_path)
    with _unchangeable(settings.inbox):
        _run_killed(settings, step)
        _receive_again(settings)
        _check_everything_once(small_place, settings, sent, read_only=True)
        again = _receive_again(
            settings
        )  # a later run: nothing waiting, nothing re-landed or replayed
        assert again == []
        _check_everything_once(small_place, settings, sent, read_only=True)


@pytest.mark.parametrize("first", ["landed", "moved"])
def test_recovery_killed_itself_is_finished_by_the_run_after(small_place, tmp_path, first):
    settings, sent = _staged(small_place, tmp_path)
    _run_killed(settings, first)
    _run_killed(settings, "recovered")
    _receive_again(settings)
    _check_everything_once(small_place, settings, sent, read_only=False)
    recovered = [e for e in hub_audit_log(settings).events() if e["event"] == "ingest_recovered"]
    assert recovered and all(e["stopped_after"] and e["action"] for e in recovered)


def test_a_fault_naming_no_step_is_refused():
    with pytest.raises(ValueError, match="PLACELINK_FAULT"):
        Settings.from_env({"PLACELINK_HOME": "/tmp/x", "PLACELINK_FAULT": "ingest:landing"})


# --- what a crash or a partner can leave that is not a journalled step -------------------------


def _receive_here(settings, now=NOW):
    from tests.hub.test_ingest import _receive

    return _receive(settings, now=now)


@pytest.mark.parametrize("how", ["replaced", "rewritten in place"])
def test_a_file_changed_while_it_was_read_is_held_not_landed_as_the_checked_bytes(
    small_place, tmp_path, monkeypatch, how
):
    import pipelines.hub.ingest as ingest

    settings = small_place.stage_hub(tmp_path / "home", datasets=["emergency_admissions"])
    (path,) = settings.inbox.iterdir()
    other = small_place.envelope("family_support_enrolments").envelope_path.read_bytes()
    real_check, swapped = ingest.check_extract, []

    def check_then_change(file, *args, **kwargs):
        opened = real_check(file, *args, **kwargs)
        if (
            file.name == path.name and not swapped
        ):  # the partner's client writes while the hub reads
            if how == "replaced":
                (settings.inbox / ".upload.tmp").write_bytes(other)
                os.replace(settings.inbox / ".upload.tmp", path)
            else:
                with open(path, "r+b") as handle:
                    handle.seek(-1, os.SEEK_END)
                    last = handle.read(1)
                    handle.seek(-1, os.SEEK_END)
                    handle.write(bytes([last[0] ^ 1]))
                os.utime(path, ns=(0, 0))
            swapped.append(_sha(path))
        return opened

    monkeypatch.setattr(ingest, "check_extract", check_then_change)

    receipts, landed = _receive_here(settings)

    receipt = receipts[path.name]
    assert receipt.status == "quarantined" and receipt.check == "unchanged while received"
    assert landed == {}  # nothing of the checked bytes landed under a file that is not them
    con = connect(settings)
    try:
        assert con.execute("SELECT count(*) FROM landing.emergency_admissions").fetchone()[0] == 0
        assert con.execute("SELECT status FROM hub.deliveries").fetchall() == [("quarantined",)]
    finally:
        con.close()
    (held,) = held_files(settings.quarantine)
    assert held["check"] == "unchanged while received" and "release" in held["action"]
    assert (
        _sha(settings.quarantine / held["held_as"]) == swapped[0]
    )  # what arrived is kept, as it is now
    assert not [p for p in settings.vault.rglob("*") if p.is_file()]


def test_stale_temporary_reasons_a_crash_left_are_tidied_and_audited(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "home", datasets=[])
    quarantine = settings.quarantine
    quarantine.mkdir(exist_ok=True)
    # killed after writing a reason, before moving its file: the file stayed in the inbox
    (quarantine / ".gone.plx.reason.json.tmp").write_text(
        json.dumps({"file": "gone.plx", "check": "format"})
    )
    # an older version killed after moving the file, before renaming its reason
    (quarantine / "old.plx").write_bytes(b"held bytes")
    (quarantine / ".old.plx.reason.json.tmp").write_text(
        json.dumps(
            {
                "file": "old.plx",
                "check": "signature",
                "expected": "e",
                "found": "f",
                "action": "a",
                "message": "m",
                "received_at": "2026-10-01T00:00:00+00:00",
            }
        )
    )
    # a reason half written when the run was killed
    (quarantine / "..x.plx.reason.json.tmp.1a2b3c4d.tmp").write_text('{"fi')

    _receive_here(settings)

    assert sorted(p.name for p in quarantine.iterdir()) == ["old.plx", "old.plx.reason.json"]
    assert [(i["file"], i["check"]) for i in held_files(quarantine)] == [("old.plx", "signature")]
    events = list(AuditLog(settings.audit_dir).events())
    removed = [e for e in events if e["event"] == "stale_reason_removed"]
    assert [e["file"] for e in removed] == ["gone.plx"] and "never moved" in removed[0]["reason"]
    assert [e["held_as"] for e in events if e["event"] == "ingest_recovered"] == ["old.plx"]


def test_a_folder_in_the_inbox_is_reported_and_left_while_the_other_deliveries_carry_on(
    small_place, tmp_path
):
    settings = small_place.stage_hub(tmp_path / "home", datasets=["emergency_admissions"])
    folder = settings.inbox / "october upload"
    folder.mkdir()
    shutil.copy2(
        small_place.envelope("family_support_enrolments").envelope_path, folder / "inside.plx"
    )

    receipts, landed = _receive_here(settings)
    again, _ = _receive_here(settings)

    assert landed == {"emergency_admissions": small_place.extract("emergency_admissions").rows_out}
    for seen in (receipts, again):
        ignored = seen["october upload"]
        assert ignored.status == "ignored"
        assert (
            "october upload" in ignored.reason
            and "move the folder out of the inbox" in ignored.reason
        )
    assert (
        folder / "inside.plx"
    ).exists()  # left as it is: nothing a partner sent is moved or changed
    events = [
        e for e in AuditLog(settings.audit_dir).events() if e["event"] == "inbox_entry_ignored"
    ]
    assert [e["file"] for e in events] == ["october upload"]  # audited once, reported every run


def test_an_accepted_envelope_an_older_version_left_in_the_inbox_is_moved_not_called_a_replay(
    small_place, tmp_path
):
    # What the issue found: killed between the commit and the move, before the journal existed.
    settings = small_place.stage_hub(tmp_path / "home", datasets=["emergency_admissions"])
    (path,) = settings.inbox.iterdir()
    _receive_here(settings)
    con = connect(settings)
    try:
        (stored_as,) = con.execute("SELECT stored_as FROM hub.deliveries").fetchone()
        con.execute("ALTER TABLE hub.deliveries ADD COLUMN IF NOT EXISTS delivery_id VARCHAR")
        con.execute(
            "UPDATE hub.deliveries SET delivery_id = NULL"
        )  # as an older version recorded it
    finally:
        con.close()
    os.rename(settings.home / stored_as, path)
    log = AuditLog(settings.audit_dir)
    kept = [e for e in log.events() if e["event"] != "extract_accepted"]
    (accepted,) = [e for e in log.events() if e["event"] == "extract_accepted"]
    log.path.unlink()
    for event in kept:
        fields = {
            k: v for k, v in event.items() if k not in ("at", "event", "actor", "run_id", "prev")
        }
        log.append(event["event"], **fields)

    receipts, _ = _receive_here(settings)

    assert receipts == {}  # nothing was waiting: no false replay
    assert (settings.home / stored_as).is_file() and not list(settings.inbox.iterdir())
    events = list(AuditLog(settings.audit_dir).events())
    assert [e["event"] for e in events].count("extract_accepted") == 1
    # the event recovery writes says what ingest's said, and where the envelope was put (an
    # older version's accept has no delivery journal, so no delivery_id)
    (recovered,) = [e for e in events if e["event"] == "extract_accepted"]
    ingest_fields = {
        k: v for k, v in accepted.items() if k not in ("at", "run_id", "prev", "delivery_id")
    }
    assert {k: v for k, v in recovered.items() if k in ingest_fields} == ingest_fields
    assert recovered["stored_as"] == stored_as
    assert [e["event"] for e in events if e["event"] == "ingest_recovered"] == ["ingest_recovered"]
    assert not held_files(settings.quarantine)


def test_a_file_the_hub_may_not_move_from_a_writable_inbox_is_copied_and_noted_received(
    small_place, tmp_path
):
    # The inbox looks writable, but this one file may not be moved (immutable, or owned by the
    # partner in a sticky folder): found out at the move, copied instead, noted as received.
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr to make one file unmovable")
    settings = small_place.stage_hub(tmp_path / "home", datasets=["emergency_admissions"])
    (path,) = settings.inbox.iterdir()
    sent = _sha(path)
    if subprocess.run(["chattr", "+i", str(path)]).returncode:
        pytest.skip("this file system has no immutable files")
    try:
        receipts, landed = _receive_here(settings)
        again, _ = _receive_here(settings)
        assert receipts[path.name].status == "accepted" and again == {}
        assert landed == {
            "emergency_admissions": small_place.extract("emergency_admissions").rows_out
        }
        assert [_sha(p) for p in settings.vault.rglob("*.plx")] == [sent] and path.exists()
        assert ReceivedLedger(settings.home).received(path)["outcome"] == "accept"
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
