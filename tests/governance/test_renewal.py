"""Renewing an agreement: a new version with later dates, waiting unsigned in renewals/ while the
version in force stays in force, and put in its place when every role has signed it again."""

import datetime as dt
import shutil
from pathlib import Path

import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.approvals import ApproverRegistry
from pipelines.governance.contracts import ContractError, load_contract
from pipelines.governance.renewal import (
    complete_renewal,
    next_version,
    renew_agreement,
    renewed_terms,
)
from pipelines.tooling.synth.study import DELIVERED_AT
from tests.approvers import hub_cli, sign_contracts

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

    assert renewed.path == path.parent / "renewals" / NAME
    assert path.read_text().splitlines() == before  # the version in force is untouched
    assert renewed.version == "1.1.0" and renewed.terms.expires == expires
    assert renewed.terms.review_by == review_by and renewed.terms.valid_from == old.terms.valid_from
    assert renewed.terms.approval_status == "draft" and renewed.terms.approvals == []
    assert renewed.content_sha256 != old.content_sha256  # the old signatures are void
    changed = {
        b.split(":")[0].strip() for b in set(before) - set(renewed.path.read_text().splitlines())
    }
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
    assert not (path.parent / "renewals").exists()


def test_a_renewal_goes_in_force_only_when_every_role_has_signed_it(signed, tmp_path):
    path, keys, registry = signed
    old_text = path.read_text()
    old = load_contract(path)
    renewal = renew_agreement(path, *reversed(renewed_terms(old)))
    assert complete_renewal(renewal.path, registry) is None  # unsigned: nothing moves

    contract = renewal
    for n, requirement in enumerate(contract.terms.required_signatures):
        from pipelines.governance.approvals import party_organisation, sign_contract

        key = keys[(requirement.role, party_organisation(contract, requirement.party))]
        contract = sign_contract(renewal.path, key, DELIVERED_AT, registry).contract
        if n < len(renewal.terms.required_signatures) - 1:
            assert complete_renewal(renewal.path, registry) is None
            assert path.read_text() == old_text

    replaced, in_force = complete_renewal(renewal.path, registry)

    assert (replaced.version, in_force.version) == ("1.0.0", "1.1.0")
    assert in_force.path == path and in_force.terms.approval_status == "approved"
    assert registry.check(in_force).complete
    kept = path.parent / "superseded" / "vcs-family-support-1.0.0.yaml"
    assert kept.read_text() == old_text  # word for word, signatures and all
    assert not renewal.path.exists()


def test_a_completion_killed_after_keeping_the_old_version_is_finished_by_the_next(
    signed, monkeypatch
):
    import os

    from pipelines.governance import renewal as renewal_module
    from tests.approvers import sign_contracts

    path, _, registry = signed
    old_text = path.read_text()
    renewal = renew_agreement(path, *reversed(renewed_terms(load_contract(path))))
    sign_contracts(renewal.path.parent, registry.folder)
    replace = os.replace

    def killed_before_the_renewal_moves(src, dst):
        if Path(src) == renewal.path:
            raise KeyboardInterrupt("killed")
        replace(src, dst)

    with monkeypatch.context() as patched:
        patched.setattr(renewal_module.os, "replace", killed_before_the_renewal_moves)
        with pytest.raises(KeyboardInterrupt):
            complete_renewal(renewal.path, registry)
    assert path.read_text() == old_text and renewal.path.exists()
    assert (path.parent / "superseded" / "vcs-family-support-1.0.0.yaml").exists()

    replaced, in_force = complete_renewal(renewal.path, registry)
    assert (replaced.version, in_force.version) == ("1.0.0", "1.1.0")
    assert (path.parent / "superseded" / "vcs-family-support-1.0.0.yaml").read_text() == old_text


def test_the_next_version_is_the_next_minor_one():
    assert next_version("1.0.0") == "1.1.0" and next_version("2.7.3") == "2.8.0"
    with pytest.raises(ContractError, match="not X.Y.Z"):
        next_version("v1")


def _cli(home, *args):
    return hub_cli(home, *args, as_of="2029-01-02")


def _renew(home, *args):
    return _cli(home, "contracts", "renew", *args)


@pytest.fixture
def hub_home(tmp_path):
    """A hub home with the repo's agreements signed off, and the keys of the roles that sign
    vcs-family-support in files on the approvers' side (not in the hub's home)."""
    from pipelines.governance.approvals import party_organisation

    home = tmp_path / "home"
    shutil.copytree(REPO_ROOT / "contracts", home / "contracts")
    keys = sign_contracts(home / "contracts", home / "keys" / "approvers")
    vcs = load_contract(home / "contracts" / NAME)
    for n, requirement in enumerate(vcs.terms.required_signatures):
        key = keys[(requirement.role, party_organisation(vcs, requirement.party))]
        key.save(tmp_path / "approvers" / f"{n}.key")
    return home


def test_the_ig_officer_renews_from_the_command_line_and_the_old_version_stays_in_force_until_signed(
    hub_home,
):
    from pipelines.core.settings import Settings
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contracts import load_contracts

    path = hub_home / "contracts" / NAME
    old_text = path.read_text()
    old = load_contract(path)
    settings = Settings.from_env({"PLACELINK_HOME": str(hub_home)})

    result = _renew(hub_home, "vcs-family-support")

    assert result.exit_code == 0, result.output
    assert "written as version 1.1.0: review by 2030-03-31, expires 2032-03-31" in result.output
    assert "placelink contracts approve --key THEIR.key vcs-family-support" in result.output
    assert "siro" in result.output and "dpo" in result.output
    assert "Version 1.0.0 stays in force until the last signature" in result.output
    assert path.read_text() == old_text
    contracts, problems = load_contracts(hub_home / "contracts")
    assert not problems and contracts["vcs-family-support"].version == "1.0.0"
    started = [
        e for e in hub_audit_log(settings).events() if e["event"] == "contract_renewal_started"
    ]
    assert len(started) == 1 and started[0]["file"] == "renewals/vcs-family-support.yaml"
    listed = _cli(hub_home, "contracts", "list")
    assert (
        "vcs-family-support: renewal 1.1.0 (expires 2032-03-31) waiting for signatures: 0 of 3 signed"
        in listed.output
    )
    expiring = _cli(hub_home, "contracts", "expiring", "--days", "120")
    assert "expires 2029-03-31 (in 88 days); renewal 1.1.0" in expiring.output

    keys = sorted((hub_home.parent / "approvers").glob("*.key"))
    outputs = []
    for key in keys:
        signed = _cli(hub_home, "contracts", "approve", "vcs-family-support", "--key", str(key))
        assert signed.exit_code == 0, signed.output
        assert "signing the renewal of vcs-family-support" in signed.output
        outputs.append(signed.output)
        if key != keys[-1]:
            assert path.read_text() == old_text  # not in force before the last signature
    assert all("stays in force until every required role" in o for o in outputs[:-1])
    assert "The renewal is in force: " in outputs[-1]
    renewed = load_contract(path)
    assert (renewed.version, renewed.terms.approval_status) == ("1.1.0", "approved")
    kept = hub_home / "contracts" / "superseded" / "vcs-family-support-1.0.0.yaml"
    assert kept.read_text() == old_text  # word for word, signatures and all
    assert not (hub_home / "contracts" / "renewals" / NAME).exists()
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
    contracts, problems = load_contracts(hub_home / "contracts")
    assert not problems and contracts["vcs-family-support"].version == "1.1.0"

    # a second renewal, to a date given, keeps 1.1.0 beside 1.0.0 once signed
    again = _renew(hub_home, str(path), "--expires", "2033-06-30")
    assert again.exit_code == 0, again.output
    assert "as version 1.2.0: review by 2031-06-30, expires 2033-06-30" in again.output
    twice = _renew(hub_home, "vcs-family-support", "--years", "5")
    assert twice.exit_code == 2 and "already waits for signatures" in twice.output
    for key in keys:
        assert (
            _cli(
                hub_home, "contracts", "approve", "vcs-family-support", "--key", str(key)
            ).exit_code
            == 0
        )
    assert load_contract(path).version == "1.2.0"
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
    assert not (hub_home / "contracts" / "renewals").exists()
    assert len(list(hub_audit_log(settings).events())) == events


def test_the_ig_register_shows_a_renewal_waiting_for_signatures_until_it_is_in_force(
    hub_home, tmp_path
):
    import csv

    def register() -> tuple[str, dict]:
        out = tmp_path / "board pack"
        result = _cli(hub_home, "contracts", "register", "--out", str(out))
        assert result.exit_code == 0, result.output
        rows = csv.DictReader((out / "ig_register.csv").open())
        return (out / "ig_register.html").read_text(), {r["contract_id"]: r for r in rows}

    assert _renew(hub_home, "vcs-family-support").exit_code == 0
    html, rows = register()
    vcs = html[html.index('<section class="agreement" id="c-vcs-family-support"') :]
    vcs = vcs[: vcs.index("</section>")]
    assert "v1.0.0: " in vcs  # the version in force is the one the register describes
    assert "Version 1.1.0 (review by 2030-03-31; expires 2032-03-31) waits in" in vcs
    assert "signed by 0 of 3 required roles" in vcs and "stays in force until" in vcs
    assert "renewal v1.1.0 waiting: 0 of 3 signed" in html
    assert (rows["vcs-family-support"]["version"], rows["vcs-family-support"]["expires"]) == (
        "1.0.0",
        "2029-03-31",
    )
    assert {k: rows["vcs-family-support"][k] for k in ("renewal_version", "renewal_expires")} == {
        "renewal_version": "1.1.0",
        "renewal_expires": "2032-03-31",
    }
    assert rows["vcs-family-support"]["renewal_signatures"] == "0 of 3 signed"
    # the other agreements have no renewal, and say none
    assert rows["council-place-services"]["renewal_version"] == ""
    assert html.count("waits in <code>renewals/") == 1

    keys = sorted((hub_home.parent / "approvers").glob("*.key"))
    _cli(hub_home, "contracts", "approve", "vcs-family-support", "--key", str(keys[0]))
    html, rows = register()
    assert rows["vcs-family-support"]["renewal_signatures"] == "1 of 3 signed"
    assert "renewal v1.1.0 waiting: 1 of 3 signed" in html

    for key in keys[1:]:
        _cli(hub_home, "contracts", "approve", "vcs-family-support", "--key", str(key))
    html, rows = register()
    assert rows["vcs-family-support"]["version"] == "1.1.0"
    assert rows["vcs-family-support"]["renewal_version"] == "" and "waits in" not in html

    # a renewal file someone broke is shown as such; the version in force is unaffected
    broken = hub_home / "contracts" / "renewals" / NAME
    broken.parent.mkdir(exist_ok=True)
    broken.write_text("id: vcs-family-support\nversion: [\n")
    html, rows = register()
    assert "renewal invalid" in html and "is not a valid agreement" in html
    assert rows["vcs-family-support"]["status"] == "approved"
    assert rows["vcs-family-support"]["renewal_signatures"].startswith(
        "renewal in renewals/ is invalid"
    )
