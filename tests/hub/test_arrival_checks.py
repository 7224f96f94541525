"""Each arrival check on its own (pipelines.hub.ingest.CHECKS): it passes a good extract and
holds the bad input it is there for, under its own rule name.

A context is the one a good delivery has when the checks before this one have passed; each test
then spoils the one thing the check looks at."""

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core.rejection import ExtractRejected
from pipelines.exchange.keys import HubKey
from pipelines.hub import ingest
from pipelines.hub.ingest import (
    CHECKS,
    Arrival,
    ExtractCheck,
    check_columns,
    check_content,
    check_contract,
    check_dataset,
    check_decryption,
    check_duplicate,
    check_format,
    check_identifiers,
    check_in_force,
    check_readable,
    check_replay,
    check_row_count,
    check_signature,
    check_types,
)
from pipelines.tooling.synth.study import DELIVERED_AT

DATASET = "ae_attendances"
NHS = "9434765919"  # a valid modulus-11 NHS number, as a careless partner might send


def _context(place, path=None, hub_key=None) -> ExtractCheck:
    return ExtractCheck(
        path or place.envelope(DATASET).envelope_path,
        place.contracts,
        {},
        Arrival(hub_key or place.hub_key, None, place.partner_keys),
        DELIVERED_AT.date(),
    )


def _before(c: ExtractCheck, check) -> ExtractCheck:
    """The context as ``check`` receives it: every check before it has passed."""
    for earlier in CHECKS[: CHECKS.index(check)]:
        earlier(c)
    return c


@pytest.fixture
def good(small_place):
    contexts = []

    def make(check, **kwargs):
        contexts.append(_before(_context(small_place, **kwargs), check))
        return contexts[-1]

    yield make
    for c in contexts:
        c.files.close()


def _rejected(check, c: ExtractCheck):
    with pytest.raises(ExtractRejected) as raised:
        check(c)
    r = raised.value.rejection
    assert r.expected and r.found and r.action  # what was expected, found, and what to do
    return r


def test_the_checks_run_in_the_documented_order():
    names = [check.__name__.removeprefix("check_") for check in CHECKS]
    assert names == [
        "format",
        "contract",
        "signature",
        "in_force",
        "dataset",
        "decryption",
        "content",
        "row_count",
        "replay",
        "duplicate",
        "columns",
        "types",
        "readable",
        "identifiers",
    ]
    doc = " ".join(ingest.check_extract.__doc__.split())
    assert "format -> contract" in doc and "types -> readable" in doc
    assert doc.index("in force") < doc.index("decryption")  # never decrypt what may not come


def test_format(good, tmp_path):
    c = good(check_format)
    check_format(c)
    assert c.header["dataset"] == DATASET
    garbage = tmp_path / "not an envelope.plx"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n not a table")
    assert _rejected(check_format, good(check_format, path=garbage)).check == "format"
    link = tmp_path / "link.plx"
    link.symlink_to(garbage)
    r = _rejected(check_format, good(check_format, path=link))
    assert r.check == "format" and r.found.startswith("a symbolic link, not a regular file")


def test_contract(good):
    check_contract(good(check_contract))
    unknown = good(check_contract)
    unknown.header["contract_id"] = "no-such-contract"
    r = _rejected(check_contract, unknown)
    assert r.check == "contract" and "'no-such-contract'" in r.found and r.contract is None
    other = good(check_contract)
    other.header["partner_id"] = "council"
    r = _rejected(check_contract, other)
    assert r.check == "contract" and r.found == "partner 'council'" and r.contract


def test_contract_file_that_is_invalid(good):
    c = good(check_contract)
    c.contract_problems = {c.header["contract_id"]: "bad yaml"}
    r = _rejected(check_contract, c)
    assert r.check == "contract" and "the contract file is invalid: bad yaml" in r.found


def test_signature(good, small_place):
    check_signature(good(check_signature))
    other_key = good(check_signature)
    other_key.header["signer_key"] = small_place.signing_keys["council"].public.fingerprint
    assert _rejected(check_signature, other_key).check == "signature"
    altered = good(check_signature)
    altered.sealed = type(altered.sealed)(
        **{**vars(altered.sealed), "signature": bytes(len(altered.sealed.signature))}
    )
    r = _rejected(check_signature, altered)
    assert r.check == "signature" and "does not verify" in r.found


def test_in_force(good):
    check_in_force(good(check_in_force))
    lapsed = good(check_in_force)
    lapsed.today = lapsed.today.replace(year=lapsed.today.year + 50)
    assert _rejected(check_in_force, lapsed).check == "contract in force"
    lapsed.header["kind"] = "withdrawal"  # data held under a lapsed agreement can be withdrawn
    check_in_force(lapsed)


def test_dataset(good):
    check_dataset(good(check_dataset))
    c = good(check_dataset)
    c.header["dataset"] = "home_addresses"
    r = _rejected(check_dataset, c)
    assert r.check == "dataset" and r.found == "'home_addresses'"


def test_decryption(good):
    c = good(check_decryption)
    check_decryption(c)
    assert c.content_sha256 == c.header["content_sha256"] and c.read_as["envelope_sha256"]
    no_key = good(check_decryption)
    no_key.arrival.hub_key, no_key.arrival.hub_key_problem = None, "no key at keys/hub.key"
    r = _rejected(check_decryption, no_key)
    assert r.check == "decryption" and r.found == "no key at keys/hub.key"
    other_hub = good(check_decryption, hub_key=HubKey.generate("X25519"))
    assert _rejected(check_decryption, other_hub).check == "decryption"


def test_content(good):
    c = good(check_content)
    check_content(c)
    assert c.schema is not None and c.unpacked > 0
    altered = good(check_content)
    altered.header["content_sha256"] = "0" * 64
    r = _rejected(check_content, altered)
    assert r.check == "content" and "0000000000000000… (header)" in r.expected
    not_parquet = good(check_content)
    not_parquet.parquet_bytes = b"a CSV, say"
    r = _rejected(check_content, not_parquet)
    assert r.check == "content" and "not (" in r.found


def _limit_decompression_to_nothing(monkeypatch):
    monkeypatch.setattr(ingest, "MAX_DECOMPRESSED_BYTES", 1)
    monkeypatch.setattr(ingest, "MAX_COMPRESSION_RATIO", 0)


def test_content_that_would_decompress_too_far(good, monkeypatch):
    c = good(check_content)
    _limit_decompression_to_nothing(monkeypatch)
    r = _rejected(check_content, c)
    assert r.check == "content" and "would decompress to" in r.found


def test_row_count(good):
    check_row_count(good(check_row_count))
    c = good(check_row_count)
    c.header["row_count"] += 5
    r = _rejected(check_row_count, c)
    assert r.check == "row count" and r.expected == f"{c.header['row_count']} rows (header)"


def test_replay(good):
    check_replay(good(check_replay))
    c = good(check_replay)
    c.arrival.seen_extract_ids.add(c.header["envelope_id"])
    assert _rejected(check_replay, c).check == "replay"


def test_duplicate(good):
    check_duplicate(good(check_duplicate))
    c = good(check_duplicate)
    c.arrival.seen_content[c.header["content_sha256"]] = "env-earlier"
    r = _rejected(check_duplicate, c)
    assert r.check == "duplicate" and r.found.endswith("accepted envelope env-earlier")
    c.header["kind"] = "withdrawal"  # a withdrawal list may repeat an earlier one
    check_duplicate(c)


def _schema_with(c: ExtractCheck, name: str, type_: pa.DataType) -> pa.Schema:
    index = c.schema.get_field_index(name)
    return (
        c.schema.set(index, pa.field(name, type_))
        if index >= 0
        else c.schema.append(pa.field(name, type_))
    )


def test_columns(good):
    check_columns(good(check_columns))
    extra = good(check_columns)
    extra.schema = _schema_with(extra, "home_address", pa.string())
    r = _rejected(check_columns, extra)
    assert r.check == "columns" and r.found == "column(s) not in the contract: home_address"
    hostile = good(check_columns)
    hostile.schema = _schema_with(hostile, f"{NHS} Quixote", pa.string())
    r = _rejected(check_columns, hostile)
    assert NHS not in r.found and "1 more (names not shown" in r.found
    missing = good(check_columns)
    missing.schema = missing.schema.remove(missing.schema.get_field_index("arrival_date"))
    r = _rejected(check_columns, missing)
    assert r.check == "columns" and r.found == "missing column(s): arrival_date"


def test_columns_of_a_withdrawal_list(good):
    c = good(check_columns)
    c.header["kind"] = "withdrawal"
    r = _rejected(check_columns, c)  # a full extract is not a list of record tokens
    assert r.check == "columns" and r.expected.startswith("a withdrawal list")
    c.schema = pa.schema([("record_token", pa.string())])
    check_columns(c)


def test_types(good):
    check_types(good(check_types))
    c = good(check_types)
    c.schema = _schema_with(c, "arrival_date", pa.string())
    r = _rejected(check_types, c)
    assert r.check == "types" and r.found == "arrival_date (string, contract says date)"


def test_readable(good, small_place, monkeypatch):
    c = good(check_readable)
    check_readable(c)
    assert c.rows.num_rows == small_place.extract(DATASET).rows_out
    # Text stays dictionary-encoded as the Parquet stores it; its values are the extract's.
    plain = pq.read_table(pa.BufferReader(c.parquet_bytes))
    assert c.rows.kept is not None  # small: read once and kept
    assert any(pa.types.is_dictionary(f.type) for f in c.rows.kept.schema)
    assert c.rows.kept.cast(plain.schema).equals(plain)
    bomb = good(check_readable)
    _limit_decompression_to_nothing(monkeypatch)
    r = _rejected(check_readable, bomb)
    assert r.check == "content" and "would decompress to" in r.found


def _in_row_groups(c: ExtractCheck, table: pa.Table | None = None, rows: int = 97) -> None:
    """Make ``c``'s decrypted extract (or ``table``) a Parquet of row groups of ``rows`` rows."""
    table = table if table is not None else pq.read_table(pa.BufferReader(c.parquet_bytes))
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=rows, compression="zstd")
    c.parquet_bytes = sink.getvalue()
    c.parquet = pq.ParquetFile(pa.BufferReader(c.parquet_bytes))
    c.schema = c.parquet.schema_arrow


def test_a_large_delivery_is_read_in_parts_of_whole_row_groups_and_never_kept(good, monkeypatch):
    c = good(check_readable)
    _in_row_groups(c)  # row groups of 97 rows
    plain = pq.read_table(pa.BufferReader(c.parquet_bytes))
    monkeypatch.setattr(ingest, "KEEP_ROWS_BYTES", 1)
    monkeypatch.setattr(ingest, "PART_ROWS", 300)
    reads = []
    read_row_groups = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(
        pq.ParquetFile,
        "read_row_groups",
        lambda self, groups, *a, **k: (
            reads.append(list(groups)) or read_row_groups(self, groups, *a, **k)
        ),
    )
    check_readable(c)
    groups = c.parquet.metadata.num_row_groups
    assert c.rows.kept is None and groups > 12
    # Every row group once, in order, four (388 rows) to a part, the rest in the last.
    assert [g for part in reads for g in part] == list(range(groups))
    assert all(len(part) == 4 for part in reads[:-1]) and 1 <= len(reads[-1]) <= 4
    # Each pass reads it again, and gives the delivery's rows in order.
    again = pa.Table.from_batches(list(c.rows.source()))
    assert again.cast(plain.schema).equals(plain)
    tokens = c.rows.source(["record_token"]).read_all().column(0)
    assert tokens.cast(pa.string()).equals(plain["record_token"].cast(pa.string()))


def test_readable_rejects_pages_that_cannot_be_read(good):
    c = good(check_readable)
    table = pq.read_table(io.BytesIO(c.parquet_bytes))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    zstd_frame = b"\x28\xb5\x2f\xfd"  # each compressed page starts with one
    assert zstd_frame in data
    c.parquet_bytes = data.replace(zstd_frame, b"\x00\x00\x00\x00")
    c.parquet = pq.ParquetFile(pa.BufferReader(c.parquet_bytes))
    r = _rejected(check_readable, c)
    assert r.check == "content" and r.found.startswith("pages that cannot be read")


def test_identifiers(good):
    c = good(check_identifiers)
    check_identifiers(c)
    c = good(check_readable)
    table = pq.read_table(pa.BufferReader(c.parquet_bytes))
    index = table.schema.get_field_index("nhs_number_token")
    table = table.set_column(index, "nhs_number_token", pa.array([NHS] * table.num_rows))
    _in_row_groups(c, table)
    check_readable(c)
    r = _rejected(check_identifiers, c)
    assert r.check == "identifiers" and "nhs_number_token" in r.found and NHS not in r.found
    assert f"{table.num_rows} value(s)" in r.found  # counted over every row group


def test_identifiers_in_a_large_delivery_are_counted_over_every_row_group(good, monkeypatch):
    monkeypatch.setattr(ingest, "KEEP_ROWS_BYTES", 1)
    c = good(check_readable)
    table = pq.read_table(pa.BufferReader(c.parquet_bytes))
    index = table.schema.get_field_index("nhs_number_token")
    values = [NHS if i % 50 == 0 else None for i in range(table.num_rows)]
    table = table.set_column(index, "nhs_number_token", pa.array(values, pa.string()))
    _in_row_groups(c, table)
    check_readable(c)
    assert c.rows.kept is None
    r = _rejected(check_identifiers, c)
    assert f"{(table.num_rows + 49) // 50} value(s)" in r.found and NHS not in r.found


def test_identifiers_in_a_withdrawal_list(good):
    c = good(check_readable)
    c.header["kind"] = "withdrawal"
    _in_row_groups(c, pa.table({"record_token": pa.array([NHS] * 20)}))
    check_readable(c)
    r = _rejected(check_identifiers, c)
    assert r.check == "identifiers" and r.expected == "record tokens only" and NHS not in r.found
