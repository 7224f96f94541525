"""Approvals as signatures: an agreement is in force only when every required role has signed
its current content; a significant edit voids the signatures, an editorial one does not."""

import re
import shutil

import pytest
from approvers import sign_contracts
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.settings import REPO_ROOT, Settings
from pipelines.core.warehouse import connect
from pipelines.exchange.keys import ApproverKey
from pipelines.governance.approvals import ApproverRegistry, load_hub_contracts, sign_contract
from pipelines.governance.audit import hub_audit_log
from pipelines.governance.contracts import load_contract
from pipelines.governance.flows import flow_statuses
from pipelines.hub.ingest import receive_inbox
from pipelines.linkage.person_keys import forget_identities
from pipelines.tooling.synth.study import DELIVERED_AT

NHS = "nhs-acute-mental-health"


def _edit(path, old, new):
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def _without_signatures(path, keep: int = 0):
    """The agreement still says approved, with only the first ``keep`` signatures left."""
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == "approvals:")
    entries = [i for i in range(start + 1, len(lines)) if lines[i].startswith("    - {role:")]
    drop = set(entries[keep:])
    path.write_text("".join(line for i, line in enumerate(lines) if i not in drop))


def _check(home, *args):
    return CliRunner().invoke(
        main, ["contracts", "check", *args], env={"PLACELINK_HOME": str(home)}
    )


def test_the_repositorys_templates_are_unsigned_drafts_and_check_says_what_each_needs(tmp_path):
    result = _check(tmp_path / "no-hub-yet")
    assert result.exit_code == 0, result.output
    assert "the repository's templates" in result.output
    nhs = next(line for line in result.output.splitlines() if line.startswith(f"ok     {NHS}.yaml"))
    assert "draft; signed by 0 of 4 required roles" in nhs
    assert "Caldicott Guardian of Northshire NHS Foundation Trust (provider)" in nhs
    assert "Data Protection Officer of Northshire Place Partnership Data Hub" in nhs
    for contract in (load_contract(REPO_ROOT / "contracts" / f"{NHS}.yaml"),):
        assert contract.terms.approval_status == "draft" and contract.terms.approvals == []


@pytest.fixture
def hub(small_place, tmp_path):
    """A hub whose agreements are signed off, with the NHS A&E extract in its inbox."""
    settings = small_place.stage_hub(
        tmp_path / "home", datasets=["ae_attendances", "csc_referrals"]
    )
    return settings, settings.contracts_dir / f"{NHS}.yaml"


def _receive(settings):
    contracts, problems = load_hub_contracts(settings)
    with connect(settings) as con:
        receipts = receive_inbox(
            settings,
            con,
            contracts,
            {},
            hub_audit_log(settings),
            erase_identities=forget_identities,
        )
    return {r.file_name.split("__")[0]: r for r in receipts}, contracts


@pytest.mark.parametrize("keep, missing", [(0, 4), (3, 1)])
def test_an_unsigned_or_under_signed_agreement_fails_check_and_holds_its_flow(hub, keep, missing):
    settings, nhs = hub
    _without_signatures(nhs, keep)
    result = _check(settings.home)
    assert result.exit_code == 1, result.output
    error = next(
        line for line in result.output.splitlines() if line.startswith(f"ERROR  {NHS}.yaml")
    )
    assert f"is approved, but not signed by {missing} of the 4 required roles" in error
    assert (
        "Data Protection Officer of Northshire Place Partnership Data Hub" in error
    )  # the last one
    assert "The hub holds its flow" in error and "placelink contracts approve --key" in error
    assert "ok     council-place-services.yaml" in result.output  # the others are unaffected

    receipts, contracts = _receive(settings)
    held = receipts[NHS]
    assert held.status == "quarantined" and "check 'contract in force'" in held.reason
    assert f"not signed by {missing} of the 4 required roles" in held.reason
    assert receipts["council-place-services"].status == "accepted"
    status = flow_statuses(contracts, {}, settings.today())[NHS]
    assert (status.status, status.in_use) == ("unsigned", False)


def test_a_significant_edit_voids_the_signatures_and_holds_the_flow_until_re_signed(
    hub, small_place
):
    settings, nhs = hub
    _edit(nhs, "      period_months: 84\n", "      period_months: 120\n")
    result = _check(settings.home)
    assert result.exit_code == 1
    assert "not signed by 4 of the 4 required roles" in result.output
    assert (
        result.output.count(": void: the agreement's signed content changed after it was signed")
        == 4
    )
    assert "(4 signature(s) on it do not count: void)" in result.output
    receipts, _ = _receive(settings)
    assert receipts[NHS].status == "quarantined"

    # every approver signs the new terms again: in force, and the extract can be released
    registry = ApproverRegistry(settings.approver_keys)
    for requirement in load_contract(nhs).terms.required_signatures:
        contract = load_contract(nhs)
        organisation = (
            contract.terms.provider if requirement.party == "provider" else contract.terms.recipient
        ).name
        sign_contract(
            nhs, small_place.approver_keys[(requirement.role, organisation)], DELIVERED_AT, registry
        )
    again = _check(settings.home)
    assert (
        again.exit_code == 0
        and f"ok     {NHS}.yaml: {NHS} v1.0.0, approved; signed by 4 of 4" in again.output
    )


@pytest.mark.parametrize(
    "old, new",
    [
        ("    review_by: '2027-03-31'\n", "    review_by: '2027-06-30'\n"),
        ("version: 1.0.0\n", "version: 1.0.1\n"),
        (
            "      value: Keyed token of the full date of birth.\n",
            "      value: Keyed token of the whole date of birth.\n",
        ),
        (
            "  description: Type 1 A&E attendances (one row per attendance).\n",
            "  description: Type 1 A&E attendances, one row each.\n",
        ),
    ],
)
def test_an_editorial_edit_keeps_the_signatures(hub, old, new):
    settings, nhs = hub
    text = nhs.read_text()
    nhs.write_text(text.replace(old, new, 1))
    assert nhs.read_text() != text
    result = _check(settings.home)
    assert result.exit_code == 0, result.output
    assert (
        f"{NHS}.yaml: {NHS} v1.0." in result.output
        and "approved; signed by 4 of 4 required roles" in result.output
    )
    receipts, _ = _receive(settings)
    assert receipts[NHS].status == "accepted"


def test_a_signature_counts_only_from_a_registered_key_in_its_role_over_the_exact_statement(
    hub, small_place
):
    settings, nhs = hub
    registry = ApproverRegistry(settings.approver_keys)
    # a stranger holding a key that claims to be the Trust's Caldicott Guardian, not registered
    stranger = ApproverKey.generate(
        "Someone Else", "caldicott_guardian", "Northshire NHS Foundation Trust"
    )
    _without_signatures(nhs, keep=3)  # the hub's DPO signature removed
    sign_contract(nhs, stranger, DELIVERED_AT, registry)
    contract = load_contract(nhs)
    check = registry.check(contract)
    assert not check.complete
    assert any("is not in the hub's approver registry" in c.problem for c in check.void)
    # a registered key used for a role it was not registered for: edit the entry by hand
    text = nhs.read_text()
    siro = small_place.approver_keys[("siro", "Northshire NHS Foundation Trust")]
    line = next(line for line in text.splitlines() if siro.fingerprint in line)
    nhs.write_text(text.replace(line, line.replace("role: siro", "role: caldicott_guardian")))
    check = registry.check(load_contract(nhs))
    assert any(
        "is registered to" in c.problem and "not as Caldicott Guardian" in c.problem
        for c in check.void
    )
    # an entry whose time was changed no longer verifies
    nhs.write_text(
        text.replace(
            line, re.sub(r"signed_at: '[^']+'", "signed_at: '2026-01-01T00:00:00+00:00'", line)
        )
    )
    check = registry.check(load_contract(nhs))
    assert any("does not verify" in c.problem for c in check.void)


def test_approvers_sign_with_their_own_keys_and_the_last_signature_approves(tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(REPO_ROOT / "contracts", home / "contracts")
    monkeypatch.setenv("PLACELINK_HOME", str(home))
    monkeypatch.delenv("PLACELINK_CONTRACTS", raising=False)
    vcs = home / "contracts" / "vcs-family-support.yaml"
    header = vcs.read_text().splitlines()[:2]
    run = CliRunner().invoke
    hub = "Northshire Place Partnership Data Hub (hosted by Northshire Borough Council)"
    people = [
        (
            "M. Hughes",
            "information_governance_lead",
            "Northshire Family Hub Trust (registered charity)",
        ),
        ("K. Adeyemi", "siro", hub),
        ("A. Okafor", "dpo", hub),
    ]
    for n, (name, role, organisation) in enumerate(people):
        key = tmp_path / "approvers" / f"{role}.key"
        made = run(
            main,
            [
                "contracts",
                "approver-keygen",
                "--name",
                name,
                "--role",
                role,
                "--organisation",
                organisation,
                "--out",
                str(key),
            ],
        )
        assert made.exit_code == 0, made.output
        assert oct(key.stat().st_mode & 0o777) == "0o600" and not str(key).startswith(str(home))
        registered = run(
            main, ["hub", "register-approver-key", "--public-key", str(key.with_suffix(".pub"))]
        )
        assert (
            registered.exit_code == 0
            and "vcs-family-support" in registered.output.split("may sign:")[1]
        )
        signed = run(main, ["contracts", "approve", "vcs-family-support", "--key", str(key)])
        assert signed.exit_code == 0, signed.output
        assert f"Signed by {n + 1} of 3 required roles" in signed.output
    assert "approval_status is now approved" in signed.output
    assert vcs.read_text().splitlines()[:2] == header  # the file's comments are kept
    contract = load_hub_contracts(Settings.from_env())[0]["vcs-family-support"]
    assert contract.terms.approval_status == "approved" and contract.signed_off
    events = [e for e in hub_audit_log(Settings.from_env()).events()]
    assert [e["event"] for e in events].count("contract_signed") == 3
    assert all(e["actor"].startswith("user:") for e in events)

    # a key for a role the agreement does not ask for is refused, and the file is left alone
    before = vcs.read_text()
    run(
        main,
        [
            "contracts",
            "approver-keygen",
            "--name",
            "X",
            "--role",
            "caldicott_guardian",
            "--organisation",
            "Northshire Family Hub Trust (registered charity)",
            "--out",
            str(tmp_path / "x.key"),
        ],
    )
    refused = run(main, ["contracts", "approve", str(vcs), "--key", str(tmp_path / "x.key")])
    assert refused.exit_code == 2
    assert (
        "does not ask for a signature from Caldicott Guardian of Northshire Family Hub Trust"
        in refused.output
    )
    assert "It needs: Information Governance Lead of" in refused.output
    assert vcs.read_text() == before


def test_signed_hub_copies_of_the_templates(tmp_path):
    """The tests' own signing helper leaves every agreement approved and signed off."""
    folder = tmp_path / "contracts"
    shutil.copytree(REPO_ROOT / "contracts", folder)
    keys = sign_contracts(folder, tmp_path / "approvers")
    assert (
        len(keys) == 7
    )  # CG + SIRO at the Trust and the council, the charity's IG lead, the hub's SIRO and DPO
    contracts, _ = load_hub_contracts(Settings.from_env({"PLACELINK_HOME": str(tmp_path)}), folder)
    assert not any(
        c.signed_off for c in contracts.values()
    )  # this hub's registry does not know them
    registry = ApproverRegistry(tmp_path / "approvers")
    assert all(
        registry.check(c).complete and c.terms.approval_status == "approved"
        for c in contracts.values()
    )
