"""The operator's quarantine commands never crash on what they find in quarantine.

A full disk leaves a 0-byte reason, an old version or a hostile partner leaves a held file named
like a reason, an operator removes a file by hand: each is still listed, shown and (where it makes
sense) released, with an error message rather than a traceback where it does not.
"""

import json

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.governance.audit import AuditLog
from pipelines.hub.quarantine import ReleaseError, held_files, release


def _reason(check="format", file="a.plx"):
    return {
        "file": file,
        "received_at": "2026-11-02T06:00:00+00:00",
        "check": check,
        "expected": "an envelope",
        "found": "something else",
        "action": "ask the partner",
        "contract": None,
        "message": f"extract {file} rejected: check '{check}' failed",
    }


@pytest.fixture()
def quarantine(tmp_path, monkeypatch):
    """A quarantine holding every odd thing a crash, an old version or a partner can leave."""
    home = tmp_path / "home"
    folder = home / "quarantine"
    folder.mkdir(parents=True)
    monkeypatch.setenv("PLACELINK_HOME", str(home))
    (folder / "good.plx").write_bytes(b"held bytes")
    (folder / "good.plx.reason.json").write_text(json.dumps(_reason(file="good.plx")))
    (folder / "empty-reason.plx").write_bytes(b"held bytes")
    (folder / "empty-reason.plx.reason.json").write_bytes(b"")  # the disk filled up
    (folder / "no-reason.plx").write_bytes(b"held bytes")  # killed before the reason
    (folder / "notes.reason.json").write_bytes(b"this is a held delivery, not JSON")
    (folder / "list-reason.plx").write_bytes(b"held bytes")
    (folder / "list-reason.plx.reason.json").write_text("[1, 2, 3]")
    (folder / "partial.plx").write_bytes(b"held bytes")
    (folder / "partial.plx.reason.json").write_text(json.dumps({"check": "format"}))
    (folder / "bad-utf8.plx").write_bytes(b"held bytes")
    (folder / "bad-utf8.plx.reason.json").write_bytes(b'{"check": "\xff\xfe"}')
    (folder / "released").mkdir()
    return folder


EVERY = {
    "good.plx",
    "empty-reason.plx",
    "no-reason.plx",
    "notes.reason.json",
    "list-reason.plx",
    "partial.plx",
    "bad-utf8.plx",
}


def test_every_held_file_is_listed_and_unreadable_reasons_say_so(quarantine):
    held = {item["held_as"]: item for item in held_files(quarantine)}
    assert set(held) == EVERY
    assert held["good.plx"]["check"] == "format"
    for name in EVERY - {"good.plx", "partial.plx"}:
        assert held[name]["check"] == "reason missing", name
        assert held[name]["found"] and held[name]["action"] and held[name]["message"]
    assert held["partial.plx"]["check"] == "format" and held["partial.plx"]["found"]


def test_list_and_show_never_crash(quarantine):
    run = CliRunner().invoke
    listed = run(main, ["hub", "quarantine", "list"])
    assert listed.exit_code == 0, listed.output
    for name in EVERY:
        assert f"HELD      {name}\t" in listed.output
        shown = run(main, ["hub", "quarantine", "show", name])
        assert shown.exit_code == 0 and "check:" in shown.output, (name, shown.output)
    assert "reason missing" in run(main, ["hub", "quarantine", "show", "no-reason.plx"]).output
    unknown = run(main, ["hub", "quarantine", "show", "../../etc/passwd"])
    assert unknown.exit_code == 2 and "no held extract named" in unknown.output


def test_release_of_a_file_without_a_readable_reason_keeps_its_name(quarantine, tmp_path):
    inbox = tmp_path / "home" / "inbox"
    audit = AuditLog(tmp_path / "home" / "audit")
    for name in ("no-reason.plx", "empty-reason.plx", "notes.reason.json"):
        back = release(quarantine, name, inbox, audit)
        assert (
            back == inbox / name
            and back.read_bytes().startswith(b"this is")
            or back.read_bytes() == b"held bytes"
        )
        assert not (quarantine / name).exists()
    assert {e["event"] for e in audit.events()} == {"extract_released"}
    assert audit.verify() is None


@pytest.mark.parametrize(
    "name", ["../good.plx", "released", "good.plx.reason.json", "/etc/passwd", ""]
)
def test_release_refuses_anything_but_a_held_file(quarantine, tmp_path, name):
    with pytest.raises(ReleaseError, match="no held extract named"):
        release(
            quarantine, name, tmp_path / "home" / "inbox", AuditLog(tmp_path / "home" / "audit")
        )
    assert (quarantine / "good.plx").read_bytes() == b"held bytes"


def test_a_reason_naming_a_path_outside_the_inbox_is_released_under_its_held_name(
    quarantine, tmp_path
):
    (quarantine / "good.plx.reason.json").write_text(json.dumps(_reason(file="../../escaped.plx")))
    inbox = tmp_path / "home" / "inbox"
    back = release(quarantine, "good.plx", inbox, AuditLog(tmp_path / "home" / "audit"))
    assert back == inbox / "good.plx" and not (tmp_path / "escaped.plx").exists()


def test_release_on_the_command_line_says_why_not_without_a_traceback(quarantine):
    result = CliRunner().invoke(main, ["hub", "quarantine", "release", "no-such.plx"])
    assert result.exit_code == 2 and "no held extract named no-such.plx" in result.output
    ok = CliRunner().invoke(main, ["hub", "quarantine", "release", "notes.reason.json"])
    assert ok.exit_code == 0, ok.output
