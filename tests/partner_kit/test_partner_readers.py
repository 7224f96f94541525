"""Reading raw extracts: clear errors for files a partner can fix, never a crash on a bad value."""

from __future__ import annotations

import datetime as dt
import os
import re

import polars as pl
import pytest

from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.features import IDENTITY_COLUMNS
from pipelines.partner_kit.readers import (
    allowed_raw_columns,
    check_raw_columns,
    check_record_ids,
    parse_payload,
    read_opt_outs,
    read_postcode_lookup,
    read_raw_extract,
)

AE = [
    *IDENTITY_COLUMNS,
    "arrival_date",
    "arrival_mode",
]


def test_csv_is_read_as_text(raw_csv):
    path = raw_csv(
        AE,
        [["R1", "0123456789", "Ann", "Lee", "1990-01-02", "F", "AB1 2CD", "2024-01-01", "other"]],
    )
    frame = read_raw_extract(path)
    assert frame.columns == AE
    assert frame["nhs_number"].to_list() == ["0123456789"]  # leading zero kept: nothing is guessed
    assert all(dtype == pl.String for dtype in frame.dtypes)


def test_parquet_is_recognised_by_content_and_typed_columns_read_as_text(tmp_path):
    path = tmp_path / "extract.csv"  # misleading extension on purpose
    pl.DataFrame({"record_id": [1, 2], "date_of_birth": [dt.date(1990, 1, 2), None]}).write_parquet(
        path
    )
    frame = read_raw_extract(path)
    assert frame.to_dict(as_series=False) == {
        "record_id": ["1", "2"],
        "date_of_birth": ["1990-01-02", None],
    }


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(PartnerKitError, match="raw extract empty.csv is empty"):
        read_raw_extract(path)


@pytest.mark.parametrize(
    "content, kind",
    [
        (b"\x89PNG\r\n\x1a\n" + os.urandom(200), "a PNG image"),
        (b"PK\x03\x04" + os.urandom(200), "a ZIP archive"),
        (b"\x00\x01\x02" + os.urandom(500), "a binary file"),
    ],
)
def test_not_csv_or_parquet(tmp_path, content, kind):
    path = tmp_path / "extract.csv"
    path.write_bytes(content)
    with pytest.raises(
        PartnerKitError, match=f"extract.csv is {re.escape(kind)}.*not a CSV or Parquet file"
    ):
        read_raw_extract(path)


def test_not_utf8_says_how_to_save(tmp_path):
    path = tmp_path / "extract.csv"
    path.write_bytes("record_id,given_name\nR1,Siobhán\n".encode("cp1252"))
    with pytest.raises(PartnerKitError, match="not UTF-8.*CSV UTF-8"):
        read_raw_extract(path)


def test_bad_bytes_after_the_first_block_also_say_how_to_save(tmp_path):
    path = tmp_path / "late.csv"
    body = b"record_id,given_name\n" + b"R1,Ann\n" * 20000 + "R2,Siobhán\n".encode("cp1252")
    path.write_bytes(body)
    with pytest.raises(PartnerKitError, match="late.csv could not be read as CSV: it is not UTF-8"):
        read_raw_extract(path)


def test_ragged_rows_and_repeated_headers(raw_csv, tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("record_id,given_name\nR1,Ann,extra\n")
    with pytest.raises(PartnerKitError, match="ragged.csv.*more fields than the header"):
        read_raw_extract(ragged)
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("record_id,given_name,given_name\nR1,Ann,Ann\n")
    with pytest.raises(PartnerKitError, match="repeated.csv.*more than once"):
        read_raw_extract(repeated)


def test_missing_record_id_does_not_echo_the_first_row(raw_csv, nhs_contract):
    # A file without a header row: its first data row would be taken as column names.
    path = raw_csv(["9434765870", "Siobhan", "OBrien"], [["9434765919", "Ann", "Lee"]])
    frame = read_raw_extract(path)
    with pytest.raises(PartnerKitError) as error:
        check_raw_columns(frame, path, nhs_contract, nhs_contract.dataset("ae_attendances"))
    message = str(error.value)
    assert "no 'record_id' column" in message and "extract.csv" in message
    assert "9434765870" not in message and "Siobhan" not in message


def test_unknown_column_names_file_column_allowed_and_what_to_do(raw_csv, nhs_contract):
    dataset = nhs_contract.dataset("ae_attendances")
    path = raw_csv(AE + ["home_address"], [["R1"] + [""] * 8 + ["1 High St"]])
    with pytest.raises(PartnerKitError) as error:
        check_raw_columns(read_raw_extract(path), path, nhs_contract, dataset)
    message = str(error.value)
    assert "extract.csv" in message and "'home_address'" in message
    assert "allowed: record_id, nhs_number" in message and "arrival_mode" in message
    assert "Remove the column" in message and "IG officer" in message
    assert "1 High St" not in message


def test_missing_payload_column_is_named(raw_csv, nhs_contract):
    path = raw_csv(AE[:-1], [["R1"] + [""] * 7])
    with pytest.raises(PartnerKitError, match="lacks column\\(s\\) arrival_mode"):
        check_raw_columns(
            read_raw_extract(path), path, nhs_contract, nhs_contract.dataset("ae_attendances")
        )


def test_family_id_is_allowed_only_where_the_contract_tokenises_it(vcs_contract, nhs_contract):
    assert "family_id" in allowed_raw_columns(
        vcs_contract, vcs_contract.dataset("family_support_enrolments")
    )
    assert "family_id" not in allowed_raw_columns(
        nhs_contract, nhs_contract.dataset("ae_attendances")
    )


def test_record_ids_must_be_present_and_unique(raw_csv):
    duplicated = raw_csv(["record_id"], [["R1"], ["R2"], [" R1 "]], name="dup.csv")
    with pytest.raises(
        PartnerKitError, match="dup.csv: record_id is not unique .*line\\(s\\) 2, 4"
    ):
        check_record_ids(read_raw_extract(duplicated), duplicated)
    blank = raw_csv(["record_id", "given_name"], [["R1", "Ann"], ["", "Bob"]], name="blank.csv")
    with pytest.raises(PartnerKitError, match="blank.csv: record_id is empty on line\\(s\\) 3"):
        check_record_ids(read_raw_extract(blank), blank)


def test_malformed_payload_values_become_null_and_are_counted(council_contract):
    frame = pl.DataFrame(
        {
            "term_start_date": ["2024-09-02", "02/09/2024", "", "2024-13-01"],
            "sessions_possible": ["380", "three hundred", "99999999999", " 12 "],
            "sessions_attended": ["350", "", "-1", "+7"],
        }
    )
    payload = parse_payload(frame, council_contract, council_contract.dataset("school_attendance"))
    assert payload.columns["term_start_date"].to_list() == [dt.date(2024, 9, 2), None, None, None]
    assert payload.columns["sessions_possible"].dtype == pl.Int32
    assert payload.columns["sessions_possible"].to_list() == [380, None, None, 12]
    assert payload.columns["sessions_attended"].to_list() == [350, None, -1, 7]
    assert payload.invalid == {"term_start_date": 2, "sessions_possible": 2, "sessions_attended": 0}


def test_coded_payload_values_outside_the_contract_are_not_sent(nhs_contract):
    frame = pl.DataFrame(
        {
            "arrival_date": ["2024-01-01"] * 4,
            "arrival_mode": ["Walk_In", " other ", "helicopter", None],
        }
    )
    payload = parse_payload(frame, nhs_contract, nhs_contract.dataset("ae_attendances"))
    assert payload.columns["arrival_mode"].to_list() == ["walk_in", "other", None, None]
    assert payload.invalid["arrival_mode"] == 1


def test_reference_files(tmp_path, postcode_lookup):
    lookup = read_postcode_lookup(postcode_lookup)
    assert lookup.sort("postcode")["postcode"].to_list() == ["AB1 2CD", "NS1 4XY", "NS2 9ZZ"]
    clash = tmp_path / "clash.csv"
    clash.write_text("postcode,lsoa_code,ward_code\nAB1 2CD,E01,E05\nab12cd,E02,E05\n")
    with pytest.raises(
        PartnerKitError, match="clash.csv: 2 rows give different areas for the same postcode"
    ):
        read_postcode_lookup(clash)
    opt_outs = tmp_path / "opt_outs.csv"
    opt_outs.write_text("nhs_number\n943 476 5870\nrubbish\n")
    assert read_opt_outs(opt_outs).to_list() == ["9434765870"]
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("nhs\n9434765870\n")
    with pytest.raises(
        PartnerKitError, match="opt-out list wrong.csv has no column\\(s\\) nhs_number"
    ):
        read_opt_outs(wrong)
