"""The secure exchange as a new partner and hub would do it, command by command."""

import datetime as dt
import json
import os
import shutil

from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.settings import REPO_ROOT, Settings
from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import AuditLog, hub_audit_log
from pipelines.hub.ingest import receive_inbox
from pipelines.linkage.person_keys import forget_identities


def _receive(settings):
    contracts, problems = load_hub_contracts(settings)
    con = connect(settings)
    try:
        return {
            r.file_name: r
            for r in receive_inbox(
                settings,
                con,
                contracts,
                problems,
                hub_audit_log(settings),
                now=dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
                erase_identities=forget_identities,
            )
        }
    finally:
        con.close()


def test_keygen_register_prepare_receive_and_release(small_place, tmp_path, monkeypatch):
    home, partner = tmp_path / "hub", tmp_path / "vcs"
    partner.mkdir()
    shutil.copytree(REPO_ROOT / "contracts", home / "contracts")
    monkeypatch.setenv("PLACELINK_HOME", str(home))
    monkeypatch.delenv("PLACELINK_CONTRACTS", raising=False)
    run = CliRunner().invoke
    (partner / "pass").write_text("a long partner passphrase\n")

    assert run(main, ["hub", "keygen"]).exit_code == 0
    made = run(
        main,
        [
            "partner",
            "keygen",
            "--partner",
            "vcs",
            "--out",
            str(partner / "vcs.key"),
            "--passphrase-file",
            str(partner / "pass"),
        ],
    )
    assert made.exit_code == 0, made.output
    contract = home / "contracts" / "vcs-family-support.yaml"
    registered = run(
        main,
        [
            "hub",
            "register-partner-key",
            "--contract",
            str(contract),
            "--public-key",
            str(partner / "vcs.pub"),
        ],
    )
    assert registered.exit_code == 0, registered.output
    assert "signing_key_fingerprint: sha256:" in contract.read_text()
    # the agreement's approvers (the charity's IG lead, the hub's SIRO and DPO) sign it off
    hub = "Northshire Place Partnership Data Hub (hosted by Northshire Borough Council)"
    for role, organisation in (
        ("information_governance_lead", "Northshire Family Hub Trust (registered charity)"),
        ("siro", hub),
        ("dpo", hub),
    ):
        key = tmp_path / "approvers" / f"{role}.key"
        assert (
            run(
                main,
                [
                    "contracts",
                    "approver-keygen",
                    "--name",
                    f"The {role}",
                    "--role",
                    role,
                    "--organisation",
                    organisation,
                    "--out",
                    str(key),
                ],
            ).exit_code
            == 0
        )
        assert (
            run(
                main, ["hub", "register-approver-key", "--public-key", str(key.with_suffix(".pub"))]
            ).exit_code
            == 0
        )
        approved = run(main, ["contracts", "approve", str(contract), "--key", str(key)])
        assert approved.exit_code == 0, approved.output
    assert "approval_status is now approved" in approved.output

    place = small_place.place
    args = [
        "partner",
        "prepare",
        "--contract",
        str(contract),
        "--input",
        str(place / "raw" / "vcs" / "family_support_enrolments.csv"),
        "--out",
        str(partner / "outbox"),
        "--linkage-key",
        str(tmp_path / "link.key"),
        "--postcode-lookup",
        str(place / "reference" / "postcode_lookup.csv"),
        "--period",
        "2026-10",
        "--signing-key",
        str(partner / "vcs.key"),
        "--hub-key",
        str(home / "keys" / "hub.pub"),
    ]
    assert run(main, ["partner", "linkage-key", "--out", str(tmp_path / "link.key")]).exit_code == 0
    no_passphrase = run(main, args)
    assert no_passphrase.exit_code == 2 and "passphrase-protected" in no_passphrase.output
    prepared = run(main, args + ["--passphrase-file", str(partner / "pass")])
    assert prepared.exit_code == 0, prepared.output
    (envelope,) = (partner / "outbox").glob("*.plx")
    assert not list((partner / "outbox").glob("*.parquet"))  # only the envelope is there to send

    settings = Settings.from_env(
        {"PLACELINK_HOME": str(home), "PLACELINK_AS_OF": os.environ["PLACELINK_AS_OF"]}
    )
    assert settings.contracts_dir == home / "contracts"  # the hub's registered contracts
    settings.ensure_dirs()
    shutil.copy2(envelope, settings.inbox / "vcs enrolments.plx")
    shutil.copy2(envelope, settings.inbox / "vcs enrolments.sent again ✓.plx")
    receipts = _receive(settings)
    assert receipts["vcs enrolments.plx"].status == "accepted", receipts[
        "vcs enrolments.plx"
    ].reason
    assert receipts["vcs enrolments.sent again ✓.plx"].status == "quarantined"

    listed = run(main, ["hub", "quarantine", "list"])
    assert (
        "HELD      vcs enrolments.sent again ✓.plx" in listed.output and "replay" in listed.output
    )
    assert "ACCEPTED  vcs enrolments.plx" in listed.output
    shown = run(main, ["hub", "quarantine", "show", "vcs enrolments.sent again ✓.plx"])
    assert "check:    replay" in shown.output
    released = run(main, ["hub", "quarantine", "release", "vcs enrolments.sent again ✓.plx"])
    assert released.exit_code == 0 and (settings.inbox / "vcs enrolments.sent again ✓.plx").exists()
    history = json.loads(
        (
            settings.quarantine / "released" / "vcs enrolments.sent again ✓.plx.reason.json"
        ).read_text()
    )
    assert history["check"] == "replay" and history["released_at"]
    assert AuditLog(settings.audit_dir).verify() is None
    verified = run(main, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
