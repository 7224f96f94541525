"""A partner's real export, as it comes: its own date format, a spreadsheet, its own column
names, identifiers it does not hold, no postcode lookup. Each is read without hand editing,
or refused with a message naming the file, the contract and what to do (never a value)."""

from __future__ import annotations

import datetime as dt
import json
import re
import zipfile

import pyarrow.parquet as pq
import pytest

from pipelines.governance.contracts import ContractError, load_contract
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.prepare import prepare_extract
from pipelines.partner_kit.readers import read_postcode_lookup
from tests.custom_partner import write_custom_contract
from tests.partner_kit.conftest import REPO, write_csv

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
    return prepare_extract(
        contract,
        "clinic_referrals",
        raw,
        tmp_path / "out",
        key,
        None,
        period="2026-10",
        now=now,
        **kwargs,
    )


def _columns(prepared, *names):
    table = pq.read_table(prepared.extract_path)
    return {name: table.column(name).to_pylist() for name in names}


def test_uk_dates_declared_in_the_contract_give_the_same_tokens_as_iso(tmp_path, key, now):
    iso = _prepare(
        write_custom_contract(tmp_path / "iso"),
        write_csv(tmp_path / "iso.csv", HEADER, ISO_ROWS),
        tmp_path / "a",
        key,
        now,
    )
    uk_rows = [[r[0], r[1], r[2], _uk(r[3]), _uk(r[4])] for r in ISO_ROWS]
    uk = _prepare(
        write_custom_contract(tmp_path / "uk", date_formats="dd/mm/yyyy"),
        write_csv(tmp_path / "uk.csv", HEADER, uk_rows),
        tmp_path / "b",
        key,
        now,
    )
    wanted = ("date_of_birth_token", "dob_unordered_token", "year_of_birth", "referral_date")
    assert _columns(uk, *wanted) == _columns(iso, *wanted)
    assert (
        uk.header.invalid_counts["date_of_birth"] == 0
        and uk.header.invalid_counts["referral_date"] == 0
    )


def test_uk_dates_without_the_declaration_are_counted_invalid_not_guessed(tmp_path, key, now):
    uk_rows = [[r[0], r[1], r[2], _uk(r[3]), _uk(r[4])] for r in ISO_ROWS]
    prepared = _prepare(
        write_custom_contract(tmp_path / "c"),
        write_csv(tmp_path / "uk.csv", HEADER, uk_rows),
        tmp_path,
        key,
        now,
    )
    assert prepared.header.invalid_counts["date_of_birth"] == 3
    assert prepared.header.invalid_counts["referral_date"] == 3
    assert _columns(prepared, "date_of_birth_token")["date_of_birth_token"] == [None] * 3
    # ... and the report says which format reads them: one for the dates of birth (days over
    # 12), two for the referral dates (every day 12 or less), which only the partner can choose.
    assert prepared.report["date_format_suggestions"] == {
        "date_of_birth": ["dd/mm/yyyy"],
        "referral_date": ["dd/mm/yyyy", "mm/dd/yyyy"],
    }


def test_declared_formats_read_only_text_of_their_shape(tmp_path, key, now):
    rows = [
        ["R1", "Ann", "Lee", "02/01/1990", "06/05/2024"],
        ["R2", "Bob", "Khan", "30/11/85", "2024-07-01 00:00:00"],  # two-digit year: never year 85
        ["R3", "Cara", "Ng", "25-Dec-2001", "09/08/2024 13:45"],  # a format not declared
        ["R4", "Dev", "Roy", "31/02/2001", "1/7/2024"],
    ]  # no 31 February
    prepared = _prepare(
        write_custom_contract(tmp_path / "c", date_formats=["dd/mm/yyyy"]),
        write_csv(tmp_path / "x.csv", HEADER, rows),
        tmp_path,
        key,
        now,
    )
    years = _columns(prepared, "year_of_birth", "referral_date")
    assert years["year_of_birth"] == [1990, None, None, None]
    assert [str(d) for d in years["referral_date"]] == [
        "2024-05-06",
        "2024-07-01",
        "2024-08-09",
        "2024-07-01",
    ]
    assert prepared.header.invalid_counts["date_of_birth"] == 3


@pytest.mark.parametrize(
    "declared, problem",
    [
        ("dd/mm/yy", "two-digit years"),
        ("dd/mm", "exactly once"),
        ("dd/mm/yyyy hh:mm", "neither a date part"),
        (["dd/mm/yyyy", "mm/dd/yyyy"], "read the same text differently"),
        ([], "give one format"),
    ],
)
def test_unusable_date_formats_are_refused_naming_the_file_and_dataset(tmp_path, declared, problem):
    path = write_custom_contract(tmp_path, date_formats=declared)
    with pytest.raises(ContractError) as error:
        load_contract(path)
    message = str(error.value)
    assert f"{path.name}: dataset 'clinic_referrals' customProperty 'dateFormats'" in message
    assert problem in message


# ------------------------------------------------------------------ Excel workbooks


def _workbook(path, sheets: dict[str, list[list]]):
    import openpyxl  # a dev dependency: a missing install must fail, not skip

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_an_excel_workbook_gives_the_same_extract_as_the_csv(tmp_path, key, now):
    contract = write_custom_contract(tmp_path / "c")
    from_csv = _prepare(
        contract, write_csv(tmp_path / "x.csv", HEADER, ISO_ROWS), tmp_path / "a", key, now
    )
    # As a case-management system exports it: typed date cells, a number as a record id.
    typed = [
        [101, "Ann", "Lee", dt.date(1990, 1, 2), dt.datetime(2024, 5, 6)],
        [102, "Bob", "Khan", dt.date(1985, 11, 30), dt.datetime(2024, 7, 1)],
        [103, "Cara", "Ng", "2001-12-25", "2024-08-09"],
    ]
    book = _workbook(tmp_path / "referrals.xlsx", {"Referrals": [HEADER, *typed]})
    from_xlsx = _prepare(contract, book, tmp_path / "b", key, now)
    wanted = (
        "date_of_birth_token",
        "given_name_bloom",
        "family_name_token",
        "year_of_birth",
        "referral_date",
    )
    assert _columns(from_xlsx, *wanted) == _columns(from_csv, *wanted)
    assert from_xlsx.report["invalid_values"] == from_csv.report["invalid_values"]
    lookup = pq.read_table(from_xlsx.lookup_path).column("record_id").to_pylist()
    assert lookup == ["101", "102", "103"]  # a whole number stays a whole number


def test_a_workbook_with_several_sheets_needs_the_sheet_named(tmp_path, key, now):
    contract = write_custom_contract(tmp_path / "c")
    book = _workbook(
        tmp_path / "export.xlsx", {"Notes": [["read me"]], "Referrals": [HEADER, *ISO_ROWS]}
    )
    with pytest.raises(
        PartnerKitError, match=r"export\.xlsx has 2 sheets \(Notes, Referrals\).*--sheet"
    ):
        _prepare(contract, book, tmp_path, key, now)
    with pytest.raises(PartnerKitError, match=r"no sheet named 'Referals'.*Notes, Referrals"):
        _prepare(contract, book, tmp_path, key, now, sheet="Referals")
    prepared = _prepare(contract, book, tmp_path, key, now, sheet="Referrals")
    assert prepared.rows_out == 3


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [["record_id", "given_name", "given_name"], ["R1", "Ann", "Ann"]],
            "column name more than once",
        ),
        (
            [["record_id", None, "family_name"], ["R1", "Ann", "Lee"]],
            "column B has values but no name",
        ),
    ],
)
def test_workbook_header_faults_are_named_without_values(tmp_path, key, now, rows, message):
    book = _workbook(tmp_path / "bad.xlsx", {"Sheet1": rows})
    with pytest.raises(PartnerKitError, match=message) as error:
        _prepare(write_custom_contract(tmp_path / "c"), book, tmp_path, key, now)
    assert "bad.xlsx" in str(error.value) and "Ann" not in str(error.value)


def test_a_damaged_workbook_says_what_to_do(tmp_path, key, now):
    path = tmp_path / "damaged.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/workbook.xml", "not a workbook")
    with pytest.raises(
        PartnerKitError,
        match=r"damaged\.xlsx could not be read as an Excel workbook.*save it again",
    ):
        _prepare(write_custom_contract(tmp_path / "c"), path, tmp_path, key, now)


# ------------------------------------------------------------------ the partner's own column names

EXPORT_HEADER = [
    "Client Ref",
    "Client Name",
    "DOB Day",
    "DOB Month",
    "DOB Year",
    "Date Referred",
    "Keyworker",
]
EXPORT_ROWS = [
    ["R1", "Mrs Ann Lee", "2", "1", "1990", "06/05/2024", "Staff A"],
    ["R2", "KHAN, Bob", "30", "Nov", "1985", "01/07/2024", "Staff B"],
    ["R3", "Cara Jane Ng", "25", "12", "2001", "09/08/2024", "Staff A"],
    ["R4", "Prince", "", "", "", "09/08/2024", "Staff C"],  # one word: no split; no date of birth
]
MAPPING = """\
columns:
  record_id: Client Ref
  full_name: {column: Client Name, order: given_first}
  date_of_birth: {day: DOB Day, month: DOB Month, year: DOB Year}
  referral_date: Date Referred
ignore: [Keyworker]
"""


def _mapping(tmp_path, text=MAPPING):
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


def test_a_mapping_file_reads_the_partners_own_columns(tmp_path, key, now):
    contract = write_custom_contract(tmp_path / "c", date_formats="dd/mm/yyyy")
    export = write_csv(tmp_path / "export.csv", EXPORT_HEADER, EXPORT_ROWS)
    mapped = _prepare(contract, export, tmp_path / "a", key, now, mapping=_mapping(tmp_path))
    # the same people, already in the kit's columns
    plain = _prepare(
        contract,
        write_csv(tmp_path / "plain.csv", HEADER, ISO_ROWS + [["R4", "", "", "", "2024-08-09"]]),
        tmp_path / "b",
        key,
        now,
    )
    wanted = (
        "record_token",
        "given_name_token",
        "family_name_token",
        "date_of_birth_token",
        "referral_date",
    )
    assert _columns(mapped, *wanted) == _columns(plain, *wanted)
    assert mapped.report["mapping_file"] == "mapping.yaml"
    assert mapped.report["mapping_unusable_values"] == {"full_name": 1, "date_of_birth": 0}
    text = mapped.extract_path.read_bytes() + json.dumps(mapped.report).encode()
    assert b"Staff" not in text  # an ignored column is neither read nor sent


def test_an_export_in_its_own_column_names_without_a_mapping_is_told_about_one(tmp_path, key, now):
    contract = write_custom_contract(tmp_path / "c")
    export = write_csv(tmp_path / "export.csv", EXPORT_HEADER, EXPORT_ROWS)
    with pytest.raises(PartnerKitError) as error:
        _prepare(contract, export, tmp_path, key, now)
    message = str(error.value)
    # the columns this contract's kit reads, not every identifier the kit knows
    assert "record_id,given_name,family_name,date_of_birth,referral_date" in message
    assert "nhs_number" not in message and "--mapping" in message


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "columns:\n  forename: Client Name\n",
            r"'forename' is not a column the kit takes.*given_name",
        ),
        (
            "columns:\n  record_id: Client Reference\nignore: [Client Name, DOB Day, DOB Month, DOB Year, "
            "Date Referred, Keyworker]\n",
            r"names column\(s\) 'Client Reference'.*check the spelling",
        ),
        (
            "columns:\n  record_id: Client Ref\n  referral_date: Date Referred\n",
            r"'Client Name', 'DOB Day', 'DOB Month', 'DOB Year', 'Keyworker' are neither mapped nor kit columns",
        ),
        (
            "columns:\n  record_id: Client Ref\n  given_name: Client Name\n  family_name: Client Name\n",
            r"'Client Name' are mapped more than once",
        ),
        (
            "columns:\n  referral_date: {day: DOB Day, month: DOB Month}\n",
            r"'columns.referral_date.year'",
        ),
        (
            "columns:\n  full_name: {column: Client Name, order: surname_first}\n",
            r"given_first.*family_first",
        ),
        ("columns: [record_id]\n", r"'columns'"),
        ("colums:\n  record_id: Client Ref\n", r"needs a 'columns:' section"),
        ("columns:\n  record_id: [Client Ref\n", r"not valid YAML at line \d"),
    ],
)
def test_mapping_mistakes_name_the_file_the_key_and_what_to_do(tmp_path, key, now, text, message):
    contract = write_custom_contract(tmp_path / "c")
    export = write_csv(tmp_path / "export.csv", EXPORT_HEADER, EXPORT_ROWS)
    with pytest.raises(PartnerKitError, match=message) as error:
        _prepare(contract, export, tmp_path, key, now, mapping=_mapping(tmp_path, text))
    assert "mapping file mapping.yaml" in str(error.value)
    assert not any(value in str(error.value) for value in ("Ann", "Lee", "KHAN", "1990", "Staff A"))


def test_a_mapping_can_name_the_sheet_of_a_workbook(tmp_path, key, now):
    contract = write_custom_contract(tmp_path / "c", date_formats="dd/mm/yyyy")
    book = _workbook(
        tmp_path / "export.xlsx",
        {"Cover": [["Monthly export"]], "Clients": [EXPORT_HEADER, *EXPORT_ROWS]},
    )
    prepared = _prepare(
        contract, book, tmp_path, key, now, mapping=_mapping(tmp_path, "sheet: Clients\n" + MAPPING)
    )
    assert prepared.rows_out == 4 and prepared.header.invalid_counts["referral_date"] == 0


# ------------------------------------------------------------------ identifiers a partner does not hold


POSTCODE_HEADER = HEADER + ["postcode"]


def _postcode_rows(*postcodes):
    return [[f"R{i}", "Ann", "Lee", "1990-01-02", "2024-05-06", p] for i, p in enumerate(postcodes)]


def _prepare_postcodes(tmp_path, name, rows, key, now, postcode_format=None):
    """``rows`` prepared under a contract of names, date of birth and postcode (in ``name``)."""
    identity = ("given_name", "family_name", "date_of_birth", "postcode")
    return _prepare(
        write_custom_contract(tmp_path / name, identity=identity, postcode_format=postcode_format),
        write_csv(tmp_path / f"{name}.csv", POSTCODE_HEADER, rows),
        tmp_path / f"{name}-out",
        key,
        now,
    )


def test_a_partner_abroad_sends_its_postal_codes_with_no_sector_and_is_told(tmp_path, key, now):
    # Most postcodes are another country's (Australian, as FEBRL's): read as postal codes, though
    # the contract declares nothing, and the one UK postcode gives its usual token.
    rows = _postcode_rows("2615", "2615", "3000", "AB1 2CD", "NFA")
    prepared = _prepare_postcodes(tmp_path, "c", rows, key, now)
    sent = _columns(prepared, "postcode_token", "postcode_sector_token")
    assert sent["postcode_token"][0] == sent["postcode_token"][1] != sent["postcode_token"][2]
    assert None not in sent["postcode_token"][:4] and sent["postcode_token"][4] is None
    assert sent["postcode_sector_token"][:3] == [None] * 3 and sent["postcode_sector_token"][3]
    assert prepared.report["postcode_format"] == {
        "format": "any",
        "declared": False,
        "other_country_rows": 3,
    }
    assert prepared.header.invalid_counts["postcode"] == 1
    uk_only = _prepare_postcodes(tmp_path, "uk", rows, key, now, postcode_format="uk")
    uk_sent = _columns(uk_only, "postcode_token")["postcode_token"]
    assert uk_sent[:3] == [None] * 3 and uk_sent[3] == sent["postcode_token"][3]
    assert "postcode_format" not in uk_only.report
    assert uk_only.header.invalid_counts["postcode"] == 4


def test_a_uk_partners_odd_foreign_postcode_is_not_sent_unless_the_contract_says_any(
    tmp_path, key, now
):
    rows = _postcode_rows("AB1 2CD", "M1 1AE", "D02 X285", "2615")
    found = _prepare_postcodes(tmp_path, "c", rows, key, now)
    assert _columns(found, "postcode_token")["postcode_token"][2:] == [None, None]
    assert "postcode_format" not in found.report
    declared = _prepare_postcodes(tmp_path, "any", rows, key, now, postcode_format="any")
    assert None not in _columns(declared, "postcode_token")["postcode_token"]
    assert declared.report["postcode_format"]["declared"] is True


def test_a_postal_code_abroad_with_its_digits_transposed_gives_the_same_unordered_token(
    tmp_path, key, now
):
    # FEBRL's 6062 / 6602: no sector or district to agree on, so the code's characters in sorted
    # order are tokenised too; a UK postcode has none (its sector and district do that).
    rows = _postcode_rows("6062", "6602", "6063", "AB1 2CD", "")
    prepared = _prepare_postcodes(tmp_path, "any", rows, key, now, postcode_format="any")
    sent = _columns(prepared, "postcode_token", "postcode_unordered_token")
    unordered = sent["postcode_unordered_token"]
    assert sent["postcode_token"][0] != sent["postcode_token"][1]
    assert unordered[0] == unordered[1] != unordered[2]
    assert None not in unordered[:3] and unordered[3:] == [None, None]
    assert unordered[0] not in sent["postcode_token"]  # keyed apart from the postcode itself


def test_postal_codes_abroad_one_keying_error_apart_share_a_variant_token(tmp_path, key, now):
    # FEBRL's 2602 keyed as 2612 (changed), 260 (dropped), 26021 (added), 2620 (swapped): each
    # shares a token with 2602; 7341 and a UK postcode share none, and a UK postcode has none.
    rows = _postcode_rows("2602", "2612", "260", "26021", "2620", "7341", "AB1 2CD", "")
    prepared = _prepare_postcodes(tmp_path, "any", rows, key, now, postcode_format="any")
    sent = _columns(prepared, "postcode_token", "postcode_variant_tokens")
    variants = [None if v is None else v.split(" ") for v in sent["postcode_variant_tokens"]]
    assert variants[6:] == [None, None]
    own = set(variants[0])
    assert len(own) == 5  # 2602 and its four forms with a character left out
    assert all(len(set(v) & own) >= 1 for v in variants[1:5])
    assert not set(variants[5]) & own
    for tokens in variants[:6]:
        assert tokens == sorted(tokens) and all(re.fullmatch("[0-9a-f]{32}", t) for t in tokens)
    # Keyed apart from the postcode itself: 2602's own variant is not its postcode token.
    assert not own & set(sent["postcode_token"])


@pytest.mark.parametrize(
    "spoil",
    [
        lambda tokens: tokens.replace(" ", "  ", 1),  # two spaces
        lambda tokens: tokens + " ",  # a space at the end
        lambda tokens: " ".join([tokens.split(" ")[0]] * 18),  # more than a code can have
        lambda tokens: tokens.replace(" ", " 2602 ", 1),  # a clear postal code between tokens
    ],
)
def test_a_malformed_set_of_variant_tokens_is_held_by_its_format_rule(tmp_path, key, now, spoil):
    import pyarrow as pa

    from pipelines.quality.validate import validate_delivery

    rows = _postcode_rows("2602", "2612", "7341")
    prepared = _prepare_postcodes(tmp_path, "any", rows, key, now, postcode_format="any")
    contract = load_contract(tmp_path / "any" / "clinic-referrals.yaml")
    table = pq.read_table(prepared.extract_path)
    column = "postcode_variant_tokens"
    values = table.column(column).cast(pa.string()).to_pylist()
    sound = validate_delivery(table, contract, "clinic_referrals", "sound.parquet", now.date())
    assert sound.outcome != "held" and not sound.failed_errors
    values[1] = spoil(values[1])
    spoilt = table.set_column(
        table.schema.get_field_index(column), column, pa.array(values, pa.string())
    )
    verdict = validate_delivery(spoilt, contract, "clinic_referrals", "bad.parquet", now.date())
    assert verdict.outcome == "held"
    assert [r.rule.name for r in verdict.failed_errors] == [f"{column}: token format"]
    assert "2602" not in verdict.message()


def test_a_partner_sending_districts_alone_sends_them_as_the_district(tmp_path, key, now):
    # Data minimisation: only the outward code (LS6). It is the district, not an invalid value.
    districts = _prepare_postcodes(tmp_path, "d", _postcode_rows("ls6", "M1", ""), key, now)
    full = _prepare_postcodes(tmp_path, "f", _postcode_rows("LS6 2AB", "M1 1AE"), key, now)
    sent = _columns(districts, "postcode_token", "postcode_sector_token", "postcode_district_token")
    assert sent["postcode_token"] == sent["postcode_sector_token"] == [None] * 3
    assert (
        sent["postcode_district_token"][:2]
        == _columns(full, "postcode_district_token")["postcode_district_token"]
    )
    assert sent["postcode_district_token"][2] is None  # blank stays blank
    assert districts.header.invalid_counts["postcode"] == 0
    assert districts.report["postcode_district_only_rows"] == 2
    assert "postcode_format" not in districts.report  # UK districts, not another country's


def test_an_unknown_postcode_format_is_refused_naming_the_file_and_dataset(tmp_path):
    path = write_custom_contract(tmp_path, postcode_format="australian")
    with pytest.raises(ContractError) as error:
        load_contract(path)
    message = str(error.value)
    assert f"{path.name}: dataset 'clinic_referrals' customProperty 'postcodeFormat'" in message
    assert "'uk'" in message and "'any'" in message


def test_identity_columns_a_partner_does_not_hold_are_sent_empty_and_reported(tmp_path, key, now):
    # The demo's A&E contract lists NHS number, sex and postcode; this trust's export has none.
    contract = load_contract(REPO / "contracts" / "nhs-acute-mental-health.yaml")
    raw = write_csv(
        tmp_path / "ae.csv",
        ["record_id", "given_name", "family_name", "date_of_birth", "arrival_date", "arrival_mode"],
        [["A1", "Ann", "Lee", "1990-01-02", "2024-01-05", "walk_in"]],
    )
    prepared = prepare_extract(
        contract,
        "ae_attendances",
        raw,
        tmp_path / "out",
        key,
        None,
        opt_outs=write_csv(tmp_path / "optouts.csv", ["nhs_number"], []),
        period="2026-10",
        now=now,
    )
    assert set(prepared.report["absent_identity_columns"]) == {"nhs_number", "sex", "postcode"}
    assert prepared.report["areas_not_looked_up"] == ["lsoa_code", "ward_code"]
    sent = _columns(
        prepared, "nhs_number_token", "sex", "postcode_token", "lsoa_code", "given_name_token"
    )
    assert (
        sent["nhs_number_token"]
        == sent["sex"]
        == sent["postcode_token"]
        == sent["lsoa_code"]
        == [None]
    )
    assert sent["given_name_token"] != [None]


@pytest.mark.parametrize("postcode, uk_dates", [("AB1 2CD", False), ("2615", True)])
def test_without_a_postcode_lookup_areas_are_empty_and_the_summary_says_where_to_get_one(
    tmp_path, key, now, monkeypatch, postcode, uk_dates
):
    from click.testing import CliRunner

    from pipelines.cli import main
    from pipelines.exchange.keys import HubKey, SigningKey

    contract = write_custom_contract(
        tmp_path / "c", identity=("given_name", "family_name", "date_of_birth", "postcode")
    )
    SigningKey.generate("clinic").save(tmp_path / "clinic.key")
    HubKey.generate().public.save(tmp_path / "hub.pub")
    key.save(tmp_path / "link.key")
    rows = [[r[0], r[1], r[2], _uk(r[3]), r[4]] if uk_dates else r for r in ISO_ROWS]
    raw = write_csv(tmp_path / "x.csv", HEADER + ["postcode"], [r + [postcode] for r in rows])
    monkeypatch.delenv("PLACELINK_SIGNING_KEY_PASSPHRASE", raising=False)
    result = CliRunner().invoke(
        main,
        [
            "partner",
            "prepare",
            "--contract",
            str(contract),
            "--input",
            str(raw),
            "--out",
            str(tmp_path / "out"),
            "--linkage-key",
            str(tmp_path / "link.key"),
            "--signing-key",
            str(tmp_path / "clinic.key"),
            "--hub-key",
            str(tmp_path / "hub.pub"),
            "--period",
            "2026-10",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "no postcode lookup given: lsoa_code, ward_code sent empty" in result.output
    assert "where to get ONS's lookup" in result.output
    abroad = (
        "postcodes: 3 not UK postcodes, sent as postal codes of another country (the hub links on "
        "them; no sector, district or area); read so because most postcodes are; declare "
        "postcodeFormat: uk in the contract to send only UK postcodes"
    )
    assert (abroad in result.output) == (postcode == "2615")
    dates = (
        "dates: most date_of_birth values are not yyyy-mm-dd but read as dd/mm/yyyy: declare the "
        "one your system writes as the dataset's dateFormats in the contract"
    )
    assert (dates in result.output) == uk_dates
    (envelope,) = (tmp_path / "out").glob("*.plx")
    assert envelope.exists()


def test_ons_lookups_are_read_as_downloaded(tmp_path, key, now):
    # ONS's "PCD to OA to LSOA to MSOA to LAD" best-fit lookup: no ward; the ONSPD: ward as osward.
    best_fit = write_csv(
        tmp_path / "PCD_OA21_LSOA21_MSOA21_LAD_EW_LU.csv",
        ["PCD7", "PCD8", "PCDS", "DOINTR", "DOTERM", "USERTYPE", "OA21CD", "LSOA21CD", "MSOA21CD"],
        [
            [
                "AB1 2CD",
                "AB1  2CD",
                "AB1 2CD",
                "198001",
                "",
                "0",
                "E00000001",
                "E01000001",
                "E02000001",
            ]
        ],
    )
    onspd = write_csv(
        tmp_path / "ONSPD.csv",
        ["pcd", "pcds", "osward", "lsoa11", "lsoa21"],
        [["AB1 2CD", "AB1 2CD", "E05000001", "E01999999", "E01000001"]],
    )
    assert read_postcode_lookup(best_fit).rows() == [("AB1 2CD", "E01000001", None)]
    assert read_postcode_lookup(onspd).rows() == [("AB1 2CD", "E01000001", "E05000001")]
    bad = write_csv(tmp_path / "other.csv", ["post_code", "area"], [["AB1 2CD", "x"]])
    with pytest.raises(
        PartnerKitError, match=r"other\.csv has no postcode or lsoa_code column.*pcds, lsoa21cd"
    ):
        read_postcode_lookup(bad)
