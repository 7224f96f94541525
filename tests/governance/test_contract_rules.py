"""The DSA terms a contract must carry, and what `placelink contracts check` says when one is wrong."""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import ContractError, load_contract, load_contracts

CONTRACTS = REPO_ROOT / "contracts"


def _terms(document):
    return document["customProperties"][0]["value"]


def _folder_with(tmp_path: Path, mutate, name: str = "nhs-acute-mental-health.yaml") -> Path:
    """A copy of the project's contracts with one of them changed by ``mutate``."""
    folder = tmp_path / "contracts"
    folder.mkdir()
    for path in CONTRACTS.glob("*.yaml"):
        (folder / path.name).write_text(path.read_text())
    document = yaml.safe_load((CONTRACTS / name).read_text())
    mutate(document)
    (folder / name).write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def test_every_project_contract_carries_every_dsa_term():
    contracts, problems = load_contracts(CONTRACTS)
    assert problems == {}
    for contract in contracts.values():
        t = contract.terms
        assert t.provider.name and t.recipient.name and t.controllership in ("joint", "separate")
        assert (
            t.purpose
            and t.prohibited_uses
            and t.legal_gateway
            and t.common_law_duty_of_confidentiality
        )
        assert t.lawful_basis_article6.startswith("6(1)(")
        assert not t.special_category_data or t.article9_condition.startswith("9(2)(")
        assert t.dpia_reference and t.retention.period_months > 0 and t.retention.deletion_method
        assert t.valid_from < t.review_by < t.expires
        # both sides sign off; nothing is approved by a list of names
        assert {r.party for r in t.required_signatures} == {
            "provider",
            "recipient",
        } and not t.approvers
    assert [c.id for c in contracts.values() if c.terms.national_data_opt_out_applies] == [
        "nhs-acute-mental-health"
    ]


def test_the_demo_agreements_cite_legal_bases_that_fit_what_they_allow():
    """docs/governance.md says why each provision fits; these are the mistakes it must not repeat."""
    contracts, _ = load_contracts(CONTRACTS)
    nhs, council, vcs = (
        contracts[k].terms
        for k in ("nhs-acute-mental-health", "council-place-services", "vcs-family-support")
    )
    for terms in (nhs, council, vcs):
        cited = " ".join(
            [
                terms.lawful_basis_article6,
                terms.article9_condition or "",
                terms.legal_gateway,
                terms.common_law_duty_of_confidentiality,
            ]
        )
        # s.251B (and 251C) of the 2012 Act are the duty to share for direct care: every flow here
        # is for evaluation, and every agreement prohibits use for decisions about individuals
        assert "251B" not in cited and "251C" not in cited
        assert (
            "Local Government Act 2000 s.2" not in cited
        )  # the well-being power, repealed in England
        assert "Sch 1 Pt 1 para 2" not in terms.legal_gateway  # a DPA condition, not a gateway
    assert any("direct care" in use for use in nhs.prohibited_uses)
    # NHS confidential patient information for evaluation: s.251 support, with the opt-out applied
    assert (
        "s.251" in nhs.common_law_duty_of_confidentiality
        and "regulation 5" in nhs.common_law_duty_of_confidentiality
    )
    assert nhs.national_data_opt_out_applies
    assert nhs.article9_condition.startswith("9(2)(h)") and "para 2(2)(f)" in nhs.article9_condition
    assert "NHS Act 2006 s.82" in nhs.legal_gateway
    # children's social care is outside the National Data Opt-out; the council relies on the public interest
    assert (
        not council.national_data_opt_out_applies
        and "Public interest" in council.common_law_duty_of_confidentiality
    )
    assert (
        "Children Act 2004 s.10" in council.legal_gateway
        and "Localism Act 2011 s.1" in council.legal_gateway
    )
    # the charity: legitimate interests (not a public authority), consent for confidentiality, no health data
    assert vcs.lawful_basis_article6.startswith(
        "6(1)(f)"
    ) and vcs.common_law_duty_of_confidentiality.startswith("Consent")
    assert not vcs.special_category_data and vcs.article9_condition is None


def test_health_data_without_an_article9_condition_is_refused(tmp_path):
    folder = _folder_with(tmp_path, lambda d: _terms(d).pop("article9_condition"))
    with pytest.raises(ContractError) as error:
        load_contract(folder / "nhs-acute-mental-health.yaml")
    message = str(error.value)
    assert "nhs-acute-mental-health.yaml" in message and "article9_condition" in message
    assert "Fix:" in message and "9(2)(h)" in message


def test_contract_without_the_special_category_flag_is_refused(tmp_path):
    folder = _folder_with(tmp_path, lambda d: _terms(d).pop("special_category_data"))
    with pytest.raises(
        ContractError, match="special_category_data': required term is missing. Fix"
    ):
        load_contract(folder / "nhs-acute-mental-health.yaml")


def test_data_that_is_not_special_category_needs_no_article9_condition(tmp_path):
    def plain(d):
        _terms(d).update(special_category_data=False)
        _terms(d).pop("article9_condition")

    folder = _folder_with(tmp_path, plain, "council-place-services.yaml")
    assert load_contract(folder / "council-place-services.yaml").terms.article9_condition is None


@pytest.mark.parametrize(
    "mutate, field, fix",
    [
        (lambda d: _terms(d).pop("dpia_reference"), "dpia_reference", "DPIA"),
        (
            lambda d: _terms(d).update(lawful_basis_article6="9(2)(h) health or social care"),
            "lawful_basis_article6",
            "6(1)(e) public task",
        ),
        (lambda d: _terms(d).update(expires="2026-01-01"), "expires", "after valid_from"),
        (
            lambda d: _terms(d).update(approval_status="signed"),
            "approval_status",
            "approved, suspended",
        ),
        (
            lambda d: _terms(d).update(national_data_opt_out_applies="maybe"),
            "national_data_opt_out_applies",
            "true",
        ),
        (
            lambda d: d["schema"][0]["properties"][0].update(classification="sensitive"),
            "ae_attendances.record_token",
            "token, quasi_identifier, area, payload",
        ),
    ],
)
def test_check_names_the_file_the_field_and_the_fix_and_fails(tmp_path, mutate, field, fix):
    folder = _folder_with(tmp_path, mutate)
    result = CliRunner().invoke(main, ["contracts", "check", "--dir", str(folder)])
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("ERROR")]
    assert error_lines, result.output
    assert any(
        "nhs-acute-mental-health.yaml" in line and field in line and "Fix" in line and fix in line
        for line in error_lines
    ), result.output
    # the other agreements are still checked and reported valid
    assert result.output.count("ok     ") == 2


def test_check_reports_a_yaml_error_with_its_line(tmp_path):
    folder = _folder_with(tmp_path, lambda d: None)
    (folder / "zz-draft.yaml").write_text("id: zz-draft\nschema:\n  - name: [unclosed\n")
    result = CliRunner().invoke(main, ["contracts", "check", "--dir", str(folder)])
    assert result.exit_code == 1
    assert "zz-draft.yaml: not valid YAML at line" in result.output
    assert "Fix the YAML syntax" in result.output


def test_check_passes_on_the_project_contracts():
    result = CliRunner().invoke(main, ["contracts", "check", "--dir", str(CONTRACTS)])
    assert result.exit_code == 0, result.output
    assert "3 valid, 0 with errors" in result.output
