"""Hostile things in the inbox: links, devices, FIFOs, names that collide or cannot be printed.

Whatever reaches the inbox is held (never followed, never opened if it is not a file), the other
deliveries carry on, and quarantine keeps exactly the bytes that arrived, each with its own reason.
"""

import datetime as dt
import hashlib
import os
import shutil
import stat

import pytest

from pipelines.governance.audit import AuditLog
from pipelines.hub.quarantine import held_files, release
from pipelines.orchestration.sensors import inbox_fingerprint
from tests.hub.test_ingest import NOW, _receive

OTHER = "emergency_admissions"


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _entries(folder):
    """Every entry of ``folder`` with its kind, without following links."""
    return {p.name: stat.S_IFMT(p.lstat().st_mode) for p in folder.iterdir()}


def _held(settings):
    return {item["file"]: item for item in held_files(settings.quarantine)}


def _assert_nothing_in_quarantine_is_a_link(settings):
    for path in settings.quarantine.rglob("*"):
        assert not path.is_symlink(), path
        assert path.is_dir() or stat.S_ISREG(path.lstat().st_mode), path


def test_a_link_to_a_valid_envelope_outside_the_inbox_is_held_not_followed(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "home", datasets=[OTHER])
    outside = tmp_path / "elsewhere" / "ae.plx"
    outside.parent.mkdir()
    shutil.copy2(small_place.envelope("ae_attendances").envelope_path, outside)
    before = _sha(outside)
    (settings.inbox / "linked.plx").symlink_to(outside)

    receipts, landed = _receive(settings)

    assert receipts["linked.plx"].status == "quarantined"
    assert "symbolic link" in receipts["linked.plx"].reason
    assert landed == {OTHER: small_place.extract(OTHER).rows_out}  # the other file carried on
    assert not list(settings.vault.rglob("linked.plx")) and "ae_attendances" not in landed
    assert _sha(outside) == before and outside.exists()  # the link's target is left alone
    assert not list(settings.inbox.iterdir())
    held = _held(settings)["linked.plx"]
    assert held["check"] == "format" and "regular file" in held["expected"] and held["action"]
    _assert_nothing_in_quarantine_is_a_link(settings)


def test_a_link_to_a_raw_extract_is_held_as_a_file_not_a_link(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "home", datasets=[])
    raw = small_place.place / "raw" / "vcs" / "family_support_enrolments.csv"
    (settings.inbox / "raw.csv").symlink_to(raw)
    dangling = settings.inbox / "dangling.plx"
    dangling.symlink_to(tmp_path / "gone.plx")

    receipts, _ = _receive(settings)

    assert {receipts[n].status for n in ("raw.csv", "dangling.plx")} == {"quarantined"}
    _assert_nothing_in_quarantine_is_a_link(settings)
    held = _held(settings)
    assert set(held) == {"raw.csv", "dangling.plx"}
    # Nothing of the raw extract was read into quarantine, the reasons or the audit log.
    written = b"".join(p.read_bytes() for p in settings.quarantine.rglob("*") if p.is_file())
    written += (settings.audit_dir / "audit.jsonl").read_bytes()
    header, first = (line.split(",") for line in raw.read_text().splitlines()[:2])
    names = first[header.index("given_name")] + "," + first[header.index("family_name")]
    assert names.encode() not in written and names.encode() in raw.read_bytes()


def test_a_fifo_and_a_device_are_held_without_being_opened(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "home", datasets=[OTHER])
    os.mkfifo(settings.inbox / "pipe.plx")  # opening it for reading would wait for ever
    names = ["pipe.plx"]
    try:
        os.mknod(settings.inbox / "device.plx", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero
        names.append("device.plx")
    except PermissionError:
        pass  # not root: the FIFO still shows the rule

    assert inbox_fingerprint(settings)[0] == len(names) + 1  # the sensor sees them as waiting
    receipts, landed = _receive(settings)

    for name in names:
        assert (
            receipts[name].status == "quarantined" and "not a regular file" in receipts[name].reason
        )
    assert landed == {OTHER: small_place.extract(OTHER).rows_out}
    assert not list(settings.inbox.iterdir())
    _assert_nothing_in_quarantine_is_a_link(settings)
    assert set(_held(settings)) == set(names)


def test_a_delivery_named_like_a_reason_is_never_overwritten_by_one(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "home", datasets=[])
    first = settings.inbox / "X.plx.reason.json"
    first.write_bytes(b"first delivery: not an envelope")
    _receive(settings)
    second = settings.inbox / "X.plx"
    second.write_bytes(b"second delivery: not an envelope either")
    _receive(settings, now=NOW + dt.timedelta(days=1))

    held = _held(settings)
    assert set(held) == {"X.plx.reason.json", "X.plx"}
    for name, content in (
        ("X.plx.reason.json", b"first delivery: not an envelope"),
        ("X.plx", b"second delivery: not an envelope either"),
    ):
        item = held[name]
        assert (settings.quarantine / item["held_as"]).read_bytes() == content
        assert item["check"] == "format"


def test_the_same_name_delivered_twice_keeps_both_and_their_reasons(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "home", datasets=[])
    for day, content in enumerate((b"one", b"two", b"three")):
        (settings.inbox / "again.plx").write_bytes(content)
        _receive(settings, now=NOW + dt.timedelta(days=day))
    held = held_files(settings.quarantine)
    assert sorted((settings.quarantine / h["held_as"]).read_bytes() for h in held) == [
        b"one",
        b"three",
        b"two",
    ]
    assert {h["file"] for h in held} == {"again.plx"} and len({h["held_as"] for h in held}) == 3


@pytest.mark.parametrize(
    "name",
    [
        "line\nbreak.plx",  # a new line in a file name
        "tab\tand\x1b[31mescape.plx",  # terminal escapes
        "x" * 240 + ".plx",  # too long to add '.reason.json' to
        os.fsdecode(b"latin-1 caf\xe9.plx"),  # bytes that are not UTF-8
        "back\\slash .. and ✓ \u202eevil.plx",  # a backslash, dots, a right-to-left override
    ],
)
def test_odd_file_names_are_held_with_a_reason_and_printable(small_place, tmp_path, name):
    settings = small_place.stage_hub(tmp_path / "home", datasets=[OTHER])
    (settings.inbox / name).write_bytes(b"not an envelope")

    receipts, landed = _receive(settings)

    (receipt,) = [r for r in receipts.values() if r.status == "quarantined"]
    assert landed == {OTHER: small_place.extract(OTHER).rows_out}
    assert receipt.file_name.isprintable() and receipt.file_name in receipt.reason
    (item,) = held_files(settings.quarantine)
    assert item["check"] == "format" and item["held_as"].isprintable()
    assert (settings.quarantine / item["held_as"]).read_bytes() == b"not an envelope"
    assert AuditLog(settings.audit_dir).verify() is None
    events = [
        e for e in AuditLog(settings.audit_dir).events() if e["event"] == "extract_quarantined"
    ]
    assert [e["file"] for e in events] == [receipt.file_name]
    # Released, it goes back to the inbox, unchanged, under a name the next run can read.
    back = release(
        settings.quarantine, item["held_as"], settings.inbox, AuditLog(settings.audit_dir)
    )
    assert back.parent == settings.inbox and back.read_bytes() == b"not an envelope"
