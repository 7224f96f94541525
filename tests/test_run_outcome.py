"""Nothing fails silently (issue 20): `placelink run` exit codes and summary, the publication guard,
the pre-flight checks, and a full disk while holding a delivery."""

import errno
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.preflight import PreflightFailed, preflight, required_free_space
from pipelines.core.settings import Settings
from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import AuditLog
from pipelines.hub import delivery_states
from pipelines.hub.ingest import receive_inbox
from pipelines.hub.quarantine import held_files
from pipelines.linkage.person_keys import forget_identities

AE = "ae_attendances"
AE_SOURCE = "nhs-acute-mental-health/ae_attendances"


def placelink(home, *args, **env):
    """`placelink ARGS` in a fresh process, as a scheduled job runs it."""
    environment = {**os.environ, "PLACELINK_HOME": str(home), **env}
    environment.pop("PLACELINK_CONTRACTS", None)
    return subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import main; main()", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def published_hub(published_small_hub):
    """A hub home after one whole run that published every partner's data (the session's)."""
    return published_small_hub.settings


def test_a_run_that_held_a_delivery_exits_3_and_names_it(published_small_hub, tmp_path):
    settings = published_small_hub.copy(tmp_path / "home")
    (settings.inbox / "late-upload.plx").write_bytes(b"partial upload")
    run = placelink(settings.home, "run")
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert "completed with 1 delivery(ies) held in quarantine (exit 3): late-upload.plx" in last
    assert "held: late-upload.plx: check 'format'" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr


def test_a_run_that_would_publish_without_a_source_is_blocked_until_accepted(
    published_hub, small_place, tmp_path
):
    # The disk filled while the A&E extract arrived: the hub rebuilt from the other deliveries, and the
    # A&E envelope came in damaged. The last publication had A&E.
    settings = small_place.stage_hub(
        tmp_path / "home",
        datasets=[e.header.dataset for e in small_place.extracts if e.header.dataset != AE],
    )
    envelope = small_place.envelope(AE).envelope_path
    (settings.inbox / envelope.name).write_bytes(envelope.read_bytes()[:200])
    shutil.copy2(published_hub.published, settings.published)
    before = settings.published.read_bytes()

    blocked = placelink(settings.home, "run")
    assert blocked.returncode == 4, blocked.stdout[-2000:] + blocked.stderr[-3000:]
    last = blocked.stderr.strip().splitlines()[-1]
    assert "PUBLICATION BLOCKED (exit 4)" in last and f"source {AE_SOURCE}" in last
    assert "placelink hub accept-publication" in last
    assert f"held: {envelope.name}" in blocked.stderr  # and why the source is missing
    assert settings.published.read_bytes() == before  # the published file was left as it was
    (event,) = [
        e for e in AuditLog(settings.audit_dir).events() if e["event"] == "publication_blocked"
    ]
    assert {"kind": "source", "name": AE_SOURCE, "known_reason": None} in event["lost"]

    accepted = placelink(
        settings.home, "hub", "accept-publication", "--reason", "A&E re-sends next month"
    )
    assert accepted.returncode == 0, accepted.stderr
    published = placelink(settings.home, "run")
    assert published.returncode == 0, published.stdout[-2000:] + published.stderr[-3000:]
    assert f"published without: source {AE_SOURCE}" in published.stdout
    assert "A&E re-sends next month" in published.stdout
    assert settings.published.read_bytes() != before
    (event,) = [e for e in AuditLog(settings.audit_dir).events() if e["event"] == "published"]
    assert any(AE_SOURCE in loss for loss in event["known_losses"]) and event["accepted_changes"]


def test_preflight_names_a_published_folder_it_cannot_make_and_the_run_touches_nothing(
    tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    (home / "published").write_text("a file where the published folder belongs")
    monkeypatch.setenv("PLACELINK_HOME", str(home))
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 5
    assert (
        f"the published folder {home / 'published'} cannot be made: {home / 'published'} is a file"
        in result.output
    )
    assert sorted(p.name for p in home.iterdir()) == [
        "published"
    ]  # no warehouse, inbox or vault made


def test_preflight_stops_a_run_when_the_disk_is_short_of_the_threshold(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("PLACELINK_HOME", str(home))
    monkeypatch.setenv("PLACELINK_MIN_FREE_DISK", "100000TB")
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 5
    assert (
        f"free on the file system of {home}" in result.output
        and "PLACELINK_MIN_FREE_DISK" in result.output
    )
    assert not home.exists()

    # The default threshold follows what the run will copy: twice the inbox and the warehouse.
    monkeypatch.delenv("PLACELINK_MIN_FREE_DISK")
    settings = Settings.from_env()
    settings.inbox.mkdir(parents=True)
    (settings.inbox / "big.plx").write_bytes(b"\0" * (300 * 1024**2 // 2))
    assert required_free_space(settings) == 300 * 1024**2
    monkeypatch.setattr(
        "pipelines.core.preflight.shutil.disk_usage",
        lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 200 * 1024**2, 200 * 1024**2),
    )
    with pytest.raises(
        PreflightFailed, match=r"only 200\.0 MB free .* at least 300\.0 MB \(twice the inbox"
    ):
        preflight(settings)


def test_preflight_needs_a_readable_inbox_folder(tmp_path):
    settings = Settings.from_env({"PLACELINK_HOME": str(tmp_path / "home")})
    settings.home.mkdir()
    settings.inbox.write_text("not a folder")
    with pytest.raises(PreflightFailed, match="the inbox .* is not a folder"):
        preflight(settings)


def test_a_full_disk_while_holding_a_delivery_leaves_no_empty_reason(
    small_place, tmp_path, monkeypatch
):
    """The disk fills while the hub writes a held delivery's reason: nothing half-written is left
    (no 0-byte reason, no held file without its reason), the delivery stays in the inbox, and the
    next run, with space again, holds it with its reason."""
    settings = small_place.stage_hub(tmp_path / "hub", datasets=[])
    delivery = settings.inbox / "council__csc.plx"
    delivery.write_bytes(b"some delivered bytes")
    real_write, real_fsync = delivery_states.write_durably, os.fsync

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write_on_a_full_disk(path, data):
        if "reason" not in path.name:
            return real_write(path, data)
        monkeypatch.setattr(
            os, "fsync", disk_full
        )  # the reason's bytes are written, then the disk is full
        try:
            return real_write(path, data)
        finally:
            monkeypatch.setattr(os, "fsync", real_fsync)

    monkeypatch.setattr(delivery_states, "write_durably", write_on_a_full_disk)
    with pytest.raises(OSError) as raised:
        _receive(settings)
    assert raised.value.errno == errno.ENOSPC
    assert [
        p.name for p in settings.quarantine.iterdir() if p.is_file()
    ] == []  # no reason, no held file
    assert delivery.read_bytes() == b"some delivered bytes"  # still in the inbox for the next run

    monkeypatch.setattr(delivery_states, "write_durably", real_write)  # space again
    (receipt,) = _receive(settings)
    assert receipt.status == "quarantined"
    (held,) = held_files(settings.quarantine)
    assert held["file"] == "council__csc.plx" and held["check"] not in ("reason missing", "")
    assert not delivery.exists()


def _receive(settings):
    contracts, _ = load_hub_contracts(settings)
    con = connect(settings)
    try:
        return receive_inbox(
            settings,
            con,
            contracts,
            {},
            AuditLog(settings.audit_dir),
            now=settings.now(),
            erase_identities=forget_identities,
        )
    finally:
        con.close()
