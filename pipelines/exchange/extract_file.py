"""The pseudonymised extract file that a partner sends to the hub.

One Parquet file per delivery: exactly the contract's columns, in the contract's
order, with a JSON header in the Parquet key-value metadata under the key
``placelink``. Shared by the partner kit (which writes it) and the hub (which reads
the header before it trusts the rows). No Dagster imports: plain library code.

File name: ``<contract_id>__<dataset>__<period>__<extract_id8>.parquet``. The hub never
receives this file as it is: ``placelink partner prepare`` seals it in a ``.plx`` envelope
(:mod:`pipelines.exchange.envelope`, docs/envelope.md) and keeps the clear copy in ``partner-only/``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

EXTRACT_FORMAT = "placelink-extract/1"
HEADER_METADATA_KEY = "placelink"
EXTRACT_SUFFIX = ".parquet"
PARTNER_ONLY_DIR = "partner-only"
LOOKUP_SUFFIX = ".lookup.parquet"
REPORT_SUFFIX = ".report.json"
PERIOD_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

# What says which delivery this is: stated in the extract's header, and again in the header of the
# envelope that carries it (pipelines.exchange.envelope), so the hub can check the two agree.
DELIVERY_FIELDS = (
    "contract_id",
    "contract_version",
    "partner_id",
    "dataset",
    "reporting_period",
    "created_at",
    "row_count",
)
_HEADER_FIELDS = ("format", "extract_id", *DELIVERY_FIELDS, "invalid_counts", "opted_out_rows")


class ExtractFileError(ValueError):
    """An extract file that cannot be read as a placelink extract; the message names the file."""


@dataclass(frozen=True)
class ExtractHeader:
    """What the partner states about one delivery; carried in the Parquet metadata.

    ``invalid_counts`` maps a field (identity field such as ``nhs_number`` or a payload
    column) to the number of delivered rows whose value was present but unusable and
    was therefore sent as null. Counts only, never values.
    """

    extract_id: str
    contract_id: str
    contract_version: str
    partner_id: str
    dataset: str
    reporting_period: str
    created_at: str
    row_count: int
    invalid_counts: dict[str, int] = field(default_factory=dict)
    opted_out_rows: int = 0
    format: str = EXTRACT_FORMAT
    # "full" (a snapshot of the partner's records) or "delta" (records new or changed since the
    # last delivery): the hub compares a delivery's size with the previous one of the same kind.
    # Optional in the header, so extracts made before it was added still read (as "full").
    delivery_kind: str = "full"

    @property
    def stem(self) -> str:
        return extract_stem(self.contract_id, self.dataset, self.reporting_period, self.extract_id)

    def to_dict(self) -> dict:
        data = asdict(self)
        return {
            **{name: data[name] for name in _HEADER_FIELDS},
            "delivery_kind": self.delivery_kind,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "extract header") -> ExtractHeader:
        missing = [name for name in _HEADER_FIELDS if name not in data]
        if missing:
            raise ExtractFileError(f"{source}: header lacks {', '.join(missing)}")
        if data["format"] != EXTRACT_FORMAT:
            raise ExtractFileError(
                f"{source}: header format is '{data['format']}', expected '{EXTRACT_FORMAT}' "
                "(made by a different partner-kit version?)"
            )
        return cls(
            **{name: data[name] for name in _HEADER_FIELDS},
            delivery_kind=data.get("delivery_kind") or "full",
        )


def delivery_fields(header) -> dict:
    """The :data:`DELIVERY_FIELDS` of an extract's or an envelope's header, as keyword arguments
    of :func:`pipelines.exchange.envelope.seal` (to seal an extract, or seal it again)."""
    return {name: getattr(header, name) for name in DELIVERY_FIELDS}


def extract_stem(contract_id: str, dataset: str, period: str, extract_id: str) -> str:
    """``<contract_id>__<dataset>__<period>__<first 8 hex of extract_id>``."""
    return f"{contract_id}__{dataset}__{period}__{extract_id[:8]}"


# A dictionary column whose values repeat less than this often on average is written as
# plain values (see _plain_where_values_rarely_repeat).
MIN_DICTIONARY_REPEATS = 4


def _plain_where_values_rarely_repeat(table: pa.Table) -> tuple[pa.Table, set[str]]:
    """Decode dictionary columns whose values are mostly different (an NHS number token,
    ~0.4 distinct values per row in an A&E extract). Handed a dictionary that large, the
    Parquet writer falls back to plain values part way and was measured twice as slow as
    writing plain values, for a file of the same size. The values are the same.
    Returns the table and the names of the columns decoded."""
    decoded = set()
    for index, schema_field in enumerate(table.schema):
        if not pa.types.is_dictionary(schema_field.type):
            continue
        column = table.column(index)
        entries = sum(len(chunk.dictionary) for chunk in column.chunks)
        if entries * MIN_DICTIONARY_REPEATS > len(column):
            table = table.set_column(
                index, schema_field.name, column.cast(schema_field.type.value_type)
            )
            decoded.add(schema_field.name)
    return table, decoded


def dictionary_encoded_columns(metadata: pq.FileMetaData, schema: pa.Schema) -> list[str]:
    """The text and binary columns that a Parquet file stores with a dictionary page in some row
    group: read with ``read_dictionary`` they stay dictionaries in Arrow, each distinct value
    held once instead of once per row."""
    return sorted(
        {
            metadata.row_group(g).column(i).path_in_schema
            for g in range(metadata.num_row_groups)
            for i in range(metadata.num_columns)
            if metadata.row_group(g).column(i).has_dictionary_page
        }
        & {
            f.name
            for f in schema
            if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_binary(f.type)
            or pa.types.is_large_binary(f.type)
        }
    )


def write_extract(table: pa.Table, header: ExtractHeader, path: Path) -> Path:
    """Write ``table`` to ``path`` with ``header`` in the Parquet metadata.

    Written to a temporary name and renamed, so a reader (a sensor watching the
    folder) never sees a half-written extract.
    """
    path = Path(path)
    if table.num_rows != header.row_count:
        raise ValueError(
            f"header row_count {header.row_count} does not match the {table.num_rows} rows written"
        )
    tmp = path.with_name(f".{path.name}.tmp")
    table, decoded = _plain_where_values_rarely_repeat(table)
    # Tokens are random hex: min/max statistics on them help no query and cost write
    # time. A dictionary pays everywhere except for record_token (one value per row)
    # and columns whose values rarely repeat (decoded above).
    typed = [
        f.name
        for f in table.schema
        if not pa.types.is_dictionary(f.type)
        and not pa.types.is_string(f.type)
        and not pa.types.is_binary(f.type)
    ]
    repeated = [f.name for f in table.schema if f.name != "record_token" and f.name not in decoded]
    # store_schema=False: columns handed over dictionary-encoded (each distinct token
    # once) read back as the plain string/binary types of the Parquet schema. The
    # header then goes in as explicit key-value metadata.
    with pq.ParquetWriter(
        tmp,
        table.schema,
        compression="zstd",
        write_statistics=typed or False,
        use_dictionary=repeated or False,
        store_schema=False,
    ) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({HEADER_METADATA_KEY: header.to_json()})
    os.replace(tmp, path)
    return path


def read_extract_header(path: Path) -> dict:
    """Return the JSON header of a placelink extract, reading only the Parquet footer.

    Raises :class:`ExtractFileError` naming the file if it is not Parquet or carries no
    placelink header.
    """
    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ExtractFileError(f"{path.name}: not a readable Parquet extract ({exc})") from None
    raw = (schema.metadata or {}).get(HEADER_METADATA_KEY.encode())
    if raw is None:
        raise ExtractFileError(
            f"{path.name}: Parquet file has no '{HEADER_METADATA_KEY}' header; "
            "it was not made by `placelink partner prepare`"
        )
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ExtractFileError(
            f"{path.name}: '{HEADER_METADATA_KEY}' header is not valid JSON ({exc.msg})"
        ) from None
    if not isinstance(header, dict):
        raise ExtractFileError(f"{path.name}: '{HEADER_METADATA_KEY}' header is not a JSON object")
    return header
