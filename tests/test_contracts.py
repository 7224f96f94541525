import datetime as dt
from pathlib import Path

import pytest
import yaml

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import ContractError, load_contract, load_contracts

CONTRACTS = REPO_ROOT / "contracts"


def test_project_contracts_are_valid():
    contracts, problems = load_contracts(CONTRACTS)
    assert problems == {}
    assert {c.partner_id for c in contracts.values()} == {"council", "nhs", "vcs"}
    assert any(c.terms.national_data_opt_out_applies for c in contracts.values())


def test_every_data_item_has_a_classification_and_reason():
    for contract in load_contracts(CONTRACTS)[0].values():
        for dataset in contract.datasets.values():
            assert all(i.reason and i.classification for i in dataset.items)
            assert "record_token" in dataset.columns


def _broken(tmp_path, mutate) -> Path:
    document = yaml.safe_load((CONTRACTS / "vcs-family-support.yaml").read_text())
    mutate(document)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _terms(document):
    return document["customProperties"][0]["value"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: _terms(d).pop("dpia_reference"), "dpia_reference"),
        (
            lambda d: _terms(d).update(lawful_basis_article6="because we want to"),
            "not a UK GDPR Article 6",
        ),
        (lambda d: _terms(d).update(expires="2020-01-01"), "expires"),
        (
            lambda d: d["schema"][0]["properties"][0].update(classification="secret"),
            "classification 'secret'",
        ),
        (lambda d: d.pop("id"), "id"),
        (lambda d: _terms(d).pop("required_signatures"), "required_signatures"),
        (
            lambda d: _terms(d).update(
                required_signatures=[{"role": "siro", "party": "recipient"}]
            ),
            "required_signatures names no role at the provider",
        ),
        (
            lambda d: _terms(d).update(
                required_signatures=[{"role": "chief_executive", "party": "provider"}]
            ),
            "required_signatures",
        ),
    ],
)
def test_bad_contracts_name_file_and_field(tmp_path, mutate, message):
    with pytest.raises(ContractError, match=message) as error:
        load_contract(_broken(tmp_path, mutate))
    assert "broken.yaml" in str(error.value)


def test_yaml_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("id: x\nschema: [unclosed\n")
    with pytest.raises(ContractError, match=r"bad\.yaml: not valid YAML at line"):
        load_contract(path)


def test_invalid_contract_does_not_hide_the_others(tmp_path):
    for path in CONTRACTS.glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "zz-broken.yaml").write_text("id: [\n")
    contracts, problems = load_contracts(tmp_path)
    assert len(contracts) == 3 and list(problems) == [tmp_path / "zz-broken.yaml"]


def test_contract_in_force_only_when_approved_signed_and_in_window(small_place):
    template = load_contract(CONTRACTS / "vcs-family-support.yaml")
    assert not template.in_force(dt.date(2026, 11, 1))[0]  # the repo's draft, unsigned
    contract = small_place.contracts["vcs-family-support"]  # signed off by every required role
    assert contract.in_force(dt.date(2026, 11, 1))[0]
    assert not contract.in_force(dt.date(2026, 1, 1))[0]
    assert "expired" in contract.in_force(dt.date(2030, 1, 1))[1]
