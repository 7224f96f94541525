"""The audit log: a hash chain whose end is signed, so cutting it short or putting an older copy
back is caught, and each event says who and in which run."""

import json
import shutil

import pytest

from pipelines.core.settings import Settings
from pipelines.governance.audit import (
    AuditHead,
    AuditLog,
    AuditLogTampered,
    SignedHead,
    hub_audit_log,
    verify_log,
)


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env(
        {"PLACELINK_HOME": str(tmp_path / "home"), "PLACELINK_AS_OF": "2026-11-02"}
    )


@pytest.fixture
def log(settings):
    log = hub_audit_log(settings, actor="service:test", run_id="run-1")
    for n in range(5):
        log.append("extract_accepted", file=f"x{n}.parquet", rows=n)
    return log


def _head(settings):
    return AuditHead(settings.audit_head_path, settings.audit_key_path)


def _failures(settings, published=None):
    return [f for f in verify_log(hub_audit_log(settings), _head(settings), published) if not f.ok]


def _rewrite(log, change):
    lines = log.path.read_text().splitlines()
    change(lines)
    log.path.write_text("".join(line + "\n" for line in lines))


def test_intact_log_verifies_and_every_event_names_who_and_which_run(log, settings):
    assert log.verify() is None and _failures(settings) == []
    events = list(log.events())
    assert [e["rows"] for e in events] == [0, 1, 2, 3, 4]
    assert {(e["actor"], e["run_id"]) for e in events} == {("service:test", "run-1")}
    head = _head(settings).read()
    assert head.events == 5 and head.signed_by(_head(settings).public_key())
    # the head is kept apart from the log, and the hub's audit key is private
    assert settings.audit_head_path.parent != log.path.parent
    assert oct(settings.audit_key_path.stat().st_mode & 0o777) == "0o600"


def test_edited_line_is_named(log):
    def edit(lines):
        event = json.loads(lines[2])
        event["rows"] = 99
        lines[2] = json.dumps(event)

    _rewrite(log, edit)
    assert log.verify().line == 4  # the line after the edit no longer chains


def test_deleted_line_is_named(log):
    _rewrite(log, lambda lines: lines.pop(1))
    assert log.verify().line == 2


def test_reordered_lines_are_caught(log):
    def swap(lines):
        lines[1], lines[2] = lines[2], lines[1]

    _rewrite(log, swap)
    assert log.verify().line == 2


def test_removing_the_last_line_is_caught(log, settings):
    _rewrite(log, lambda lines: lines.pop())
    assert log.verify() is None  # the chain alone cannot tell
    (failure,) = _failures(settings)
    assert (
        failure.check == "signed head"
        and "TRUNCATED" in failure.detail
        and "events 5-5 are missing" in failure.detail
    )
    # and the hub refuses to write on top of it (it would otherwise sign the cut log)
    with pytest.raises(AuditLogTampered, match="does not end where the hub last signed it"):
        hub_audit_log(settings).append("published", tables=[])


def test_restoring_an_older_copy_is_caught(log, settings, tmp_path):
    older = tmp_path / "backup.jsonl"
    shutil.copy(log.path, older)
    log.append("published", tables=["t"])
    log.append("retention_deleted", extract_id="e1")
    shutil.copy(older, log.path)
    assert log.verify() is None
    (failure,) = _failures(settings)
    assert (
        "TRUNCATED or ROLLED BACK" in failure.detail and "the hub signed 7 events" in failure.detail
    )


def test_an_older_copy_with_events_added_by_something_else_is_caught(log, settings, tmp_path):
    older = tmp_path / "backup.jsonl"
    shutil.copy(log.path, older)
    log.append("published", tables=["t"])
    shutil.copy(older, log.path)
    AuditLog(log.path.parent).append(
        "published", tables=["forged"]
    )  # chains, but is not the hub's event
    (failure,) = _failures(settings)
    assert "ROLLED BACK or REWRITTEN: event 6 is not the event the hub signed" in failure.detail


def test_an_older_log_with_its_older_head_is_caught_by_the_head_a_publication_carries(
    log, settings, tmp_path
):
    saved_log, saved_head = tmp_path / "log", tmp_path / "head"
    shutil.copy(log.path, saved_log)
    shutil.copy(settings.audit_head_path, saved_head)
    log.append("published", tables=["t"])
    published = _head(settings).read()  # what _about.audit_head carries
    log.append("linkage_run", persons=3)
    shutil.copy(saved_log, log.path)
    shutil.copy(saved_head, settings.audit_head_path)
    assert _failures(settings) == []  # the log and its head agree with each other...
    (failure,) = _failures(settings, published)
    assert "events 6-6 are missing" in failure.detail  # ...but not with the published file


def test_a_removed_or_forged_head_is_caught(log, settings):
    head = json.loads(settings.audit_head_path.read_text())
    settings.audit_head_path.write_text(json.dumps({**head, "events": 4}))
    assert "signature does not verify" in _failures(settings)[0].detail
    settings.audit_head_path.unlink()
    assert "no signed head" in _failures(settings)[0].detail
    with pytest.raises(AuditLogTampered, match="head was removed"):
        hub_audit_log(settings).append("published", tables=[])


def test_appends_continue_the_chain_across_instances(log, settings):
    hub_audit_log(settings).append("published", tables=["t"])
    assert log.verify() is None and _failures(settings) == []
    assert _head(settings).read().events == 6


def test_a_log_written_before_heads_existed_is_signed_from_the_hubs_first_signed_write(settings):
    unsigned = AuditLog(settings.audit_dir)
    unsigned.append("extract_accepted", rows=1)
    unsigned.append("extract_accepted", rows=2)
    hub_audit_log(settings).append("published", tables=[])
    assert _failures(settings) == [] and _head(settings).read().events == 3


def test_signed_head_round_trips_as_json(log, settings):
    head = _head(settings).read()
    assert SignedHead.from_json(json.loads(json.dumps(head.to_json()))) == head


def test_the_hub_will_not_make_a_new_audit_key_for_a_log_it_signed_with_another(log, settings):
    settings.audit_key_path.unlink()
    with pytest.raises(AuditLogTampered, match="audit key .* is missing"):
        hub_audit_log(settings).append("published", tables=[])


# A kill inside an append (issue 20): the append writes ahead the head it will end at and its
# line, so the next append finishes it instead of finding a log "written by something else".
_KILLED_APPEND = """
import os, sys
from pipelines.governance.audit import AuditHead, hub_audit_log
from pipelines.core.settings import Settings

where = sys.argv[1]
settings = Settings.from_env({"PLACELINK_HOME": sys.argv[2], "PLACELINK_AS_OF": "2026-11-02"})
if where == "before the line":
    import pipelines.governance.audit as audit

    real = audit._write_durably

    def then_die(path, text):
        real(path, text)
        if path.name.endswith(".pending"):
            os._exit(9)

    audit._write_durably = then_die
else:  # after the line, before the head
    AuditHead.write = lambda self, head: os._exit(9)
hub_audit_log(settings, actor="service:test").append("extract_accepted", file="x5.parquet", rows=5)
"""


@pytest.mark.parametrize("where", ["before the line", "after the line", "inside the line"])
def test_an_append_killed_at_any_point_is_finished_by_the_next(log, settings, where):
    import subprocess
    import sys

    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_APPEND,
            "before the line" if where == "before the line" else "after the line",
            str(settings.home),
        ],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == 9, killed.stderr
    pending = _head(settings).pending_path
    assert pending.exists()
    if where == "inside the line":  # the kill came part-way through writing the line itself
        whole = log.path.read_bytes()
        log.path.write_bytes(whole[: len(whole) - 40])
    hub_audit_log(settings, actor="service:test").append(
        "extract_accepted", file="x6.parquet", rows=6
    )
    assert not pending.exists()
    rows = [e["rows"] for e in log.events()]
    assert rows == [0, 1, 2, 3, 4, 5, 6]  # the event being written when killed is not lost
    assert log.verify() is None and _failures(settings) == []


def test_a_planted_write_ahead_record_does_not_excuse_lines_added_by_something_else(log, settings):
    head = _head(settings)
    forged = json.dumps({"prev": "0" * 64, "event": "forged"})
    before = log.path.stat().st_size
    head.pending_path.write_text(
        json.dumps(
            {
                "after": {"bytes": before, "last_hash": head.read().last_hash},
                "line": forged,
                "head": head.read().to_json(),  # a genuine signature, but not over this line
            }
        )
    )
    with log.path.open("a") as handle:
        handle.write(forged + "\n")
    with pytest.raises(AuditLogTampered):
        hub_audit_log(settings).append("extract_accepted", file="x9.parquet", rows=9)
