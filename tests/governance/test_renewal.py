"""Renewing an agreement: a new version with later dates, unsigned until every role signs again."""

import datetime as dt
import shutil

import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.approvals import ApproverRegistry
from pipelines.governance.contracts import ContractError, load_contract
from pipelines.governance.renewal import next_version, renew_agreement, renewed_terms
from tests.approvers import sign_contracts

NAME = "vcs-family-support.yaml"


@pytest.fixture
def signed(tmp_path):
    folder = tmp_path / "contracts"
    folder.mkdir()
    shutil.copy2(REPO_ROOT / "contracts" / NAME, folder / NAME)
    keys = sign_contracts(folder, tmp_path / "approvers")
    return folder / NAME, keys, ApproverRegistry(tmp_path / "approvers")


def test_a_renewal_is_a_new_unsigned_version_with_only_its_dates_changed(signed):
    path, _, registry = signed
    old = load_contract(path)
    assert old.terms.approval_status == "approved" and registry.check(old).complete
    before = path.read_text().splitlines()
    review_by, expires = renewed_terms(old)
    assert (review_by, expires) == (dt.date(2030, 3, 31), dt.date(2032, 3, 31))

    renewed = renew_agreement(path, expires, review_by)

    assert renewed.version == "1.1.0" and renewed.terms.expires == expires
    assert renewed.terms.review_by == review_by and renewed.terms.valid_from == old.terms.valid_from
    assert renewed.terms.approval_status == "draft" and renewed.terms.approvals == []
    assert renewed.content_sha256 != old.content_sha256  # the old signatures are void
    changed = {b.split(":")[0].strip() for b in set(before) - set(path.read_text().splitlines())}
    # the signature lines went with the approvals block; nothing else in the file changed
    assert (
        changed - {"version", "review_by", "expires", "approval_status", "approvals", "- {role"}
        == set()
    )


def test_a_renewal_must_end_later_and_leaves_the_file_alone_otherwise(signed):
    path, _, _ = signed
    text = path.read_text()
    old = load_contract(path)
    with pytest.raises(
        ContractError, match=r"vcs-family-support.yaml: a renewal .* must end after 2029-03-31"
    ):
        renew_agreement(path, old.terms.expires, old.terms.review_by)
    assert path.read_text() == text


def test_the_next_version_is_the_next_minor_one():
    assert next_version("1.0.0") == "1.1.0" and next_version("2.7.3") == "2.8.0"
    with pytest.raises(ContractError, match="not X.Y.Z"):
        next_version("v1")


def _renew(home, *args):
    from click.testing import CliRunner

    from pipelines.cli import main

    return CliRunner().invoke(
        main,
        ["contracts", "renew", *args],
        env={
            "PLACELINK_HOME": str(home),
            "PLACELINK_AS_OF": "2029-01-02",
            "PLACELINK_CONTRACTS": None,
        },
    )


@pytest.fixture
def hub_home(tmp_path):
    from approvers import signed_hub_contracts

    home = tmp_path / "home"
    signed_hub_contracts(home)
    return home


def test_the_ig_officer_renews_from_the_command_line_and_the_old_version_is_kept(hub_home):
    from pipelines.core.settings import Settings
    from pipelines.governance.audit import hub_audit_log

    path = hub_home / "contracts" / NAME
    old_text = path.read_text()
    old = load_contract(path)

    result = _renew(hub_home, "vcs-family-support")

    assert result.exit_code == 0, result.output
    assert "as version 1.1.0: review by 2030-03-31, expires 2032-03-31" in result.output
    assert "placelink contracts approve --key THEIR.key vcs-family-support" in result.output
    assert "siro" in result.output and "dpo" in result.output
    assert (
        "holds new deliveries under vcs-family-support (from now, not only after 2029-03-31)"
        in result.output
    )
    renewed = load_contract(path)
    assert (renewed.version, renewed.terms.approval_status) == ("1.1.0", "draft")
    kept = hub_home / "contracts" / "superseded" / "vcs-family-support-1.0.0.yaml"
    assert kept.read_text() == old_text  # word for word, signatures and all
    settings = Settings.from_env({"PLACELINK_HOME": str(hub_home)})
    event = [e for e in hub_audit_log(settings).events() if e["event"] == "contract_renewed"]
    assert len(event) == 1 and event[0]["at"].startswith("2029-01-02")
    assert {k: event[0][k] for k in ("contract", "from_version", "to_version", "expires")} == {
        "contract": "vcs-family-support",
        "from_version": "1.0.0",
        "to_version": "1.1.0",
        "expires": "2032-03-31",
    }
    assert event[0]["superseded_content_sha256"] == old.content_sha256
    assert event[0]["superseded_file"] == "superseded/vcs-family-support-1.0.0.yaml"
    # the superseded copy is not an agreement the hub reads: the folder still has one per id
    from pipelines.governance.contracts import load_contracts

    contracts, problems = load_contracts(hub_home / "contracts")
    assert not problems and contracts["vcs-family-support"].version == "1.1.0"

    # a second renewal, to a date given, keeps 1.1.0 beside 1.0.0
    again = _renew(hub_home, str(path), "--expires", "2033-06-30")
    assert again.exit_code == 0, again.output
    assert "as version 1.2.0: review by 2031-06-30, expires 2033-06-30" in again.output
    assert (
        kept.parent / "vcs-family-support-1.1.0.yaml"
    ).is_file() and kept.read_text() == old_text


def test_a_renewal_the_command_refuses_changes_nothing_and_says_what_to_do(hub_home):
    from pipelines.core.settings import Settings
    from pipelines.governance.audit import hub_audit_log

    path = hub_home / "contracts" / NAME
    text = path.read_text()
    settings = Settings.from_env({"PLACELINK_HOME": str(hub_home)})
    events = len(list(hub_audit_log(settings).events()))

    earlier = _renew(hub_home, "vcs-family-support", "--expires", "2029-01-31")
    backwards = _renew(
        hub_home, "vcs-family-support", "--expires", "2032-03-31", "--review-by", "2033-01-01"
    )
    same = _renew(hub_home, "vcs-family-support", "--version", "1.0.0")
    unknown = _renew(hub_home, "no-such-agreement")

    assert earlier.exit_code == 2 and "must end after 2029-03-31" in earlier.output
    assert "Fix: give a later expires" in earlier.output
    assert (
        backwards.exit_code == 2
        and "review date 2033-01-01 is after its end date" in backwards.output
    )
    assert (
        same.exit_code == 2 and "version 1.0.0 of vcs-family-support already exists" in same.output
    )
    assert unknown.exit_code == 2 and "no no-such-agreement.yaml in" in unknown.output
    for result in (earlier, backwards, same, unknown):
        assert "Traceback" not in result.output
    assert path.read_text() == text
    assert not (hub_home / "contracts" / "superseded").exists()
    assert len(list(hub_audit_log(settings).events())) == events
