"""prepare_extract end to end: minimisation, opt-outs, counts, files and header."""

from __future__ import annotations

import json
import re

import polars as pl
import pyarrow.parquet as pq
import pytest

from pipelines.exchange.extract_file import (
    EXTRACT_FORMAT,
    ExtractFileError,
    ExtractHeader,
    read_extract_header,
)
from pipelines.partner_kit import PartnerKitError, prepare_extract
from pipelines.partner_kit.features import IDENTITY_COLUMNS
from pipelines.partner_kit.tokens import tokenise

RAW_IDENTITY = IDENTITY_COLUMNS
# The raw columns whose values must never reach the hub or the counts report.
DIRECT_IDENTIFIERS = tuple(c for c in IDENTITY_COLUMNS if c != "sex")


@pytest.fixture()
def prepared(tmp_path, nhs_contract, ae_csv, kit):
    return kit(nhs_contract, "ae_attendances", ae_csv, tmp_path / "out")


def test_files_are_named_and_placed_as_agreed(prepared, tmp_path):
    out = tmp_path / "out"
    stem = f"nhs-acute-mental-health__ae_attendances__2026-10__{prepared.header.extract_id[:8]}"
    assert prepared.extract_path == out / f"{stem}.parquet"
    assert prepared.lookup_path == out / "partner-only" / f"{stem}.lookup.parquet"
    assert prepared.report_path == out / "partner-only" / f"{stem}.report.json"
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.parquet", "partner-only"]


def test_hub_file_has_exactly_the_contract_columns_typed(prepared, nhs_contract):
    hub = pl.read_parquet(prepared.extract_path)
    assert tuple(hub.columns) == nhs_contract.dataset("ae_attendances").columns
    # sex is sent as is (a quasi-identifier the contract lists); no other raw identity column is.
    assert not (set(RAW_IDENTITY) - {"sex"}) & set(hub.columns)
    schema = hub.schema
    assert schema["record_token"] == pl.String and schema["given_name_bloom"] == pl.Binary
    assert schema["year_of_birth"] == pl.Int16 and schema["arrival_date"] == pl.Date
    assert hub["given_name_bloom"].drop_nulls().bin.size().unique().to_list() == [32]


def test_no_raw_identifier_value_reaches_the_hub_file(prepared, ae_csv):
    data = prepared.extract_path.read_bytes()
    hub_values = {
        str(v)
        for column in pl.read_parquet(prepared.extract_path).iter_columns()
        for v in column.drop_nulls().to_list()
    }
    raw = pl.read_csv(ae_csv, infer_schema=False)
    for column in DIRECT_IDENTIFIERS:
        for value in raw[column].drop_nulls().to_list():
            assert value not in hub_values, column
            # Search the file's bytes too (metadata, statistics), but only for values long enough
            # that compressed binary cannot contain them by chance (a record id like 'A4' can).
            if len(value) >= 6:
                assert value.encode() not in data, column
    for normalised in (b"OBRIEN", b"SIOBHAN", b"ROBERT", b"SMITHJONES", b"AB1 2CD", b"9434765919"):
        assert normalised not in data


def test_opted_out_people_are_removed_before_tokenising(prepared, key):
    # A1 and A2 carry the opted-out NHS number (A2 with spaces): 6 rows in, 4 out.
    assert (prepared.rows_in, prepared.opted_out_rows, prepared.rows_out) == (6, 2, 4)
    assert prepared.header.opted_out_rows == 2 and prepared.header.row_count == 4
    hub = pl.read_parquet(prepared.extract_path)
    opted_out = tokenise(pl.Series(["9434765870"]), "nhs_number_token", key).item()
    assert opted_out not in hub["nhs_number_token"].to_list()
    lookup = pl.read_parquet(prepared.lookup_path)
    assert sorted(lookup["record_id"].to_list()) == ["A3", "A4", "A5", "A6"]


def test_opt_out_list_is_required_where_the_contract_says_it_applies(
    tmp_path, nhs_contract, ae_csv, key, postcode_lookup, now
):
    with pytest.raises(PartnerKitError, match="National Data Opt-out applies.*--opt-outs"):
        prepare_extract(
            nhs_contract, "ae_attendances", ae_csv, tmp_path / "out", key, postcode_lookup, now=now
        )
    assert not (tmp_path / "out").exists()


def test_opt_outs_are_not_applied_where_the_contract_says_they_do_not(
    tmp_path, council_contract, raw_csv, kit
):
    header = list(RAW_IDENTITY) + ["referral_date", "referral_source"]
    path = raw_csv(
        header,
        [
            [
                "C1",
                "9434765870",
                "Ann",
                "Lee",
                "1990-01-02",
                "F",
                "AB1 2CD",
                "2025-01-01",
                "school",
            ],
            [
                "C2",
                "9434765919",
                "Bob",
                "Lee",
                "1988-05-06",
                "M",
                "AB1 2CD",
                "2025-02-01",
                "police",
            ],
        ],
    )
    result = kit(council_contract, "csc_referrals", path, tmp_path / "out")
    assert (result.rows_in, result.opted_out_rows, result.rows_out) == (2, 0, 2)
    assert result.report["national_data_opt_out_applied"] is False


def test_unusable_values_are_null_and_counted_not_fatal(prepared, key):
    hub = pl.read_parquet(prepared.extract_path).sort("record_token")
    counts = prepared.header.invalid_counts
    # A4: bad check digit, postcode not in UK format, malformed arrival date;
    # A5: unknown arrival mode; A6: impossible date of birth (day/month swapped past 12).
    assert counts["nhs_number"] == 1 and counts["postcode"] == 1 and counts["date_of_birth"] == 1
    assert counts["arrival_date"] == 1 and counts["arrival_mode"] == 1
    assert counts["sex"] == 0 and counts["given_name"] == 0
    assert hub["nhs_number_token"].null_count() == 2  # A4 invalid, A5 blank
    assert prepared.report["missing_values"]["nhs_number"] == 1
    assert prepared.report["postcodes_not_in_lookup"] == 0


def test_nicknames_and_spellings_agree_in_the_hub_file(tmp_path, nhs_contract, raw_csv, kit):
    header = list(RAW_IDENTITY) + ["arrival_date", "arrival_mode"]
    path = raw_csv(
        header,
        [
            ["X1", "", "Bob", "Smith-Jones", "1985-11-30", "M", "NS1 4XY", "2024-01-01", "other"],
            ["X2", "", "Robert", "smith jones", "1985-30-11", "M", "ns14xy", "2024-01-01", "other"],
        ],
    )
    result = kit(nhs_contract, "ae_attendances", path, tmp_path / "out")
    lookup = pl.read_parquet(result.lookup_path)
    hub = pl.read_parquet(result.extract_path).join(lookup, on="record_token").sort("record_id")
    for column in (
        "given_name_token",
        "family_name_token",
        "family_name_bloom",
        "postcode_token",
        "lsoa_code",
    ):
        assert hub[column].n_unique() == 1 and hub[column].null_count() == 0, column
    assert hub["given_name_phonetic_token"].n_unique() == 2  # phonetic code of the name as written
    assert hub["date_of_birth_token"].to_list()[1] is None  # 1985-30-11 is not a date
    assert hub["lsoa_code"].to_list() == ["E01000002", "E01000002"]


def test_header_round_trips(prepared, nhs_contract, now):
    header = read_extract_header(prepared.extract_path)
    assert header == prepared.header.to_dict()
    assert header["format"] == EXTRACT_FORMAT and re.fullmatch(
        r"[0-9a-f]{32}", header["extract_id"]
    )
    assert (
        header["contract_id"],
        header["contract_version"],
        header["partner_id"],
        header["dataset"],
    ) == ("nhs-acute-mental-health", nhs_contract.version, "nhs", "ae_attendances")
    assert header["reporting_period"] == "2026-10" and header["created_at"] == now.isoformat(
        timespec="seconds"
    )
    assert ExtractHeader.from_dict(header) == prepared.header
    assert pq.ParquetFile(prepared.extract_path).metadata.num_rows == header["row_count"]


def test_header_reader_rejects_other_files(tmp_path):
    plain = tmp_path / "plain.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(plain)
    with pytest.raises(
        ExtractFileError, match="plain.parquet: Parquet file has no 'placelink' header"
    ):
        read_extract_header(plain)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(ExtractFileError, match="junk.parquet: not a readable Parquet extract"):
        read_extract_header(junk)


def test_lookup_links_record_ids_to_hub_tokens(prepared):
    lookup = pl.read_parquet(prepared.lookup_path)
    hub = pl.read_parquet(prepared.extract_path)
    assert lookup.columns == ["record_id", "record_token"]
    assert set(lookup["record_token"]) == set(hub["record_token"])
    assert prepared.lookup_path.stat().st_mode & 0o077 == 0


def test_report_holds_counts_not_values(prepared, ae_csv):
    text = prepared.report_path.read_text()
    report = json.loads(text)
    assert report["rows_in"] == 6 and report["rows_out"] == 4 and report["opted_out_rows"] == 2
    raw = pl.read_csv(ae_csv, infer_schema=False)
    for column in DIRECT_IDENTIFIERS:
        for value in raw[column].drop_nulls().to_list():
            assert f'"{value}"' not in text, column


def test_vcs_family_token(tmp_path, vcs_contract, raw_csv, kit):
    header = list(RAW_IDENTITY) + ["enrolment_date", "programme_type", "family_id"]
    path = raw_csv(
        header,
        [
            [
                "V1",
                "",
                "Ann",
                "Lee",
                "1985-01-02",
                "F",
                "AB1 2CD",
                "2025-03-01",
                "parenting",
                "FAM-1",
            ],
            [
                "V2",
                "",
                "Tom",
                "Lee",
                "2015-06-07",
                "M",
                "AB1 2CD",
                "2025-03-01",
                "parenting",
                "FAM-1",
            ],
            [
                "V3",
                "",
                "Eve",
                "Ray",
                "1990-09-09",
                "F",
                "NS1 4XY",
                "2025-04-01",
                "early_help",
                "FAM-2",
            ],
        ],
    )
    result = kit(vcs_contract, "family_support_enrolments", path, tmp_path / "out", opt_outs=None)
    hub = pl.read_parquet(result.extract_path)
    assert hub.columns[-1] == "family_token" and "family_id" not in hub.columns
    assert hub["family_token"].n_unique() == 2
    assert b"FAM-1" not in result.extract_path.read_bytes()


def test_required_family_id_column_must_be_present(tmp_path, vcs_contract, raw_csv, kit):
    header = list(RAW_IDENTITY) + ["enrolment_date", "programme_type"]
    path = raw_csv(
        header, [["V1", "", "Ann", "Lee", "1985-01-02", "F", "AB1 2CD", "2025-03-01", "parenting"]]
    )
    with pytest.raises(PartnerKitError, match="lacks column\\(s\\) family_id"):
        kit(
            vcs_contract,
            "family_support_enrolments",
            path,
            tmp_path / "out",
            opt_outs=None,
            period=None,
        )


def test_unknown_raw_column_stops_the_extract(tmp_path, nhs_contract, ae_csv, kit):
    raw = pl.read_csv(ae_csv, infer_schema=False).with_columns(ethnicity=pl.lit("A"))
    path = tmp_path / "with_extra.csv"
    raw.write_csv(path)
    with pytest.raises(
        PartnerKitError,
        match="with_extra.csv: column 'ethnicity' not allowed by contract "
        "nhs-acute-mental-health v1.0.0",
    ):
        kit(nhs_contract, "ae_attendances", path, tmp_path / "out", period=None)
    assert not list(tmp_path.rglob("*.parquet"))


def test_period_defaults_to_the_month_of_now_and_is_checked(tmp_path, nhs_contract, ae_csv, kit):
    result = kit(nhs_contract, "ae_attendances", ae_csv, tmp_path / "out", period=None)
    assert result.header.reporting_period == "2026-10"
    with pytest.raises(PartnerKitError, match="'2026-13' is not YYYY-MM"):
        kit(nhs_contract, "ae_attendances", ae_csv, tmp_path / "out", period="2026-13")


def test_key_file_path_is_accepted(tmp_path, nhs_contract, ae_csv, key, kit):
    key_file = key.save(tmp_path / "linkage.key")
    by_path = kit(
        nhs_contract, "ae_attendances", ae_csv, tmp_path / "a", linkage_key=key_file, period=None
    )
    by_key = kit(nhs_contract, "ae_attendances", ae_csv, tmp_path / "b", period=None)
    assert pl.read_parquet(by_path.extract_path).equals(pl.read_parquet(by_key.extract_path))
