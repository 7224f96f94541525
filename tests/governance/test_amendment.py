"""Amending an agreement to list evidence the partner kit learned to make after it was signed (the
full-name filter): a new version with only those items added, waiting unsigned in renewals/ while
the version in force stays in force, and put in its place when every role has signed it again."""

import re
import shutil

import pytest
import yaml

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.approvals import party_organisation
from pipelines.governance.contracts import ContractError, load_contract
from pipelines.governance.renewal import amend_agreement
from pipelines.partner_kit.contract_draft import items_not_listed, items_to_add
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.features import contract_features
from tests.approvers import hub_cli, sign_contracts

NAME = "vcs-family-support.yaml"
ID = "vcs-family-support"
DATASET = "family_support_enrolments"


def _without_full_name(text: str) -> str:
    """The agreement as it was before the kit made the full-name filter."""
    out, n = re.subn(r"(?m)^  - name: full_name_bloom\n(?:    .*\n)+", "", text)
    assert n >= 1
    return out


@pytest.fixture
def hub_home(tmp_path):
    """A hub home whose vcs agreement predates the full-name filter, signed off, with the keys of
    the roles that sign it in files on the approvers' side (not in the hub's home)."""
    home = tmp_path / "home"
    shutil.copytree(REPO_ROOT / "contracts", home / "contracts")
    path = home / "contracts" / NAME
    path.write_text(_without_full_name(path.read_text()))
    keys = sign_contracts(home / "contracts", home / "keys" / "approvers")
    vcs = load_contract(path)
    for n, requirement in enumerate(vcs.terms.required_signatures):
        key = keys[(requirement.role, party_organisation(vcs, requirement.party))]
        key.save(tmp_path / "approvers" / f"{n}.key")
    return home


def _cli(home, *args):
    return hub_cli(home, *args, as_of="2027-06-01")


def test_the_kit_says_which_keyed_items_an_older_agreement_does_not_list(hub_home):
    old = load_contract(hub_home / "contracts" / NAME)
    assert items_not_listed(old.dataset(DATASET)) == ["full_name_bloom"]
    current = load_contract(REPO_ROOT / "contracts" / NAME)
    assert items_not_listed(current.dataset(DATASET)) == []
    checked = _cli(hub_home, "contracts", "check")
    assert checked.exit_code == 0, checked.output
    assert (
        f"NOTE   {NAME}: the partner kit can also make full_name_bloom for {DATASET} from"
        in checked.output
    )
    assert f"`placelink contracts add-items {ID} full_name_bloom`" in checked.output
    # The other agreements list every item the kit makes of what they share: no note.
    assert checked.output.count("can also make") == 1


def test_an_amendment_adds_only_the_items_and_waits_unsigned(hub_home):
    path = hub_home / "contracts" / NAME
    before = path.read_text()
    old = load_contract(path)

    amended = amend_agreement(path, items_to_add(old, ["full_name_bloom"]))

    assert path.read_text() == before  # the version in force is untouched
    assert amended.path == path.parent / "renewals" / NAME
    assert amended.version == "1.1.0" and amended.terms.approval_status == "draft"
    assert amended.terms.approvals == [] and amended.content_sha256 != old.content_sha256
    assert (amended.terms.valid_from, amended.terms.expires) == (
        old.terms.valid_from,
        old.terms.expires,
    )
    item = amended.dataset(DATASET).item("full_name_bloom")
    assert (item.classification, item.logical_type, item.required) == ("token", "string", False)
    assert item.reason.startswith("256-bit keyed Bloom filter of the given and the family name's")
    assert item.reason.endswith(": evidence for linkage.")
    assert amended.dataset(DATASET).columns == (*old.dataset(DATASET).columns, "full_name_bloom")
    # Every line of the old file but the version, the status and the signatures is kept, in order,
    # comments included.
    kept = [
        line
        for line in before.splitlines()
        if not re.match(r"\s*(version|approval_status|approvals):|\s*- \{role", line)
    ]
    new_lines = iter(amended.path.read_text().splitlines())
    assert all(any(line == n for n in new_lines) for line in kept)
    assert before.splitlines()[0].startswith("#") and amended.path.read_text().startswith(
        before.splitlines()[0]
    )
    # The partner kit, given the amended agreement, makes the new item for the dataset.
    assert "full_name_bloom" in [
        f.name for f in contract_features(amended, amended.dataset(DATASET))
    ]
    assert "full_name_bloom" not in [f.name for f in contract_features(old, old.dataset(DATASET))]


def test_an_amendment_adds_evidence_of_identifiers_shared_never_a_new_identifier(hub_home):
    old = load_contract(hub_home / "contracts" / NAME)
    with pytest.raises(
        PartnerKitError,
        match="address_line_bloom .*shares nothing made of address_line.*contracts new",
    ):
        items_to_add(old, ["address_line_bloom"])
    with pytest.raises(
        PartnerKitError, match="given_name_bloom: vcs-family-support lists it already in every"
    ):
        items_to_add(old, ["given_name_bloom"])
    with pytest.raises(PartnerKitError, match="'referral_date': not an item the partner kit makes"):
        items_to_add(old, ["referral_date"])
    with pytest.raises(PartnerKitError, match="has no dataset 'nope'"):
        items_to_add(old, ["full_name_bloom"], dataset="nope")


def test_a_second_amendment_waits_for_the_first(hub_home):
    path = hub_home / "contracts" / NAME
    old = load_contract(path)
    amend_agreement(path, items_to_add(old, ["full_name_bloom"]))
    waiting = (path.parent / "renewals" / NAME).read_text()
    with pytest.raises(ContractError, match="already waits for signatures"):
        amend_agreement(path, items_to_add(old, ["full_name_bloom"]))
    assert (path.parent / "renewals" / NAME).read_text() == waiting


def test_the_ig_officer_amends_from_the_command_line_and_it_is_in_force_when_all_have_signed(
    hub_home,
):
    from pipelines.core.settings import Settings
    from pipelines.governance.audit import hub_audit_log
    from pipelines.governance.contracts import load_contracts

    path = hub_home / "contracts" / NAME
    old_text = path.read_text()
    settings = Settings.from_env({"PLACELINK_HOME": str(hub_home)})

    refused = _cli(hub_home, "contracts", "add-items", ID, "address_line_bloom")
    assert refused.exit_code == 2 and "shares nothing made of address_line" in refused.output
    assert not (path.parent / "renewals").exists()

    result = _cli(hub_home, "contracts", "add-items", ID, "full_name_bloom")

    assert result.exit_code == 0, result.output
    assert f"{DATASET}: adds full_name_bloom" in result.output
    assert "written as version 1.1.0" in result.output
    assert f"placelink contracts approve --key THEIR.key {ID}" in result.output
    assert "placelink run --retrain" in result.output
    assert path.read_text() == old_text
    started = [
        e for e in hub_audit_log(settings).events() if e["event"] == "contract_amendment_started"
    ]
    assert len(started) == 1
    assert started[0]["items_added"] == {DATASET: ["full_name_bloom"]}
    assert (started[0]["from_version"], started[0]["to_version"]) == ("1.0.0", "1.1.0")

    listed = _cli(hub_home, "contracts", "list")
    assert (
        f"{ID}: amendment 1.1.0 (expires 2029-03-31) waiting for signatures: 0 of 3 signed"
        in listed.output
    )
    again = _cli(hub_home, "contracts", "add-items", ID, "full_name_bloom")
    assert again.exit_code == 2 and "already waits for signatures" in again.output

    keys = sorted((hub_home.parent / "approvers").glob("*.key"))
    for key in keys:
        signed = _cli(hub_home, "contracts", "approve", ID, "--key", str(key))
        assert signed.exit_code == 0, signed.output
        if key != keys[-1]:
            assert path.read_text() == old_text  # not in force before the last signature
    assert f"Version 1.1.0 of {ID} is in force in place of version 1.0.0" in signed.output
    contracts, problems = load_contracts(hub_home / "contracts")
    assert not problems and contracts[ID].version == "1.1.0"
    assert contracts[ID].terms.approval_status == "approved"
    assert "full_name_bloom" in contracts[ID].dataset(DATASET).columns
    assert (path.parent / "superseded" / f"{ID}-1.0.0.yaml").read_text() == old_text
    checked = _cli(hub_home, "contracts", "check")
    assert checked.exit_code == 0 and "can also make" not in checked.output


class _IndentedLists(yaml.SafeDumper):
    """Lists indented under their key (``properties:`` then ``    -   name: ...``), as some
    editors and ruamel write them."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


@pytest.mark.parametrize("layout", ["lists indented, indent 4", "no newline at the end"])
def test_an_amendment_keeps_the_agreements_own_layout(tmp_path, layout):
    """Found by hand: with the schema's list indented, the items went in after the next
    dataset's first line, and the read-back failed with a YAML error instead of a clear one."""
    name = "council-place-services.yaml"
    document = yaml.safe_load(_without_full_name((REPO_ROOT / "contracts" / name).read_text()))
    if layout.startswith("lists indented"):
        text = yaml.dump(document, Dumper=_IndentedLists, sort_keys=False, indent=4, width=200)
    else:
        text = yaml.safe_dump(document, sort_keys=False, width=100).rstrip("\n")
    path = tmp_path / name
    path.write_text("# the council's own comment\n" + text)
    old = load_contract(path)

    amended = amend_agreement(path, items_to_add(old, ["full_name_bloom"]))

    assert amended.path.read_text().startswith("# the council's own comment\n")
    for dataset in old.datasets.values():
        assert amended.dataset(dataset.name).columns == (*dataset.columns, "full_name_bloom")
    assert amended.terms.model_dump(exclude={"approvals", "approval_status"}) == (
        old.terms.model_dump(exclude={"approvals", "approval_status"})
    )
