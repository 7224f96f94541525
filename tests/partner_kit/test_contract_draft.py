"""`placelink contracts new`: a new partner's agreement drafted from the identifiers it holds,
invalid until the IG officer writes every term only people can decide (issue 17)."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.governance.contracts import TO_COMPLETE, ContractError, load_contract
from pipelines.partner_kit.contract_draft import items_not_listed
from pipelines.partner_kit.prepare import prepare_extract
from tests.partner_kit.conftest import write_csv

WRITTEN = {
    "controllership": "separate",
    "lawful_basis_article6": "6(1)(e) public task: the clinic's commissioned service evaluation",
    "special_category_data": False,
    "national_data_opt_out_applies": False,
    "period_months": 60,
}


def _write_over(node):
    """What an IG officer does: every marked value written over (here with plain answers)."""
    if isinstance(node, dict):
        return {
            k: WRITTEN[k]
            if isinstance(v, str) and v.startswith(TO_COMPLETE) and k in WRITTEN
            else _write_over(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_write_over(v) for v in node]
    if isinstance(node, str) and node.startswith(TO_COMPLETE):
        return "Written by the IG officer."
    return node


# The new agreement every test here drafts: its id, partner and dataset.
CLINIC = ("clinic-referrals", "--partner", "clinic", "--dataset", "clinic_referrals")


def _new(tmp_path, *args):
    return CliRunner().invoke(
        main,
        ["contracts", "new", *args],
        env={"PLACELINK_HOME": str(tmp_path / "home"), "PLACELINK_CONTRACTS": None},
    )


def test_a_drafted_agreement_lists_what_the_kit_makes_and_is_invalid_until_written(
    tmp_path, key, now
):
    out = tmp_path / "drafts" / "clinic-referrals.yaml"
    result = _new(
        tmp_path,
        *CLINIC,
        "--identifiers",
        "given_name,family_name,date_of_birth",
        "--payload",
        "referral_date:date:required",
        "--date-format",
        "dd/mm/yyyy",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "terms/" not in result.output and "customProperties/dataSharingAgreement/purpose" in (
        result.output
    )
    with pytest.raises(
        ContractError, match=r"not written yet \(marked TO COMPLETE\).*lawful_basis"
    ):
        load_contract(out)
    names = [i["name"] for i in yaml.safe_load(out.read_text())["schema"][0]["properties"]]
    # names and date of birth only: no NHS number, sex or postcode item is asked for
    assert not {"nhs_number_token", "sex", "postcode_token", "lsoa_code"} & set(names)
    assert {"given_name_bloom", "family_name_first_part_token", "dob_year_token"} <= set(names)

    document = _write_over(yaml.safe_load(out.read_text()))
    out.write_text(yaml.safe_dump(document, sort_keys=False))
    contract = load_contract(out)
    assert contract.terms.approval_status == "draft" and contract.id == "clinic-referrals"
    recipient_roles = {r.role for r in contract.terms.required_signatures if r.party == "recipient"}
    assert recipient_roles == {"siro", "dpo"}  # copied from the hub's own agreements

    # the partner kit prepares an export in the partner's date format under it
    export = write_csv(
        tmp_path / "export.csv",
        ["record_id", "given_name", "family_name", "date_of_birth", "referral_date"],
        [["R1", "Ann", "Lee", "02/01/1990", "06/05/2024"]],
    )
    prepared = prepare_extract(
        contract, "clinic_referrals", export, tmp_path / "out", key, None, period="2026-10", now=now
    )
    columns = pq.read_table(prepared.extract_path).column_names
    assert "given_name_token" in columns and "referral_date" in columns


def test_a_draft_for_a_partner_abroad_declares_its_postcode_format(tmp_path):
    out = tmp_path / "abroad.yaml"
    result = _new(
        tmp_path,
        *CLINIC,
        "--identifiers",
        "given_name,family_name,postcode",
        "--postcode-format",
        "any",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    document = _write_over(yaml.safe_load(out.read_text()))
    out.write_text(yaml.safe_dump(document, sort_keys=False))
    abroad = load_contract(out).dataset("clinic_referrals")
    assert abroad.postcode_format == "any"
    # Postal codes of another country get the characters-in-sorted-order token; UK ones do not
    # (it would be empty in every delivery), and are not told it is missing.
    assert "postcode_unordered_token" in abroad.columns
    assert "postcode_variant_tokens" in abroad.columns
    uk = tmp_path / "uk.yaml"
    result = _new(
        tmp_path, *CLINIC, "--identifiers", "given_name,family_name,postcode", "--out", str(uk)
    )
    assert result.exit_code == 0, result.output
    uk.write_text(yaml.safe_dump(_write_over(yaml.safe_load(uk.read_text())), sort_keys=False))
    in_the_uk = load_contract(uk).dataset("clinic_referrals")
    assert "postcode_token" in in_the_uk.columns
    assert "postcode_unordered_token" not in in_the_uk.columns
    assert "postcode_unordered_token" not in items_not_listed(in_the_uk)
    assert "postcode_variant_tokens" not in in_the_uk.columns
    assert "postcode_variant_tokens" not in items_not_listed(in_the_uk)
    assert items_not_listed(abroad) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--identifiers", "forename"], r"'forename' are not ones the partner kit tokenises"),
        (
            ["--identifiers", "given_name", "--payload", "nhs_number"],
            r"an identifier or a hub item",
        ),
        (["--identifiers", "given_name", "--payload", "when:datetime"], r"type 'datetime'"),
        (["--identifiers", "given_name", "--date-format", "dd/mm/yy"], r"two-digit years"),
        (
            ["--identifiers", "given_name", "--postcode-format", "any"],
            r"needs postcode among the --identifiers",
        ),
    ],
)
def test_a_draft_the_command_refuses_writes_nothing_and_says_what_to_do(tmp_path, args, message):
    result = _new(
        tmp_path,
        *CLINIC,
        *args,
        "--out",
        str(tmp_path / "d.yaml"),
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert re.search(message, result.output), result.output
    assert not (tmp_path / "d.yaml").exists()
