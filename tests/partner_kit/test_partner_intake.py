"""A partner's real export, as it comes: its own date format, a spreadsheet, its own column
names, identifiers it does not hold, no postcode lookup. Each is read without hand editing,
or refused with a message naming the file, the contract and what to do (never a value)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from pipelines.contracts import ContractError, load_contract
from pipelines.partner_kit.prepare import prepare_extract

from tests.custom_partner import write_custom_contract
from tests.partner_kit.conftest import write_csv

HEADER = ["record_id", "given_name", "family_name", "date_of_birth", "referral_date"]
ISO_ROWS = [
    ["R1", "Ann", "Lee", "1990-01-02", "2024-05-06"],
    ["R2", "Bob", "Khan", "1985-11-30", "2024-07-01"],
    ["R3", "Cara", "Ng", "2001-12-25", "2024-08-09"],
]


def _uk(iso: str) -> str:
    year, month, day = iso.split("-")
    return f"{day}/{month}/{year}"


def _prepare(contract_path, raw, tmp_path, key, now, **kwargs):
    contract = load_contract(contract_path)
    return prepare_extract(contract, "clinic_referrals", raw, tmp_path / "out", key, None,
                           period="2026-10", now=now, **kwargs)


def _columns(prepared, *names):
    table = pq.read_table(prepared.extract_path)
    return {name: table.column(name).to_pylist() for name in names}


def test_uk_dates_declared_in_the_contract_give_the_same_tokens_as_iso(tmp_path, key, now):
    iso = _prepare(write_custom_contract(tmp_path / "iso"), write_csv(tmp_path / "iso.csv", HEADER, ISO_ROWS),
                   tmp_path / "a", key, now)
    uk_rows = [[r[0], r[1], r[2], _uk(r[3]), _uk(r[4])] for r in ISO_ROWS]
    uk = _prepare(write_custom_contract(tmp_path / "uk", date_formats="dd/mm/yyyy"),
                  write_csv(tmp_path / "uk.csv", HEADER, uk_rows), tmp_path / "b", key, now)
    wanted = ("date_of_birth_token", "dob_unordered_token", "year_of_birth", "referral_date")
    assert _columns(uk, *wanted) == _columns(iso, *wanted)
    assert uk.header.invalid_counts["date_of_birth"] == 0 and uk.header.invalid_counts["referral_date"] == 0


def test_uk_dates_without_the_declaration_are_counted_invalid_not_guessed(tmp_path, key, now):
    uk_rows = [[r[0], r[1], r[2], _uk(r[3]), _uk(r[4])] for r in ISO_ROWS]
    prepared = _prepare(write_custom_contract(tmp_path / "c"), write_csv(tmp_path / "uk.csv", HEADER, uk_rows),
                        tmp_path, key, now)
    assert prepared.header.invalid_counts["date_of_birth"] == 3
    assert prepared.header.invalid_counts["referral_date"] == 3
    assert _columns(prepared, "date_of_birth_token")["date_of_birth_token"] == [None] * 3


def test_declared_formats_read_only_text_of_their_shape(tmp_path, key, now):
    rows = [["R1", "Ann", "Lee", "02/01/1990", "06/05/2024"],
            ["R2", "Bob", "Khan", "30/11/85", "2024-07-01 00:00:00"],    # two-digit year: never year 85
            ["R3", "Cara", "Ng", "25-Dec-2001", "09/08/2024 13:45"],     # a format not declared
            ["R4", "Dev", "Roy", "31/02/2001", "1/7/2024"]]              # no 31 February
    prepared = _prepare(write_custom_contract(tmp_path / "c", date_formats=["dd/mm/yyyy"]),
                        write_csv(tmp_path / "x.csv", HEADER, rows), tmp_path, key, now)
    years = _columns(prepared, "year_of_birth", "referral_date")
    assert years["year_of_birth"] == [1990, None, None, None]
    assert [str(d) for d in years["referral_date"]] == ["2024-05-06", "2024-07-01", "2024-08-09", "2024-07-01"]
    assert prepared.header.invalid_counts["date_of_birth"] == 3


@pytest.mark.parametrize("declared, problem", [
    ("dd/mm/yy", "two-digit years"),
    ("dd/mm", "exactly once"),
    ("dd/mm/yyyy hh:mm", "neither a date part"),
    (["dd/mm/yyyy", "mm/dd/yyyy"], "read the same text differently"),
    ([], "give one format"),
])
def test_unusable_date_formats_are_refused_naming_the_file_and_dataset(tmp_path, declared, problem):
    path = write_custom_contract(tmp_path, date_formats=declared)
    with pytest.raises(ContractError) as error:
        load_contract(path)
    message = str(error.value)
    assert f"{path.name}: dataset 'clinic_referrals' customProperty 'dateFormats'" in message
    assert problem in message
