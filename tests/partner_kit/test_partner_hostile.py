"""Malformed raw extracts: every bad row is refused or counted wherever it is in the file, and no
message quotes a value (issue 18)."""

from __future__ import annotations

import json

import polars as pl
import pytest

from pipelines.partner_kit import PartnerKitError
from pipelines.partner_kit.readers import read_raw_extract
from tests.partner_kit.conftest import AE_HEADER, NHS_A, NHS_B, ae_rows

CANARY = "Quixoteblöm"  # a value no message may quote


def _good_row(i: int) -> str:
    return f"R{i:06d},{NHS_B},Ann,Lee,1990-01-02,F,AB1 2CD,2024-01-01,other\n"


def _extract(tmp_path, bad: str, after_rows: int, name: str = "extract.csv") -> object:
    """A CSV with ``after_rows`` good rows (well past the first 64 KiB), then ``bad``, then more."""
    path = tmp_path / name
    body = ",".join(AE_HEADER) + "\n" + "".join(_good_row(i) for i in range(after_rows))
    body += bad + "".join(_good_row(i) for i in range(after_rows, after_rows + 10))
    path.write_bytes(body.encode())
    return path


def _refused(path) -> str:
    with pytest.raises(PartnerKitError) as error:
        read_raw_extract(path)
    message = str(error.value)
    assert path.name in message and CANARY not in message and NHS_A not in message
    return message


@pytest.mark.parametrize("after_rows", [3, 2000])  # before and well after the first 64 KiB
def test_a_nul_byte_anywhere_refuses_the_file_naming_the_line(tmp_path, after_rows):
    path = _extract(
        tmp_path, f"X1,{NHS_A},{CANARY}\x00,Lee,1990-01-02,F,AB1 2CD,2024-01-01,other\n", after_rows
    )
    assert path.stat().st_size > 64 * 1024 or after_rows < 10
    message = _refused(path)
    assert "NUL" in message and f"line(s) {after_rows + 2}:" in message


@pytest.mark.parametrize("after_rows", [3, 2000])
def test_a_row_with_fewer_fields_than_the_header_refuses_the_file(tmp_path, after_rows):
    # What an unquoted line break inside a value does: one record split over two short lines.
    path = _extract(
        tmp_path, f"X1,{NHS_A},{CANARY}\n,Lee,1990-01-02,F,AB1 2CD,2024-01-01,other\n", after_rows
    )
    message = _refused(path)
    assert "fewer fields than the header" in message
    assert f"line(s) {after_rows + 2}, {after_rows + 3}" in message and "line break" in message


@pytest.mark.parametrize("after_rows", [3, 2000])
def test_a_row_with_more_fields_than_the_header_refuses_the_file(tmp_path, after_rows):
    path = _extract(
        tmp_path,
        f"X1,{NHS_A},{CANARY},Lee,1990-01-02,F,AB1 2CD,2024-01-01,other,extra\n",
        after_rows,
    )
    message = _refused(path)
    assert "more fields than the header" in message and f"line(s) {after_rows + 2}" in message


def test_quoted_commas_and_line_breaks_are_values_not_malformed_rows(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text(
        ",".join(AE_HEADER) + "\n" + f'R1,{NHS_B},"Ann, Jr","Lee\nSmith",1990-01-02,F,AB1 2CD,'
        "2024-01-01,other\r\n" + _good_row(2),
        encoding="utf-8",
    )
    frame = read_raw_extract(path)
    assert frame.height == 2 and frame["family_name"][0] == "Lee\nSmith"


@pytest.mark.parametrize(
    "column, value",
    [
        ("given_name", "A" * 100_000),
        ("family_name", "Quixote" * 20_000),
        ("nhs_number", "9" * 5_000),
        ("postcode", "AB1 2CD" * 1_000),
        ("date_of_birth", "1990-01-02" + " " * 10_000),
        ("sex", "F" * 500),
    ],
)
def test_an_overlong_identifier_is_counted_invalid_never_truncated(
    tmp_path, nhs_contract, column, value, kit
):
    rows = ae_rows()
    rows[2][AE_HEADER.index(column)] = value  # row A3: not opted out
    path = tmp_path / "long.csv"
    path.write_text(
        ",".join(AE_HEADER) + "\n" + "\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8"
    )
    baseline = kit(nhs_contract, "ae_attendances", _rewrite(tmp_path, ae_rows()), tmp_path / "base")
    prepared = kit(nhs_contract, "ae_attendances", path, tmp_path / "out")
    invalid = prepared.header.invalid_counts[column]
    assert invalid == baseline.header.invalid_counts[column] + 1
    report = prepared.report_path.read_text()
    assert value[:50] not in report and json.loads(report)["rows_out"] == baseline.rows_out


def test_an_overlong_record_id_refuses_the_file(tmp_path, nhs_contract, kit):
    rows = ae_rows()
    rows[2][0] = "R" * 10_000
    path = _rewrite(tmp_path, rows)
    with pytest.raises(
        PartnerKitError, match=r"record_id is longer than \d+ characters on line\(s\) 4"
    ):
        kit(nhs_contract, "ae_attendances", path, tmp_path / "out")


def _rewrite(tmp_path, rows, name="rows.csv"):
    path = tmp_path / name
    path.write_text(
        ",".join(AE_HEADER) + "\n" + "\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8"
    )
    return path


def test_old_mac_line_endings_are_refused_without_quoting_the_first_row(tmp_path):
    path = tmp_path / "mac.csv"
    path.write_bytes(
        (
            ",".join(AE_HEADER) + "\r" + f"R1,{NHS_A},{CANARY},Lee,1990-01-02,F,AB1 2CD,2024-01-01,"
            "other\r"
        ).encode()
    )
    assert "line endings" in _refused(path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_says_how_to_save(tmp_path, encoding):
    path = tmp_path / "utf16.csv"
    text = (
        ",".join(AE_HEADER)
        + "\n"
        + f"R1,{NHS_A},{CANARY},Lee,1990-01-02,F,AB1 2CD,2024-01-01,other\n"
    )
    path.write_bytes(text.encode(encoding))
    assert "UTF-16" in _refused(path) and "CSV UTF-8" in _refused(path)


def test_a_utf8_byte_order_mark_is_read_as_excel_writes_it(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (",".join(AE_HEADER) + "\n" + _good_row(1)).encode())
    assert read_raw_extract(path).columns == AE_HEADER


def test_a_header_row_of_data_values_is_not_quoted_back(tmp_path, nhs_contract):
    from pipelines.partner_kit.readers import check_raw_columns

    path = tmp_path / "values.csv"
    path.write_text(f"record_id,{NHS_A},{CANARY} Jane,Lee\nR1,{NHS_B},Ann,Lee\n", encoding="utf-8")
    with pytest.raises(PartnerKitError) as error:
        check_raw_columns(
            read_raw_extract(path), path, nhs_contract, nhs_contract.dataset("ae_attendances")
        )
    message = str(error.value)
    assert NHS_A not in message and CANARY not in message and "not shown" in message


def test_formula_like_free_text_is_data_not_a_formula(tmp_path):
    # The kit never writes CSV, so a value like this travels as text in Parquet; nothing evaluates it.
    path = tmp_path / "formula.csv"
    path.write_text("record_id,given_name\nR1,\"=cmd|' /C calc'!A0\"\n", encoding="utf-8")
    assert read_raw_extract(path)["given_name"].to_list() == ["=cmd|' /C calc'!A0"]
    assert pl.read_csv(path, infer_schema=False).height == 1
