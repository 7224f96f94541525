"""Receive extracts from the inbox: check each against its contract, land it or hold it.

Every file is handled on its own: a bad file from one partner is quarantined with its
reason and never stops the others. Checks run in a fixed order and stop at the first
failure. Accepted rows replace earlier rows with the same ``record_token`` (a partner
re-sending a corrected record), so a dataset's landing table is its latest state.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.core import progress
from pipelines.core.column_types import arrow_type_fits, duckdb_type
from pipelines.core.rejection import ExtractRejected, Rejection
from pipelines.core.settings import Settings
from pipelines.core.stages import stage
from pipelines.core.stored_paths import migrate_stored_paths
from pipelines.core.warehouse import table_exists
from pipelines.exchange.envelope import (
    EnvelopeError,
    SealedHeader,
    decrypt_chunks,
    hash_and_collect,
    read_header,
    signature_valid,
)
from pipelines.exchange.extract_file import HEADER_METADATA_KEY, dictionary_encoded_columns
from pipelines.exchange.keys import HubKey, KeyFileError, SigningPublicKey, partner_key_path
from pipelines.governance.audit import AuditLog
from pipelines.governance.contracts import Contract, ContractError
from pipelines.hub.delivery_states import (
    Flow,
    drive_hold,
    extract_accepted_event,
    inbox_changeable,
    land_accepted,
    place_in_vault,
    plan_accept,
    plan_hold,
)
from pipelines.hub.identifiers import IdentifierScan
from pipelines.hub.inbox import DigestingReader, NotADelivery, open_delivery, printable_name
from pipelines.hub.journal import Entry, Identity, Journal, inbox_files, inbox_folders
from pipelines.hub.recovery import recover
from pipelines.hub.withdrawals import IdentityEraser, apply_withdrawal, withdrawal_list_spec
from pipelines.quality import worker as quality_worker
from pipelines.quality.validate import finish_quality_check, start_quality_check

# A decrypted extract may take this much memory when read (the largest measured, school
# attendance at 1M people, is about 1.3 GB) unless it also decompresses to more than
# MAX_COMPRESSION_RATIO times its size, which no extract of tokens does.
MAX_DECOMPRESSED_BYTES = 4 * 2**30
MAX_COMPRESSION_RATIO = 50
# A delivery's rows are kept in memory once read while they take at most this much (in Arrow,
# dictionary-encoded text held once per row group: school attendance at 3M people, 5.4M rows,
# takes 0.96 GB). A larger delivery is read again from its decrypted Parquet, a part (PART_ROWS)
# at a time, each time it is needed (the arrival checks, then landing), so ingest never holds all
# its rows: at 10M people school attendance is 18M rows, 3.3 GB in Arrow.
KEEP_ROWS_BYTES = 2**30
# A delivery is read in parts of whole row groups, each part at least this many rows (or the
# rest): the partner kit writes row groups of 1,048,576 rows, so each is a part; a file of many
# small row groups is read in a few parts, not one Python step and identifier count per group.
PART_ROWS = 1_048_576
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass
class Receipt:
    """What happened to one inbox file."""

    file_name: str
    status: str
    contract_id: str | None = None
    dataset: str | None = None
    row_count: int | None = None
    reason: str | None = None
    header: dict = field(default_factory=dict)
    kind: str = "extract"
    check: str | None = None  # the arrival check that held it


def _reject(check: str, expected: str, found: str, action: str, contract: str | None = None):
    raise ExtractRejected(Rejection(check, expected, found, action, contract))


@dataclass
class Arrival:
    """What the hub knows when a file arrives: its decryption key, the partners' registered
    public keys, and what it has already accepted (for replay and duplicate checks)."""

    hub_key: HubKey | None
    hub_key_problem: str | None
    partner_keys: Path
    seen_extract_ids: set[str] = field(default_factory=set)
    seen_content: dict[str, str] = field(default_factory=dict)  # content_sha256 -> envelope id


class DeliveryRows:
    """The rows of a decrypted extract, read from its Parquet bytes in parts of whole row groups
    (PART_ROWS), with text the partner wrote dictionary-encoded kept as dictionaries (each
    distinct value once).

    Parts read are kept (:meth:`keep`) while they take at most KEEP_ROWS_BYTES; otherwise every
    pass reads them again, so a delivery of any size costs its Parquet bytes and one part."""

    def __init__(
        self,
        parquet: pa.Buffer | bytes,
        encoded: list[str],
        metadata: pq.FileMetaData | None = None,
    ) -> None:
        self.file = pq.ParquetFile(
            pa.BufferReader(parquet), metadata=metadata, read_dictionary=encoded
        )
        self.schema = self.file.schema_arrow.remove_metadata()
        self.num_rows = self.file.metadata.num_rows
        self.kept: pa.Table | None = None
        # Rows that take well under KEEP_ROWS_BYTES (Arrow took 1.3-1.5 times the Parquet's own
        # uncompressed size at 1M people) are read in one part: reading part by part cost about
        # 0.2 s more on school attendance's 1.8M rows. (A bomb is caught once read, as before.)
        self.small = 2 * unpacked_size(self.file.metadata) <= KEEP_ROWS_BYTES

    def parts(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """The rows (of ``columns``, or all) part by part, in order."""
        if self.kept is not None:
            yield self.kept if columns is None else self.kept.select(columns)
            return
        if self.small:  # read whole (on threads), as it will be kept
            yield self.file.read(columns=columns).replace_schema_metadata(None)
            return
        metadata, groups, rows = self.file.metadata, [], 0
        for index in range(metadata.num_row_groups):
            groups.append(index)
            rows += metadata.row_group(index).num_rows
            if rows >= PART_ROWS or index == metadata.num_row_groups - 1:
                part = self.file.read_row_groups(groups, columns=columns)
                yield part.replace_schema_metadata(None)
                groups, rows = [], 0

    def keep(self, parts: list[pa.Table]) -> None:
        """Hold ``parts`` (all of them, as :meth:`parts` read them) instead of reading again."""
        self.kept = pa.concat_tables(parts) if parts else self.schema.empty_table()

    def source(self, columns: list[str] | None = None) -> pa.Table | pa.RecordBatchReader:
        """What DuckDB scans: the kept rows, or a reader that reads one part at a time (a reader
        is read once: ask for one per statement)."""
        if self.kept is not None:
            return self.kept if columns is None else self.kept.select(columns)
        schema = (
            self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        )
        return pa.RecordBatchReader.from_batches(
            schema, (batch for part in self.parts(columns) for batch in part.to_batches())
        )


def unpacked_size(metadata: pq.FileMetaData) -> int:
    """The bytes a Parquet file's row groups take uncompressed, as its footer says."""
    return sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))


@dataclass
class OpenedExtract:
    """An envelope that passed every check: its header, contract and the decrypted rows (in memory:
    a withdrawal list as ``table``, an extract as ``rows`` read from its ``parquet``)."""

    header: dict
    contract: Contract
    table: pa.Table | None = None
    rows: DeliveryRows | None = None
    parquet: bytes | None = None  # the decrypted extract the rows are read from (quality worker)
    kind: str = "extract"  # or "withdrawal": a list of record tokens to delete
    envelope_sha256: str | None = None  # of the envelope's bytes as they were read and checked
    identity: dict | None = None  # which inbox file was read (pipelines.hub.journal.Identity)

    @property
    def row_count(self) -> int:
        return self.table.num_rows if self.table is not None else self.rows.num_rows


def load_arrival(settings: Settings) -> Arrival:
    """The hub's key (or why it cannot be used) and where partner public keys are registered."""
    hub_key, problem = None, None
    if not settings.hub_key_path.exists():
        problem = (
            f"the hub has no decryption key at {settings.hub_key_path}: "
            "run `placelink hub keygen` and give partners the public key"
        )
    else:
        try:
            hub_key = HubKey.load(settings.hub_key_path, settings.hub_key_passphrase)
        except KeyFileError as exc:
            problem = str(exc)
    return Arrival(hub_key, problem, settings.partner_keys)


@dataclass
class ExtractCheck:
    """One inbox file as the arrival checks see it: what the hub knows when it arrives, and
    what each check found that the checks after it use (filled in as the checks pass).

    ``files`` closes the delivery when the checks stop, whether they passed or not; the
    decryption check closes it as soon as the envelope has been read to its end.
    """

    path: Path
    contracts: dict[str, Contract]
    contract_problems: dict[str, ContractError]
    arrival: Arrival
    today: dt.date
    files: ExitStack = field(default_factory=ExitStack)
    stream: DigestingReader | None = None  # the delivery, hashed as it is read
    sealed: SealedHeader | None = None
    header: dict = field(default_factory=dict)  # the signed header (verified once signature passed)
    contract: Contract | None = None
    plain: io.BytesIO = field(default_factory=io.BytesIO)  # decrypted as it is read
    parquet_bytes: bytes = b""  # the decrypted extract once read to its end, in memory only
    content_sha256: str | None = None  # of the decrypted extract
    read_as: dict = field(default_factory=dict)  # envelope_sha256 and identity of the bytes read
    parquet: pq.ParquetFile | None = None
    schema: pa.Schema | None = None
    unpacked: int = 0  # bytes the extract takes once decompressed
    encoded: list[str] = field(default_factory=list)  # text columns read as dictionaries
    table: pa.Table | None = None  # a withdrawal list's rows
    rows: DeliveryRows | None = None  # an extract's rows
    scan: IdentifierScan = field(default_factory=IdentifierScan)  # filled as the rows are read

    @property
    def label(self) -> str | None:
        return self.contract.label if self.contract is not None else None

    @property
    def withdrawal(self) -> bool:
        return self.header.get("kind") == "withdrawal"

    @property
    def dataset_name(self) -> str | None:
        return self.header.get("dataset")

    def reject(self, check: str, expected: str, found: str, action: str):
        _reject(check, expected, found, action, self.label)

    def opened(self) -> OpenedExtract:
        """What passed: the header completed from inside the signed content, and the rows."""
        try:
            inner = json.loads(
                (self.schema.metadata or {}).get(HEADER_METADATA_KEY.encode(), b"{}")
            )
        except ValueError:
            inner = {}  # the counts are informative only; the signed envelope header is what counts
        if self.withdrawal:
            reason = inner.get("reason") if inner.get("reason") in ("opt_out", "erasure") else None
            header = {**self.header, "extract_id": self.header["envelope_id"], "reason": reason}
            table = self.table.replace_schema_metadata(None)
            return OpenedExtract(header, self.contract, table, kind="withdrawal", **self.read_as)
        header = {
            **{k: inner[k] for k in ("invalid_counts", "opted_out_rows") if k in inner},
            **self.header,
            "extract_id": self.header["envelope_id"],
            # inside the signed content; anything but a delta is compared as a full snapshot
            "delivery_kind": "delta" if inner.get("delivery_kind") == "delta" else "full",
        }
        return OpenedExtract(
            header, self.contract, rows=self.rows, parquet=self.parquet_bytes, **self.read_as
        )


def check_format(c: ExtractCheck) -> None:
    """A regular file in the inbox whose envelope header can be read."""
    try:
        delivered = open_delivery(c.path)
    except NotADelivery as exc:
        _reject(
            "format",
            "a regular file delivered into the inbox",
            f"a {exc.kind}, not a regular file (the hub never follows links or opens devices, "
            "FIFOs or sockets: it would read something the partner did not send)",
            "ask the partner to upload the extract file itself; the entry was moved out of the inbox",
        )
    c.stream = DigestingReader(c.files.enter_context(delivered))
    try:
        c.sealed = read_header(c.stream)
    except EnvelopeError as exc:
        what = (
            "ask the partner to re-send the extract; the transfer probably failed"
            if "empty" in exc.found or "truncated" in exc.found
            else "prepare the extract with `placelink partner prepare` and re-send it"
        )
        _reject("format", exc.expected, exc.found, what)
    c.header = c.sealed.header.to_dict()


def check_contract(c: ExtractCheck) -> None:
    """The header names a valid contract the hub holds, and the partner that contract names."""
    contract_id = c.header.get("contract_id")
    if contract_id in c.contract_problems:
        _reject(
            "contract",
            f"a valid contract '{contract_id}'",
            f"the contract file is invalid: {c.contract_problems[contract_id]}",
            "fix the contract (see `placelink contracts check`), then release the extract",
        )
    contract = c.contracts.get(contract_id)
    if contract is None:
        _reject(
            "contract",
            "a contract id known to the hub",
            f"'{contract_id}'",
            f"check the --contract used by the partner; known: {', '.join(sorted(c.contracts))}",
        )
    c.contract = contract
    if c.header.get("partner_id") != contract.partner_id:
        c.reject(
            "contract",
            f"partner '{contract.partner_id}'",
            f"partner '{c.header.get('partner_id')}'",
            "only the partner named in the contract may send under it",
        )


def check_signature(c: ExtractCheck) -> None:
    """The header is signed by the key the contract registers, and the signature verifies."""
    registered = c.contract.terms.signing_key_fingerprint
    if not registered:
        c.reject(
            "signature",
            "a signature by the key the contract names",
            "a contract that names no signing key (signing_key_fingerprint is empty)",
            f"the IG officer registers partner '{c.contract.partner_id}'s public key in the "
            "contract (see docs/envelope.md), then releases the extract",
        )
    if c.header["signer_key"] != registered:
        c.reject(
            "signature",
            f"a signature by key {registered}",
            f"an envelope signed by key {c.header['signer_key']}",
            "the partner must sign with the key registered in its contract; if the partner "
            "changed keys, the IG officer updates the contract first",
        )
    public = _registered_public_key(c, registered)
    if not signature_valid(c.sealed, public):
        c.reject(
            "signature",
            f"a valid Ed25519 signature by {registered}",
            "a signature that does not verify (the header was altered, or signed by another key)",
            "ask the partner to re-send the extract as prepared; do not edit envelopes",
        )


def _registered_public_key(c: ExtractCheck, registered: str) -> SigningPublicKey:
    """The partner's public key as the hub registered it, holding the fingerprint the contract names."""
    key_file = partner_key_path(c.arrival.partner_keys, registered)
    try:
        public = SigningPublicKey.load(key_file)
    except KeyFileError as exc:
        c.reject(
            "signature",
            f"the registered public key file {key_file.name}",
            str(exc),
            f"register partner '{c.contract.partner_id}'s public key at {key_file}",
        )
    if public.fingerprint != registered:
        c.reject(
            "signature",
            f"public key {registered} in {key_file.name}",
            f"a file holding key {public.fingerprint}",
            "re-register the partner's public key",
        )
    return public


def check_in_force(c: ExtractCheck) -> None:
    """The contract is approved and within its validity window today (a withdrawal list need
    not be: data held under a lapsed agreement must still be withdrawable)."""
    in_force, why = c.contract.in_force(c.today)
    if not in_force and not c.withdrawal:
        c.reject(
            "contract in force",
            "an approved contract within its validity window",
            why,
            "the IG officer must approve or renew the agreement; then release the extract",
        )


def check_dataset(c: ExtractCheck) -> None:
    """The dataset is one the contract lists."""
    if c.dataset_name not in c.contract.datasets:
        c.reject(
            "dataset",
            f"one of {', '.join(c.contract.datasets)}",
            f"'{c.dataset_name}'",
            "send only datasets the agreement lists",
        )


def check_decryption(c: ExtractCheck) -> None:
    """The hub's key opens every chunk; the extract is decrypted into memory, hashed as it is
    read (the hub never writes a decrypted extract to disk), and the delivery closed."""
    if c.arrival.hub_key is None:
        c.reject(
            "decryption",
            "a hub decryption key",
            c.arrival.hub_key_problem or "none",
            "set up the hub key, then release the extract",
        )
    try:
        c.content_sha256 = hash_and_collect(
            decrypt_chunks(c.stream, c.sealed, c.arrival.hub_key), c.plain
        )
        c.parquet_bytes, c.plain = c.plain.getvalue(), io.BytesIO()
    except EnvelopeError as exc:
        c.reject(
            "decryption",
            exc.expected,
            exc.found,
            "ask the partner to re-send the extract (encrypted for the current hub public key)",
        )
    c.read_as = {
        "envelope_sha256": c.stream.hexdigest(),
        "identity": asdict(Identity.of(c.stream.status)),
    }
    c.files.close()


def check_content(c: ExtractCheck) -> None:
    """What was decrypted is what the partner signed, a Parquet extract, and no decompression bomb."""
    if c.content_sha256 != c.header["content_sha256"]:
        c.reject(
            "content",
            f"content SHA-256 {c.header['content_sha256'][:16]}… (header)",
            f"{c.content_sha256[:16]}… after decryption",
            "ask the partner to re-send the extract; it does not match what they signed",
        )
    try:
        c.parquet = pq.ParquetFile(pa.BufferReader(c.parquet_bytes))
        c.schema = c.parquet.schema_arrow
    except Exception as exc:  # noqa: BLE001 - whatever pyarrow raises on bytes that are not Parquet
        c.reject(
            "content",
            "a Parquet extract inside the envelope",
            f"content that is not ({type(exc).__name__})",
            "prepare the extract with `placelink partner prepare` and re-send it",
        )
    c.unpacked = unpacked_size(c.parquet.metadata)
    # A decompression bomb: a few megabytes that would take gigabytes of the hub's memory.
    _check_unpacked_size(c)


def _check_unpacked_size(c: ExtractCheck) -> None:
    packed = len(c.parquet_bytes)
    if c.unpacked > MAX_DECOMPRESSED_BYTES and c.unpacked > MAX_COMPRESSION_RATIO * max(1, packed):
        c.reject(
            "content",
            f"an extract that decompresses to at most {MAX_COMPRESSION_RATIO} times its size "
            f"(or under {MAX_DECOMPRESSED_BYTES // 2**20} MiB)",
            f"{packed:,} bytes that would decompress to {c.unpacked:,} bytes",
            "ask the partner why; an extract made by `placelink partner prepare` never does this",
        )


def check_row_count(c: ExtractCheck) -> None:
    """The extract holds as many rows as its signed header says."""
    rows = c.parquet.metadata.num_rows
    if rows != c.header.get("row_count"):
        c.reject(
            "row count",
            f"{c.header.get('row_count')} rows (header)",
            f"{rows} rows",
            "the extract does not match its header; ask the partner to re-send",
        )


def check_replay(c: ExtractCheck) -> None:
    """The envelope id was not accepted before."""
    if c.header["envelope_id"] in c.arrival.seen_extract_ids:
        c.reject(
            "replay",
            "an envelope id not received before",
            f"envelope id {c.header['envelope_id']} was already accepted",
            "nothing: the earlier delivery is in use. Re-prepare to send new data",
        )


def check_duplicate(c: ExtractCheck) -> None:
    """The content was not accepted before under another envelope id (a withdrawal list may
    repeat an earlier one)."""
    if not c.withdrawal and c.header["content_sha256"] in c.arrival.seen_content:
        c.reject(
            "duplicate",
            "content not received before",
            f"a probable duplicate: new envelope id, but the same content as accepted envelope "
            f"{c.arrival.seen_content[c.header['content_sha256']]}",
            "check with the partner whether this was re-sent by mistake; release it only if "
            "the data really is meant to be delivered twice",
        )


def check_columns(c: ExtractCheck) -> None:
    """Exactly the contract's columns (a withdrawal list: one text column of record tokens)."""
    if c.withdrawal:
        if c.schema.names != ["record_token"] or not arrow_type_fits(
            c.schema.field("record_token").type, "string"
        ):
            c.reject(
                "columns",
                "a withdrawal list: one text column, record_token",
                f"column(s) {', '.join(c.schema.names)}",
                "make the list with `placelink partner withdraw` and re-send it",
            )
        return
    allowed = list(c.contract.datasets[c.dataset_name].columns)
    twice = sorted({n for n in c.schema.names if c.schema.names.count(n) > 1})
    if twice:
        c.reject(
            "columns",
            "each of the contract's columns once",
            f"column(s) sent more than once: {_column_names(twice)}",
            "re-prepare the extract with `placelink partner prepare`, which writes each column once",
        )
    extra = [n for n in c.schema.names if n not in allowed]
    missing = [n for n in allowed if n not in c.schema.names]
    if extra:
        c.reject(
            "columns",
            f"only the contract's columns ({', '.join(allowed)})",
            f"column(s) not in the contract: {_column_names(extra)}",
            "remove them at the partner, or ask the IG officer to add them to the contract "
            "(a governance-significant change)",
        )
    if missing:
        c.reject(
            "columns",
            "every column of the contract",
            f"missing column(s): {', '.join(missing)}",
            "re-prepare the extract with the current contract",
        )


def _column_names(names: list[str]) -> str:
    """A column name is the partner's text: name only those that look like column names."""
    shown = [n for n in names if _COLUMN_NAME.fullmatch(n)][:10]
    hidden = len(names) - len(shown)
    return ", ".join(shown) + (
        f"{' and ' if shown else ''}{hidden} more (names not shown: they do not look "
        "like column names)"
        if hidden
        else ""
    )


def check_types(c: ExtractCheck) -> None:
    """Each column's type fits the logical type the contract declares (the withdrawal list's
    one column was checked with the columns)."""
    if c.withdrawal:
        return
    dataset = c.contract.datasets[c.dataset_name]
    wrong_types = [
        f"{n} ({c.schema.field(n).type}, contract says {dataset.item(n).logical_type})"
        for n in dataset.columns
        if not arrow_type_fits(c.schema.field(n).type, dataset.item(n).logical_type)
    ]
    if wrong_types:
        c.reject(
            "types",
            "column types as the contract declares them",
            "; ".join(wrong_types),
            "fix the column types at the partner and re-send",
        )


def check_readable(c: ExtractCheck) -> None:
    """Every page reads, and the rows fit in memory once dictionary-encoded text is decoded.
    An extract is read a part at a time (DeliveryRows), its text columns' values counted for the
    identifier scan as each part is read; its rows are kept if they take KEEP_ROWS_BYTES or less."""
    if c.withdrawal:
        c.table = c.parquet.read()
        c.scan.add(c.table)
        return
    # Dictionary-encoded columns are read as dictionaries first: a value repeated on every row
    # is another way to make a small file that takes gigabytes once read.
    c.encoded = dictionary_encoded_columns(c.parquet.metadata, c.schema)
    c.rows = DeliveryRows(c.parquet_bytes, c.encoded, c.parquet.metadata)
    reading = c.rows.parts()
    decoded, held, parts = 0, 0, []
    while (part := _next_part(c, reading)) is not None:
        decoded += sum(_decoded_bytes(part.column(n)) for n in c.encoded)
        c.unpacked = max(c.unpacked, decoded)
        _check_unpacked_size(c)
        c.scan.add(part)
        held += part.nbytes
        parts.append(part)
        if held > KEEP_ROWS_BYTES:
            parts.clear()  # read again when landed
    # Kept as dictionaries: the identifier scan counted each distinct value once from them, and
    # DuckDB lands them without each row's text being copied into a plain column first.
    if held <= KEEP_ROWS_BYTES:
        c.rows.keep(parts)


def _next_part(c: ExtractCheck, reading: Iterator[pa.Table]) -> pa.Table | None:
    """The next part's rows, or None after the last."""
    try:
        return next(reading, None)
    except Exception as exc:  # noqa: BLE001 - damaged pages: signed by the partner, but unreadable
        c.reject(
            "content",
            "a readable Parquet extract",
            f"pages that cannot be read ({type(exc).__name__})",
            "ask the partner to re-prepare and re-send the extract",
        )


def check_identifiers(c: ExtractCheck) -> None:
    """No clear identifiers in any column (a withdrawal list: record tokens only). The values
    were counted as the rows were read (check_readable)."""
    if c.withdrawal:
        spec, expected = withdrawal_list_spec(c.dataset_name), "record tokens only"
        action = (
            "make the list with `placelink partner withdraw` (it sends tokens, never record "
            "ids) and re-send it; tell the IG officer"
        )
    else:
        spec = c.contract.datasets[c.dataset_name]
        expected = "pseudonymised values only (no clear identifiers)"
        action = (
            "the partner must tokenise these columns with `placelink partner prepare` and re-send; "
            "tell the IG officer (clear identifiers reached the hub)"
        )
    suspicions = c.scan.suspicions(spec)
    if suspicions:
        c.reject("identifiers", expected, "; ".join(s.describe() for s in suspicions), action)


# The arrival checks, in the order they run. In-force and dataset come before decryption so
# the hub never decrypts data it may not receive.
CHECKS = (
    check_format,
    check_contract,
    check_signature,
    check_in_force,
    check_dataset,
    check_decryption,
    check_content,
    check_row_count,
    check_replay,
    check_duplicate,
    check_columns,
    check_types,
    check_readable,
    check_identifiers,
)


def check_extract(
    path: Path,
    contracts: dict[str, Contract],
    contract_problems: dict[str, ContractError],
    arrival: Arrival,
    today: dt.date,
) -> OpenedExtract:
    """Run the arrival checks (CHECKS) in order and stop at the first failure (raise
    ExtractRejected).

    format -> contract (exists, names this partner) -> signature (the contract's key) ->
    contract in force -> dataset -> decryption -> content (hash, Parquet, size) -> row count ->
    replay -> duplicate -> columns -> types -> readable (every page, decoded size) ->
    identifiers. In-force and dataset come before decryption so the hub never decrypts data it
    may not receive.

    A withdrawal list (envelope ``kind: withdrawal``) passes the same checks except in-force
    (data held under a lapsed agreement must still be withdrawable) and duplicate, and must be
    one column of record tokens (pipelines.hub.withdrawals).
    """
    c = ExtractCheck(path, contracts, contract_problems, arrival, today)
    with c.files:
        for check in CHECKS:
            check(c)
    return c.opened()


def _decoded_bytes(column: pa.ChunkedArray) -> int:
    """The bytes a dictionary-encoded text column takes once each row holds its own value."""
    total = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type) and (
            pa.types.is_string(chunk.type.value_type)
            or pa.types.is_large_string(chunk.type.value_type)
            or pa.types.is_binary(chunk.type.value_type)
        ):
            lengths = pc.binary_length(chunk.dictionary)
            total += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
    return total


def _land(con: duckdb.DuckDBPyConnection, opened: OpenedExtract, received_at: dt.datetime) -> int:
    """Land the rows (replacing earlier rows with the same record_token); returns how many rows were
    left out because the partner had withdrawn those records before."""
    header, contract = opened.header, opened.contract
    dataset = contract.datasets[header["dataset"]]
    rows = opened.rows
    selects = []
    for column in dataset.columns:
        # Bloom encodings arrive as raw bytes; BIT makes Dice a bit_count in linkage.
        kind = rows.schema.field(column).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        selects.append(
            f'CAST("{column}" AS BIT) AS "{column}"'
            if pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
            else f'"{column}"'
        )
    select = ", ".join(selects)
    table = f"landing.{dataset.name}"
    # Straight from Arrow into the landing table (DuckDB scans Arrow without a copy), with no
    # staging table in between: staging copied every row once more (measured in docs/benchmarks.md).
    # A large delivery is scanned a part at a time, read again for each statement
    # (DeliveryRows.source), so its rows are never all in memory.
    # Records the partner withdrew before are left out and counted (pipelines/hub/withdrawals.py).
    # The filter costs about a tenth of the insert (measured on A&E at 1M): left out when the
    # dataset has no withdrawn records, where it would keep every row.
    keep, params, withdrawn = "", [], 0
    if _has_withdrawn_records(con, dataset.name):
        keep = (
            "WHERE record_token IS NULL OR record_token NOT IN "
            "(SELECT record_token FROM hub.withdrawn_records WHERE dataset = ?)"
        )
        params = [dataset.name]
        with _scanned(con, rows, ["record_token"]):
            kept_rows = con.execute(f"SELECT count(*) FROM decrypted_extract {keep}", params)
            withdrawn = rows.num_rows - kept_rows.fetchall()[0][0]
    if con.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchall()[0][0]:
        with _scanned(con, rows, ["record_token"]):
            con.execute(
                f"DELETE FROM {table} WHERE record_token IN "
                f"(SELECT record_token FROM decrypted_extract {keep})",
                params,
            )
    with _scanned(con, rows):
        con.execute(
            f"INSERT INTO {table} BY NAME SELECT {select}, ? AS _extract_id, "
            f"CAST(? AS TIMESTAMP) AS _received_at FROM decrypted_extract {keep}",
            [header["extract_id"], received_at.replace(tzinfo=None), *params],
        )
    return withdrawn


@contextmanager
def _scanned(
    con: duckdb.DuckDBPyConnection, rows: DeliveryRows, columns: list[str] | None = None
) -> Iterator[None]:
    """The delivery's rows (``columns`` of them, or all) as the view ``decrypted_extract``, for one
    statement."""
    con.register("decrypted_extract", rows.source(columns))
    try:
        yield
    finally:
        con.unregister("decrypted_extract")


def _has_withdrawn_records(con: duckdb.DuckDBPyConnection, dataset: str) -> bool:
    return table_exists(con, "hub", "withdrawn_records") and bool(
        con.execute(
            "SELECT count(*) FROM hub.withdrawn_records WHERE dataset = ?", [dataset]
        ).fetchall()[0][0]
    )


def _hold(
    flow: Flow,
    path: Path,
    rejection: Rejection,
    claimed: dict,
    copy: bool,
    entry: Entry | None = None,
) -> Receipt:
    """Hold one file unchanged with its reason, record the delivery and audit it (journalled:
    pipelines.hub.delivery_states); returns its receipt."""
    label = printable_name(path.name)
    inbox_name = flow.path(entry.source).name if entry is not None else path.name
    entry = plan_hold(flow, path, inbox_name, label, rejection, claimed, copy, entry)
    drive_hold(flow, entry)
    return Receipt(
        label,
        "quarantined",
        contract_id=claimed.get("contract_id"),
        reason=rejection.message(label),
        check=rejection.check,
    )


_CHANGED = Rejection(
    "unchanged while received",
    "the bytes the hub checked",
    "a file that was replaced or changed while the hub read it (a partner's upload still in progress, "
    "or a second upload under the same name)",
    "ask the partner whether an upload was still running; release it to check it again "
    "(`placelink hub quarantine release`)",
)


def _open(
    path: Path,
    contracts: dict[str, Contract],
    contract_problems: dict[str, ContractError],
    arrival: Arrival,
    now: dt.datetime,
) -> OpenedExtract | Exception:
    """check_extract, with its failure returned rather than raised (files may be opened ahead)."""
    try:
        return check_extract(path, contracts, contract_problems, arrival, now.date())
    except Exception as exc:  # noqa: BLE001 - handed back whole: the caller holds the file with it
        return exc


# How many decrypted rows ingest may hold in memory ahead of the file being validated (beyond
# the one next file it always opens): about 0.7 GB of a partner extract's columns (school
# attendance at 1M people: 1.8M rows, 1.26 GB).
LOOKAHEAD_ROWS = 1_000_000


def _rows(ahead: deque[_Opened]) -> int:
    return sum(o.opened.row_count for o in ahead if isinstance(o.opened, OpenedExtract))


@dataclass
class _Opened:
    """A file opened while the file before it was still being validated.

    The file before may since have been accepted, so if this one claims that file's envelope
    id or content it is opened again against what the hub knows now: the outcome is always the
    one opening the files one after the other would give.
    """

    path: Path
    opened: OpenedExtract | Exception
    # Its quality check, started before the file before it landed (OpeningAhead.check_next_early)
    pending: quality_worker.PendingVerdict | None = None

    def stale(self, arrival: Arrival) -> bool:
        """Whether it claims an envelope id or content accepted since it was opened."""
        header = (
            self.opened.header
            if isinstance(self.opened, OpenedExtract)
            else _claimed_header(self.path)
        )
        return (
            header.get("extract_id") in arrival.seen_extract_ids
            or header.get("content_sha256") in arrival.seen_content
        )


class OpeningAhead:
    """The inbox's files opened (decrypted and checked) one after another, some of them ahead:
    while the quality worker validates one file, the files after it are opened, so decryption
    and the worker's validation overlap.

    What ``take`` returns is always what opening the files strictly one after the other would
    give: a file opened ahead that claims an envelope id or content accepted since is opened
    again against what the hub knows now.
    """

    def __init__(self, paths: list[Path], open_one: Callable[[Path], OpenedExtract | Exception]):
        self.paths = paths
        self.open_one = open_one
        self.ahead: deque[_Opened] = deque()
        self.taken = 0  # files handed out by take()

    def take(
        self, arrival: Arrival
    ) -> tuple[OpenedExtract | Exception, quality_worker.PendingVerdict | None]:
        """The next file, opened (or why it cannot be), and its quality check if it was started
        early (see :meth:`check_next_early`)."""
        path = self.paths[self.taken]
        self.taken += 1
        early = self.ahead.popleft() if self.ahead else None
        if early is not None and not early.stale(arrival):
            return early.opened, early.pending
        return self.open_one(path), None

    def check_next_early(
        self,
        current: OpenedExtract,
        start: Callable[[Path, OpenedExtract], quality_worker.PendingVerdict],
    ) -> None:
        """Start the next file's quality check now, so the worker validates it while the file
        just validated lands, where that gives the verdict checking it after the landing would:
        a delivery (not a withdrawal, not a failed opening) of another dataset or contract
        than ``current``'s. Its rules read only the size of its own dataset's last accepted
        delivery, which landing ``current`` does not change; and if it claims what ``current``
        delivered, :meth:`take` opens it again and this check is not used."""
        if not self.ahead or self.ahead[0].pending is not None:
            return
        following = self.ahead[0]
        opened = following.opened
        if (
            not isinstance(opened, OpenedExtract)
            or opened.kind == "withdrawal"
            or (opened.contract.id, opened.header["dataset"])
            == (current.contract.id, current.header["dataset"])
        ):
            return
        try:
            following.pending = start(following.path, opened)
        except Exception:  # noqa: BLE001 - then it is checked in its turn, as without this
            following.pending = None

    def open_ahead(self, verdict_ready: Callable[[], bool]) -> None:
        """Open the next files while the file taken last is validated: always the next, and more
        while its verdict is not ready (at the start of a run the worker is still importing Great
        Expectations), up to LOOKAHEAD_ROWS decrypted rows."""
        while self.taken + len(self.ahead) < len(self.paths) and (
            not self.ahead or (not verdict_ready() and _rows(self.ahead) < LOOKAHEAD_ROWS)
        ):
            following = self.paths[self.taken + len(self.ahead)]
            self.ahead.append(_Opened(following, self.open_one(following)))


FOLDER_IN_INBOX = (
    "a folder is not a delivery: the hub receives files put directly in the inbox, and leaves "
    "folders where they are. What to do: move the folder out of the inbox and ask the partner to "
    "upload its extract files themselves"
)


@stage("ingest and verification")
def receive_inbox(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    contract_problems: dict[str, ContractError],
    audit: AuditLog,
    now: dt.datetime | None = None,
    *,
    erase_identities: IdentityEraser,
) -> list[Receipt]:
    """Finish what a killed run left (pipelines.hub.recovery), then check, land or hold every
    file in the inbox; returns one receipt per file (and one, ``ignored``, per folder found there).

    ``erase_identities`` is linkage's :func:`pipelines.linkage.person_keys.forget_identities`, which
    a withdrawal calls in its delivery's transaction (the hub does not import linkage)."""
    now = now or settings.now()
    migrate_stored_paths(con, settings.home, audit, now)
    ensure_landing_tables(con, contracts)
    flow = Flow(
        settings.home, con, audit, Journal(settings.home, settings.fault), now, erase_identities
    )
    recover(flow)
    arrival = load_arrival(settings)
    for extract_id, content in con.execute(
        "SELECT extract_id, content_sha256 FROM hub.deliveries "
        "WHERE status = 'accepted' AND extract_id IS NOT NULL"
    ).fetchall():
        arrival.seen_extract_ids.add(extract_id)
        if content:
            arrival.seen_content[content] = extract_id
    receipts: list[Receipt] = [_folder_found(flow, folder) for folder in inbox_folders(settings)]
    paths = inbox_files(settings)
    copy = bool(paths) and not inbox_changeable(settings.inbox)
    if paths:
        quality_worker.start()  # it imports Great Expectations while the first file is opened
    opening = OpeningAhead(paths, lambda p: _open(p, contracts, contract_problems, arrival, now))
    shown = progress.task("ingest: deliveries checked", len(paths), "files")
    for index, path in enumerate(paths):
        shown.advance(index - shown.completed)  # the files before this one are done
        label = printable_name(
            path.name
        )  # names can hold new lines, escapes, bytes that are not UTF-8
        audit.append("extract_received", file=label, bytes=path.lstat().st_size)
        flow.journal.step("received")
        opened, early = opening.take(arrival)
        rejection = _quality_gate(con, opened, label, now, opening, early)
        if rejection is not None:
            receipts.append(_hold(flow, path, rejection, _claimed_header(path), copy))
            continue
        if opened.kind != "withdrawal":
            # The worker validates the next file while this one lands.
            opening.check_next_early(
                opened,
                lambda following, o: _start_check(con, o, printable_name(following.name), now),
            )
        receipts.append(_accept(flow, settings, path, label, opened, copy, arrival))
    shown.done()
    return receipts


def _quality_gate(
    con: duckdb.DuckDBPyConnection,
    opened: OpenedExtract | Exception,
    label: str,
    now: dt.datetime,
    opening: OpeningAhead,
    early: quality_worker.PendingVerdict | None = None,
) -> Rejection | None:
    """Why the file is held (it failed an arrival check, or an ERROR quality rule), or None.

    The quality gate holds a delivery before anything of it lands; the next files are opened
    while the worker validates this one (``early``: its check, started while the file before
    it landed).
    """
    try:
        if isinstance(opened, Exception):
            raise opened
        if opened.kind != "withdrawal":
            header, contract = opened.header, opened.contract
            pending = early or _start_check(con, opened, label, now)
            opening.open_ahead(pending.done)
            finish_quality_check(con, pending, header, contract, now)
    except ExtractRejected as exc:
        return exc.rejection
    except Exception as exc:  # noqa: BLE001 - see below
        # Any other failure is a defect in the hub, but still only this file's problem:
        # hold it (the exception's message may quote data, so only its type is kept).
        return Rejection(
            "unexpected error",
            "a file the hub can check",
            f"a {type(exc).__name__} while checking it",
            "report this to the hub's data team with the file name; release the file once fixed",
        )
    return None


def _start_check(
    con: duckdb.DuckDBPyConnection, opened: OpenedExtract, label: str, now: dt.datetime
) -> quality_worker.PendingVerdict:
    """Hand an opened delivery to the quality worker (its decrypted Parquet, when kept)."""
    return start_quality_check(
        con, opened.table, opened.header, opened.contract, label, now, opened.parquet
    )


def _accept(
    flow: Flow,
    settings: Settings,
    path: Path,
    label: str,
    opened: OpenedExtract,
    copy: bool,
    arrival: Arrival,
) -> Receipt:
    """Vault the checked file and land it (journalled); held instead if it changed while it was
    read or its rows do not load. What it delivered is then known to the checks of the next files."""
    header, contract = opened.header, opened.contract
    entry = plan_accept(
        flow,
        path,
        label,
        settings.vault / contract.id,
        opened.identity,
        opened.envelope_sha256,
        copy,
    )
    if not place_in_vault(flow, entry):
        held_from = flow.path(entry.source)
        return _hold(flow, held_from, _CHANGED, _claimed_header(held_from), entry.copy, entry)
    try:
        receipt = _land_delivery(flow, entry, opened)
    except duckdb.Error as exc:
        # The database's message can quote values; keep only the kind of failure.
        r = Rejection(
            "load",
            "rows that load into the dataset's landing table",
            f"a {type(exc).__name__} while loading",
            "check the extract's column types against earlier deliveries",
            contract.label,
        )
        vaulted = flow.path(entry.target)
        return _hold(flow, vaulted, r, _claimed_header(vaulted), entry.copy, entry)
    arrival.seen_extract_ids.add(header["extract_id"])
    if opened.kind != "withdrawal":
        arrival.seen_content[header["content_sha256"]] = header["extract_id"]
    return receipt


def _land_delivery(flow: Flow, entry: Entry, opened: OpenedExtract) -> Receipt:
    """Land the vaulted delivery's rows (or apply its withdrawal), record and audit it."""
    header, contract = opened.header, opened.contract
    row = {
        "file_name": entry.label,
        "received_at": flow.now.replace(tzinfo=None),
        "status": "accepted",
        "extract_id": header["extract_id"],
        "contract_id": contract.id,
        "contract_version": contract.version,
        "partner_id": contract.partner_id,
        "dataset": header["dataset"],
        "reporting_period": header.get("reporting_period"),
        "row_count": header["row_count"],
        "stored_as": entry.target,
        "content_sha256": header["content_sha256"],
        "kind": opened.kind,
    }
    if opened.kind == "withdrawal":
        done = []

        def land() -> dict:
            done.append(
                apply_withdrawal(
                    flow.con,
                    contract,
                    header["dataset"],
                    opened.table,
                    header["extract_id"],
                    header.get("reason"),
                    flow.now,
                    flow.erase_identities,
                    in_transaction=True,
                )
            )
            w = done[0]
            return {
                "event": "records_withdrawn",
                "file": entry.label,
                "withdrawal_id": header["extract_id"],
                "contract": contract.id,
                "contract_version": contract.version,
                "dataset": header["dataset"],
                "reason": header.get("reason"),
                "records_listed": w.tokens,
                "landing_rows_deleted": w.landing_rows,
                "derived_rows_deleted": w.derived_rows,
                "identity_records_erased": w.identity_records,
                "person_keys_retired": w.person_keys_retired,
            }

        land_accepted(flow, entry, land, row)
        return Receipt(
            entry.label,
            "accepted",
            contract.id,
            header["dataset"],
            done[0].landing_rows,
            header=header,
            kind="withdrawal",
        )

    def land() -> dict:
        withdrawn_rows = _land(flow.con, opened, flow.now)
        return extract_accepted_event(
            entry.label,
            header["extract_id"],
            contract.id,
            contract.version,
            header["dataset"],
            header["row_count"],
            header.get("reporting_period"),
            header["delivery_kind"],
            **({"withdrawn_rows_left_out": withdrawn_rows} if withdrawn_rows else {}),
        )

    land_accepted(
        flow,
        entry,
        land,
        {
            **row,
            "invalid_counts": json.dumps(header.get("invalid_counts", {})),
            "opted_out_rows": header.get("opted_out_rows"),
            "delivery_kind": header["delivery_kind"],
        },
    )
    return Receipt(
        entry.label, "accepted", contract.id, header["dataset"], header["row_count"], header=header
    )


def _folder_found(flow: Flow, folder: Path) -> Receipt:
    """A folder in the inbox: left where it is, reported in every run, audited the first time."""
    label = printable_name(folder.name)
    message = f"inbox entry {label} ignored: {FOLDER_IN_INBOX}"
    if flow.ledger.note_folder(folder):
        flow.audit.append("inbox_entry_ignored", file=label, arrived_as="folder", reason=message)
    return Receipt(label, "ignored", reason=message, check="format")


def _claimed_header(path: Path) -> dict:
    """What a held envelope's header says about itself (unverified if the signature failed),
    so hub.deliveries can still tell which contract and partner a held file claims; {} if
    the header cannot be read."""
    try:
        with open_delivery(path) as stream:
            h = read_header(stream).header
    except Exception:  # noqa: BLE001 - the file is held already; an unreadable header claims nothing
        return {}
    return {
        "extract_id": h.envelope_id,
        "contract_id": h.contract_id,
        "contract_version": h.contract_version,
        "partner_id": h.partner_id,
        "dataset": h.dataset,
        "reporting_period": h.reporting_period,
        "row_count": h.row_count,
        "content_sha256": h.content_sha256,
        "kind": h.kind,
    }


def delivery_outcome(receipt: Receipt) -> str:
    """One line for a person: where an accepted file went, or which check held it and why."""
    if receipt.status == "accepted" and receipt.kind == "withdrawal":
        return (
            f"withdrawal accepted: {receipt.row_count} rows deleted from landing.{receipt.dataset}"
        )
    if receipt.status == "accepted":
        return f"accepted: {receipt.row_count} rows into landing.{receipt.dataset}"
    if receipt.status == "ignored":
        return "IGNORED: " + (receipt.reason or "").split(" ignored: ", 1)[-1]
    return "HELD in quarantine: " + (receipt.reason or "").split(": ", 1)[-1]


def delivery_table(receipts: list[Receipt]) -> str:
    """A Markdown table of what happened to each file (for the Dagster UI); no values, only reasons."""
    lines = ["| file | status | dataset | rows | reason |", "|---|---|---|---|---|"]
    for r in receipts:
        reason, name = ((text or "").replace("|", "\\|") for text in (r.reason, r.file_name))
        lines.append(
            f"| {name} | {r.status} | {r.dataset or '-'} | "
            f"{r.row_count if r.row_count is not None else '-'} | {reason or '-'} |"
        )
    return "\n".join(lines) if receipts else "no files were waiting in the inbox"


def ensure_landing_tables(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> None:
    """Create each contract dataset's landing table (empty until a delivery arrives), so
    models run even before every partner has sent data."""
    for contract in contracts.values():
        for dataset in contract.datasets.values():
            columns = ", ".join(
                f'"{i.name}" {duckdb_type(i.name, i.logical_type)}' for i in dataset.items
            )
            con.execute(
                f"CREATE TABLE IF NOT EXISTS landing.{dataset.name} "
                f"({columns}, _extract_id VARCHAR, _received_at TIMESTAMP)"
            )
