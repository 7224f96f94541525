"""One registry of column types: what the partner kit writes for a logical type is what the hub's
type check accepts and what its landing table holds."""

import datetime as dt

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from pipelines.core.column_types import (
    ARROW_TYPES,
    PAYLOAD_DTYPES,
    arrow_type_fits,
    duckdb_type,
    pandas_dtypes,
)

SAMPLES = {
    "date": dt.date(2026, 10, 1),
    "integer": 7,
    "number": 1.5,
    "boolean": True,
    "string": "a",
}


@pytest.mark.parametrize("logical_type", list(PAYLOAD_DTYPES))
def test_a_payload_column_as_the_kit_writes_it_passes_the_hub_and_lands(logical_type):
    series = pl.Series("value", [SAMPLES[logical_type], None], PAYLOAD_DTYPES[logical_type])
    arrow = series.to_arrow().cast(ARROW_TYPES[series.dtype.base_type()])
    assert arrow_type_fits(arrow.type, logical_type)
    assert not arrow_type_fits(pa.struct([]), logical_type)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE landing (value {duckdb_type('value', logical_type)})")
    con.register("incoming", pa.table({"value": arrow}))
    con.execute("INSERT INTO landing SELECT * FROM incoming")
    assert con.execute("SELECT count(value) FROM landing").fetchall() == [(1,)]
    assert series.to_pandas().dtype.name in pandas_dtypes(logical_type)


def test_names_that_carry_their_own_type():
    assert duckdb_type("given_name_bloom", "string") == "BIT"
    assert duckdb_type("year_of_birth", "integer") == "SMALLINT"
    assert duckdb_type("nhs_number_token") == "VARCHAR"
    assert arrow_type_fits(pa.null(), "date")  # an all-empty column: quality judges emptiness
    assert not arrow_type_fits(pa.string(), "date")
    assert arrow_type_fits(pa.binary(), "string")
