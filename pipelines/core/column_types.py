"""How the columns of an extract are typed and named, in one place.

A contract declares each column's ``logicalType`` (ODCS); the partner kit reads payload columns
as the Polars type of that logical type, the hub checks the Arrow type it receives fits it,
quality checks the pandas dtype Great Expectations sees, and landing tables hold it as a DuckDB
type. Two names carry their own type whatever the contract says: Bloom-filter encodings
(``*_bloom``: bytes, held as DuckDB ``BIT`` so a Dice comparison is a ``bit_count``) and
``year_of_birth`` (a small integer). Keyed tokens end in ``_token``; a column of several
tokens, space-separated, in ``_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

BLOOM_SUFFIX = "_bloom"
TOKEN_SUFFIX = "_token"
TOKENS_SUFFIX = "_tokens"
YEAR_OF_BIRTH = "year_of_birth"


def is_bloom(column: str) -> bool:
    """A Bloom-filter encoding of a name or address (bytes)."""
    return column.endswith(BLOOM_SUFFIX)


def is_token(column: str) -> bool:
    """A keyed token (HMAC of a normalised identifier, 32 hex characters)."""
    return column.endswith(TOKEN_SUFFIX)


def is_token_set(column: str) -> bool:
    """Several keyed tokens in one value, separated by single spaces (a postal code's variants)."""
    return column.endswith(TOKENS_SUFFIX)


def _text(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_binary(arrow_type)
    )


def _number(arrow_type: pa.DataType) -> bool:
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


@dataclass(frozen=True)
class LogicalType:
    """One contract ``logicalType``: as the partner kit reads it (None: not a payload type it
    reads), the Arrow types that fit it, as pandas dtypes may show it, and as DuckDB holds it."""

    polars: pl.DataType | None
    arrow_fits: object  # Callable[[pa.DataType], bool]
    pandas: tuple[str, ...]
    duckdb: str


# In the order the partner kit names them when a contract uses another.
LOGICAL_TYPES: dict[str, LogicalType] = {
    "date": LogicalType(
        pl.Date,
        pa.types.is_date,
        ("datetime64[ms]", "datetime64[us]", "datetime64[ns]", "datetime64[s]"),
        "DATE",
    ),
    # integers with nulls reach pandas as float64
    "integer": LogicalType(
        pl.Int32,
        pa.types.is_integer,
        ("int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64", "float64"),
        "INTEGER",
    ),
    "number": LogicalType(
        pl.Float64, _number, ("int8", "int16", "int32", "int64", "float32", "float64"), "DOUBLE"
    ),
    "boolean": LogicalType(
        pl.Boolean, pa.types.is_boolean, ("bool", "boolean", "object"), "BOOLEAN"
    ),
    "string": LogicalType(pl.String, _text, ("object", "str", "string"), "VARCHAR"),
    # a landing type only: the partner kit reads no timestamp payload, other checks take it as text
    "timestamp": LogicalType(None, _text, ("object", "str", "string"), "TIMESTAMP"),
}
STRING = LOGICAL_TYPES["string"]

# The partner kit's payload types (Polars), by logical type.
PAYLOAD_DTYPES = {name: t.polars for name, t in LOGICAL_TYPES.items() if t.polars is not None}

# How each column type of an extract is stored: tokens text, Bloom filters binary,
# year_of_birth Int16, payload dates Date and integers Int32.
ARROW_TYPES = {
    pl.String: pa.string(),
    pl.Binary: pa.binary(),
    pl.Int16: pa.int16(),
    pl.Int32: pa.int32(),
    pl.Date: pa.date32(),
    pl.Float64: pa.float64(),
    pl.Boolean: pa.bool_(),
}


def arrow_type_fits(arrow_type: pa.DataType, logical_type: str) -> bool:
    """Whether a column received as ``arrow_type`` holds the contract's ``logical_type``
    (an all-empty column carries no type, and fits: quality checks judge emptiness)."""
    if pa.types.is_null(arrow_type):
        return True
    return LOGICAL_TYPES.get(logical_type, STRING).arrow_fits(arrow_type)


def pandas_dtypes(logical_type: str) -> list[str]:
    """The pandas dtypes a column of ``logical_type`` may arrive as (via Arrow)."""
    return list(LOGICAL_TYPES.get(logical_type, STRING).pandas)


def duckdb_type(column: str, logical_type: str = "string") -> str:
    """The DuckDB type the hub holds a column in: BIT for Bloom filters, SMALLINT for
    year_of_birth, else its logical type's."""
    if is_bloom(column):
        return "BIT"
    if column == YEAR_OF_BIRTH:
        return "SMALLINT"
    return LOGICAL_TYPES.get(logical_type, STRING).duckdb
