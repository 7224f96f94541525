"""An address line written over several columns of a partner's export (house number, street),
joined by the mapping file (issue 17: FEBRL, the first public benchmark run as a new partner,
holds the first line of the address as street_number and address_1, as many UK exports do)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from pipelines.governance.contracts import load_contract
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.prepare import prepare_extract
from tests.custom_partner import NAMES_AND_DATE_OF_BIRTH, write_custom_contract
from tests.partner_kit.conftest import write_csv

SPLIT_HEADER = ["Ref", "given_name", "family_name", "date_of_birth", "Number", "Street", "Referred"]
SPLIT_ROWS = [
    ["R1", "Ann", "Lee", "1990-01-02", " 12", "high st ", "2024-05-06"],
    ["R2", "Bob", "Khan", "1985-11-30", "", "Flat 3, Mill Lane", "2024-07-01"],
    ["R3", "Cara", "Ng", "2001-12-25", " ", "", "2024-08-09"],
]
ONE_LINE = [
    ["R1", "Ann", "Lee", "1990-01-02", "12 High Street", "2024-05-06"],
    ["R2", "Bob", "Khan", "1985-11-30", "Flat 3 Mill Lane", "2024-07-01"],
    ["R3", "Cara", "Ng", "2001-12-25", "", "2024-08-09"],
]
MAPPING = """\
columns:
  record_id: Ref
  address_line: {join: [Number, Street]}
  referral_date: Referred
"""


def _prepare(tmp_path, name, export, key, now, mapping=None):
    contract = load_contract(
        write_custom_contract(
            tmp_path / f"{name}-contract", identity=(*NAMES_AND_DATE_OF_BIRTH, "address_line")
        )
    )
    return prepare_extract(
        contract,
        "clinic_referrals",
        export,
        tmp_path / name,
        key,
        None,
        period="2026-10",
        now=now,
        mapping=mapping,
    )


def test_an_address_line_over_two_columns_gives_the_tokens_of_the_same_line_in_one(
    tmp_path, key, now
):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    joined = _prepare(
        tmp_path,
        "joined",
        write_csv(tmp_path / "split.csv", SPLIT_HEADER, SPLIT_ROWS),
        key,
        now,
        mapping,
    )
    header = ["record_id", "given_name", "family_name", "date_of_birth", "address_line"]
    plain = _prepare(
        tmp_path,
        "plain",
        write_csv(tmp_path / "one.csv", [*header, "referral_date"], ONE_LINE),
        key,
        now,
    )
    column = [pq.read_table(p.extract_path).column("address_line_bloom") for p in (joined, plain)]
    assert column[0].to_pylist() == column[1].to_pylist()
    assert column[0].null_count == 1  # both parts blank: missing, not an address of spaces
    assert joined.report["missing_values"]["address_line"] == 1
    assert joined.report["invalid_values"]["address_line"] == 0


def test_only_the_address_line_can_be_joined_and_a_join_needs_two_columns(tmp_path, key, now):
    export = write_csv(tmp_path / "split.csv", SPLIT_HEADER, SPLIT_ROWS)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.replace("address_line: {join", "family_name: {join"))
    with pytest.raises(PartnerKitError, match="'family_name' cannot be joined"):
        _prepare(tmp_path, "a", export, key, now, mapping)
    mapping.write_text(MAPPING.replace("[Number, Street]", "[Street]"))
    with pytest.raises(PartnerKitError, match=r"'columns.address_line.join'"):
        _prepare(tmp_path, "b", export, key, now, mapping)
