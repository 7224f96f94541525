"""The extract file: what the hub reads back is what the partner kit handed the writer."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.exchange.extract_file import ExtractHeader, read_extract_header, write_extract


def _header(rows: int) -> ExtractHeader:
    return ExtractHeader(
        extract_id="0" * 32,
        contract_id="c",
        contract_version="1",
        partner_id="p",
        dataset="d",
        reporting_period="2026-10",
        created_at="2026-10-15T09:30:00+00:00",
        row_count=rows,
    )


def test_dictionary_columns_read_back_as_plain_values_whatever_their_size(tmp_path):
    # One column with a few distinct values, one whose values are mostly different.
    many = 5000
    wide = pa.array([f"{i:032x}" for i in range(many)], pa.string())
    rows = 2 * many
    indices = pa.array([i // 2 for i in range(rows - 1)] + [None], pa.int32())
    table = pa.table(
        {
            "record_token": pa.array([f"r{i}" for i in range(rows)], pa.string()),
            "nhs_number_token": pa.DictionaryArray.from_arrays(indices, wide),
            "sex": pa.DictionaryArray.from_arrays(
                pa.array([i % 2 for i in range(rows)], pa.int32()), pa.array(["F", "M"])
            ),
        }
    )
    path = write_extract(table, _header(rows), tmp_path / "x.parquet")
    back = pq.read_table(path)
    assert back.schema.field("nhs_number_token").type == pa.string()
    assert back.schema.field("sex").type == pa.string()
    assert (
        back.column("nhs_number_token").to_pylist() == table.column("nhs_number_token").to_pylist()
    )
    assert back.column("sex").to_pylist() == table.column("sex").to_pylist()
    assert read_extract_header(path)["row_count"] == rows
