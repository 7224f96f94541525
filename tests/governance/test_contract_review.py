"""IG officer tools: diff (significant vs editorial), show, list and expiring."""

import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml
from approvers import sign_contracts
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.clock import Clock
from pipelines.core.settings import REPO_ROOT
from pipelines.governance.audit import AuditLog
from pipelines.governance.contract_review import compare_files

CONTRACTS = REPO_ROOT / "contracts"
NHS = CONTRACTS / "nhs-acute-mental-health.yaml"


def _terms(document):
    return document["customProperties"][0]["value"]


def _changed(tmp_path: Path, mutate) -> Path:
    document = yaml.safe_load(NHS.read_text())
    mutate(document)
    path = tmp_path / "nhs-acute-mental-health.v2.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _new_item(document):
    document["schema"][0]["properties"].append(
        {
            "name": "chief_complaint",
            "logicalType": "string",
            "classification": "payload",
            "customProperties": [{"property": "reason", "value": "Presenting complaint."}],
        }
    )


@pytest.mark.parametrize(
    "mutate, topic",
    [
        (
            lambda d: _terms(d).update(lawful_basis_article6="6(1)(f) legitimate interests"),
            "lawful basis",
        ),
        (
            lambda d: _terms(d).update(article9_condition="9(2)(g) substantial public interest"),
            "Article 9",
        ),
        (lambda d: _terms(d).update(purpose="Any analysis the hub likes."), "purpose"),
        (lambda d: _terms(d)["prohibited_uses"].pop(), "prohibited uses"),
        (lambda d: d["description"].update(purpose="Something else."), "purpose"),
        (_new_item, "new data item"),
        (
            lambda d: d["schema"][0]["properties"][16].update(classification="payload"),
            "classification",
        ),
        (lambda d: _terms(d)["retention"].update(period_months=120), "retention"),
        (lambda d: _terms(d)["recipient"].update(name="A commercial analytics company"), "parties"),
        (lambda d: _terms(d).update(controllership="joint"), "parties"),
        (lambda d: _terms(d).update(national_data_opt_out_applies=False), "National Data Opt-out"),
        (lambda d: _terms(d).update(expires="2031-03-31"), "validity"),
        (lambda d: _terms(d).update(dpia_reference="DPIA-NNFT-2027-001"), "DPIA"),
        (lambda d: _terms(d)["required_signatures"].pop(), "who must sign"),
        (lambda d: _terms(d).update(signing_key_fingerprint="sha256:" + "ab" * 32), "signing key"),
        (lambda d: d["description"].pop("limitations"), "limitations"),
        (lambda d: d.pop("description"), "purpose"),  # an editorial part holding significant fields
    ],
)
def test_governance_significant_changes_are_flagged(tmp_path, mutate, topic):
    comparison = compare_files(NHS, _changed(tmp_path, mutate))
    changes = comparison.changes
    assert changes and all(c.significant for c in changes), [c.describe() for c in changes]
    assert any(topic in c.topic for c in changes), [c.topic for c in changes]
    # significant exactly when the signed content changes: the approvals on the old version are void
    assert comparison.signatures_void


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(version="1.0.1"),
        lambda d: d.update(name="Northshire NHS FT: acute and mental-health data to the Place hub"),
        lambda d: d["schema"][0]["properties"][0]["customProperties"][0].update(
            value="Reworded reason."
        ),
        lambda d: d["schema"][0].update(description="Type 1 A&E attendances, one row each."),
        lambda d: d["description"].update(usage="Reworded usage note."),
        lambda d: _terms(d).update(review_by="2027-06-30"),
        lambda d: d["schema"][0]["properties"].reverse(),  # order of data items carries no meaning
        # how the partner's system writes dates: read by its kit, not shared
        lambda d: d["schema"][0].update(
            customProperties=[{"property": "dateFormats", "value": "dd/mm/yyyy"}]
        ),
    ],
)
def test_editorial_changes_are_not_flagged(tmp_path, mutate):
    comparison = compare_files(NHS, _changed(tmp_path, mutate))
    changes = comparison.changes
    assert len(changes) <= 1 and not any(c.significant for c in changes), [
        c.describe() for c in changes
    ]
    assert not comparison.signatures_void  # signatures on the old version still hold


def test_a_status_change_is_audited_but_keeps_the_signatures(tmp_path):
    comparison = compare_files(
        NHS, _changed(tmp_path, lambda d: _terms(d).update(approval_status="suspended"))
    )
    (change,) = comparison.changes
    assert change.category == "status" and not change.significant and not comparison.signatures_void


def test_diff_command_lists_both_kinds_and_can_fail_ci(tmp_path):
    def mixed(d):
        _terms(d).update(lawful_basis_article6="6(1)(f) legitimate interests")
        d.update(version="1.1.0")
        _new_item(d)

    new = _changed(tmp_path, mixed)
    result = CliRunner().invoke(main, ["contracts", "diff", str(NHS), str(new)])
    assert result.exit_code == 0, result.output
    significant, editorial = result.output.split("Editorial changes")
    assert "Governance-significant changes (2)" in significant
    words = " ".join(significant.split())
    assert (
        "[-6(1)(e) public task: the Trust's functions" in words
        and "{+6(1)(f) legitimate interests+}" in words
    )
    assert "ae_attendances.chief_complaint' added" in significant
    assert "version" in editorial and "lawful" not in editorial
    assert "Signed content: changed" in result.output
    gate = CliRunner().invoke(
        main, ["contracts", "diff", "--fail-on-significant", str(NHS), str(new)]
    )
    assert gate.exit_code == 1
    same = CliRunner().invoke(
        main, ["contracts", "diff", "--fail-on-significant", str(NHS), str(NHS)]
    )
    assert same.exit_code == 0 and "word for word" in same.output


def test_show_explains_the_agreement_in_plain_english(signed_home):
    result = CliRunner().invoke(main, ["contracts", "show", "nhs-acute-mental-health"])
    assert result.exit_code == 0, result.output
    text = result.output
    for expected in (
        "Northshire NHS Foundation Trust (controller) shares data with",
        "separate controllers",
        "Not to be used for:",
        "Article 6(1)(e) public task",
        "Article 9 condition: 9(2)(h)",
        "NHS Act 2006 s.82",
        "Section 251 support",
        "National Data Opt-out:",
        "removes the records of people who opted out",
        "DPIA-NNFT-2026-007",
        "kept for 84 months",
        "expires 2029-03-31",
        "Caldicott Guardian of Northshire NHS Foundation Trust (provider): signed by",
        "arrival_mode (string [ambulance, walk_in, other])",
    ):
        assert expected in text, expected
    unknown = CliRunner().invoke(main, ["contracts", "show", "no-such-agreement"])
    assert unknown.exit_code == 2 and "known: council-place-services" in unknown.output


def test_list_shows_status_partner_purpose_expiry_and_last_delivery(signed_home):
    AuditLog(signed_home / "audit").append(
        "extract_accepted",
        at=dt.datetime(2026, 10, 3, 9, 0, tzinfo=dt.UTC),
        contract="vcs-family-support",
        extract_id="e1",
        rows=12,
    )
    result = CliRunner().invoke(main, ["contracts", "list"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:-1]}
    assert set(lines) == {"council-place-services", "nhs-acute-mental-health", "vcs-family-support"}
    assert (
        "2026-10-03" in lines["vcs-family-support"] and "never" in lines["nhs-acute-mental-health"]
    )
    assert (
        "approved" in lines["nhs-acute-mental-health"]
        and " nhs " in lines["nhs-acute-mental-health"]
    )
    assert " 4/4 " in lines["nhs-acute-mental-health"] and " 3/3 " in lines["vcs-family-support"]
    assert (
        "2029-03-31" in lines["council-place-services"]
        and "Measure whether" in lines["council-place-services"]
    )


def _folder_with_dates(home, expires_in_days: dict[str, int]) -> Path:
    """The hub's agreements with new dates, signed again (dates are part of what is signed)."""
    folder = home / "contracts"
    shutil.rmtree(folder)
    folder.mkdir()
    today = Clock.from_env().today()  # the day the CLI will check on (PLACELINK_AS_OF)
    for path in CONTRACTS.glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        days = expires_in_days.get(document["id"])
        if days is not None:
            expires = today + dt.timedelta(days=days)
            _terms(document).update(
                valid_from=str(expires - dt.timedelta(days=900)),
                review_by=str(expires - dt.timedelta(days=15)),
                expires=str(expires),
            )
        (folder / path.name).write_text(yaml.safe_dump(document, sort_keys=False))
    sign_contracts(folder, home / "keys" / "approvers")
    return folder


def test_expiring_lists_agreements_ending_within_the_window(signed_home):
    folder = _folder_with_dates(
        signed_home, {"vcs-family-support": 20, "council-place-services": -5}
    )
    result = CliRunner().invoke(
        main, ["contracts", "expiring", "--days", "30", "--dir", str(folder)]
    )
    assert result.exit_code == 0, result.output
    assert (
        "vcs-family-support\tapproved\texpires" in result.output and "in 20 days" in result.output
    )
    assert "council-place-services\texpired\texpired" in result.output
    assert "nhs-acute-mental-health" not in result.output
    later = CliRunner().invoke(
        main, ["contracts", "expiring", "--days", "10", "--dir", str(folder)]
    )
    assert "vcs-family-support\tapproved\treview due" in later.output  # review falls in the window


def test_check_warns_about_an_approved_agreement_past_its_expiry(signed_home):
    folder = _folder_with_dates(signed_home, {"council-place-services": -5})
    result = CliRunner().invoke(main, ["contracts", "check", "--dir", str(folder)])
    assert result.exit_code == 0  # the file is valid; the flow is simply not in force
    assert "WARN   council-place-services.yaml: approved but expired on" in result.output


def _the_issue_edit(d):
    """The v1.1.0 from issue 22: a new ethnicity item, retention 84 -> 120 months, a prohibited use
    removed, a longer purpose, a reworded reason and a new version label."""
    d.update(version="1.1.0")
    d["schema"][0]["properties"].append(
        {
            "name": "ethnicity",
            "logicalType": "string",
            "classification": "quasi_identifier",
            "customProperties": [
                {"property": "reason", "value": "Equity of outcomes between ethnic groups."}
            ],
        }
    )
    _terms(d)["retention"].update(period_months=120)
    _terms(d)["prohibited_uses"].remove("No re-identification attempts")
    _terms(d)["purpose"] += (
        " The hub may also report outcomes by ethnic group for the equity audit."
    )
    d["schema"][0]["properties"][1]["customProperties"][0]["value"] = "Reworded."


def test_diff_shows_every_changed_text_in_full_word_by_word(tmp_path):
    new = _changed(tmp_path, _the_issue_edit)
    result = CliRunner().invoke(main, ["contracts", "diff", str(NHS), str(new)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    # the removed prohibited use is named; the end of the long purpose is there, marked as added
    assert "- No re-identification attempts" in result.output
    assert "{+The hub may also report outcomes by ethnic group for the equity audit.+}" in text
    assert "aggregate outcome tables to partnership members." in text
    assert "[-84-] {+120+}" not in text and "was: 84" in text and "now: 120" in text
    assert "..." not in result.output.split("Signed content")[0].replace("(word changes", "")
    assert (
        "Governance-significant changes (4)" in result.output
        and "Editorial changes (2)" in result.output
    )
    # the whole new data item, reason included
    assert "Equity of outcomes between ethnic groups." in result.output


def test_diff_as_json_for_tools(tmp_path):
    import json

    new = _changed(tmp_path, _the_issue_edit)
    result = CliRunner().invoke(main, ["contracts", "diff", "--format", "json", str(NHS), str(new)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["summary"] == {"significant": 4, "status": 0, "editorial": 2}
    assert report["signed_content"]["signatures_void"] is True and report["new_is_valid"] is True
    by_topic = {c["topic"]: c for c in report["changes"]}
    purpose = by_topic["purpose"]
    assert purpose["old"] == _terms(yaml.safe_load(NHS.read_text()))["purpose"]  # in full
    assert {
        "op": "added",
        "text": "The hub may also report outcomes by ethnic group for the equity audit.",
    } in purpose["word_diff"]
    uses = by_topic["purpose (prohibited uses)"]["items"]
    assert {"op": "removed", "text": "No re-identification attempts"} in uses
    assert by_topic["retention"]["old"] == 84 and by_topic["retention"]["new"] == 120
    assert by_topic["new data item"]["new"]["name"] == "ethnicity"


def test_an_invalid_agreement_is_listed_and_shown_by_the_id_it_claims_not_its_file_name(
    signed_home,
):
    # Saved under another file name, and broken: the pipeline holds its flow under its id
    # (nhs-acute-mental-health), and so must what an IG officer reads.
    nhs = signed_home / "contracts" / "nhs-acute-mental-health.yaml"
    document = yaml.safe_load(nhs.read_text())
    del document["customProperties"]
    (signed_home / "contracts" / "nhs-2027-draft.yaml").write_text(
        yaml.safe_dump(document, sort_keys=False)
    )
    nhs.unlink()
    listed = CliRunner().invoke(main, ["contracts", "list"])
    (row,) = [line for line in listed.output.splitlines() if "INVALID" in line]
    assert row.split()[0] == "nhs-acute-mental-health"
    shown = CliRunner().invoke(main, ["contracts", "show", "nhs-acute-mental-health"])
    assert shown.exit_code != 0 and "contract nhs-acute-mental-health is invalid" in shown.output
