"""Read a partner's raw extract and its reference files, with errors a partner can act on.

A raw extract is CSV (UTF-8, header row), Parquet or an Excel workbook (.xlsx, one sheet:
see ``workbooks``); the format is recognised from the file's content, not its name. All
columns are read as text so nothing is guessed: identity columns are normalised by
``normalise``, payload columns are typed by :func:`parse_payload` against the contract. Error messages name the file, the
column or row, and what to do; they never quote an identifier value.
"""

from __future__ import annotations

import codecs
import csv
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.core.column_types import PAYLOAD_DTYPES
from pipelines.governance.contracts import Contract, Dataset, DateFormat
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.features import IDENTITY_COLUMNS, contract_features
from pipelines.partner_kit.normalise import (
    Factorised,
    map_distinct,
    normalise_dates,
    normalise_nhs_numbers,
    normalise_postcodes,
)
from pipelines.partner_kit.workbooks import read_workbook

_SNIFF_BYTES = 64 * 1024
_MAX_ROWS_NAMED = 5
# A source system's record id; anything longer is a value from another column, not an id.
MAX_RECORD_ID_CHARS = 256
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# Magic numbers of files partners are likely to pick by mistake.
_KNOWN_BINARY = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls workbook (or a password-protected one)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"SQLite format 3", "an SQLite database"),
)


def _is_workbook(path: Path) -> bool:
    """An .xlsx (Office Open XML) workbook: a ZIP archive holding ``xl/workbook.xml``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.startswith("xl/workbook.") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def sniff_format(path: Path, what: str = "raw extract") -> str:
    """``"parquet"``, ``"xlsx"`` or ``"csv"`` from the file's content, else
    :class:`PartnerKitError`."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except FileNotFoundError:
        raise PartnerKitError(f"{what} {path} does not exist: check the path") from None
    except IsADirectoryError:
        raise PartnerKitError(f"{what} {path} is a folder: pass the extract file itself") from None
    except OSError as exc:
        raise PartnerKitError(f"{what} {path.name} cannot be read ({exc.strerror})") from None
    if not head.strip():
        raise PartnerKitError(f"{what} {path.name} is empty: export it again")
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04") and _is_workbook(path):
        return "xlsx"
    for magic, kind in _KNOWN_BINARY:
        if head.startswith(magic):
            raise PartnerKitError(
                f"{what} {path.name} is {kind}, not a CSV or Parquet file: export the "
                "extract as CSV (UTF-8, with a header row) or Parquet"
            )
    if _utf16(head):
        raise PartnerKitError(
            f"{what} {path.name} is UTF-16 text (Excel's 'Unicode Text'): save it as 'CSV UTF-8' "
            "(in Excel: Save As > CSV UTF-8)"
        )
    if b"\x00" in head:
        if not _utf8(head.replace(b"\x00", b"")):
            raise PartnerKitError(
                f"{what} {path.name} is a binary file, not a CSV or Parquet file: export the "
                "extract as CSV (UTF-8, with a header row) or Parquet"
            )
        _refuse_nul_bytes(path, what)
    if b"\r" in head and b"\n" not in head:
        raise PartnerKitError(
            f"{what} {path.name} ends its lines with a carriage return only (old Mac line endings), "
            "so it reads as one line: save it as 'CSV UTF-8', which ends lines with CR LF or LF"
        )
    try:
        # Incremental decoder: the sniffed block may end inside a multi-byte character.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise PartnerKitError(
            f"{what} {path.name} is not UTF-8 text (first bad byte at offset {exc.start}): "
            "save it as 'CSV UTF-8' (in Excel: Save As > CSV UTF-8)"
        ) from None
    return "csv"


def _utf8(block: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(block, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _utf16(head: bytes) -> bool:
    """A byte order mark of UTF-16, or text whose every other byte is 0 (UTF-16 without one)."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    sample = head[:512]
    return len(sample) >= 16 and (
        sample[1::2].count(0) > 0.9 * len(sample[1::2])
        or sample[0::2].count(0) > 0.9 * len(sample[0::2])
    )


def _line_numbers(lines: list[int], total: int) -> str:
    more = total - len(lines)
    return ", ".join(map(str, lines)) + (f" and {more} more" if more > 0 else "")


def _refuse_nul_bytes(path: Path, what: str) -> None:
    """Refuse a text file with a NUL byte anywhere (a damaged or binary export), naming its lines."""
    lines: list[int] = []
    total, newlines = 0, 0  # total: lines with a NUL byte
    with path.open("rb") as handle:
        while block := handle.read(4 * 1024 * 1024):
            at = block.find(b"\x00")
            while at != -1:
                line = newlines + block.count(b"\n", 0, at) + 1
                if not lines or lines[-1] != line:
                    total += 1
                    if len(lines) < _MAX_ROWS_NAMED:
                        lines.append(line)
                at = block.find(b"\x00", at + 1)
            newlines += block.count(b"\n")
    if total:
        raise PartnerKitError(
            f"{what} {path.name} has NUL bytes on line(s) {_line_numbers(lines, total)}: the export "
            "is damaged or not text; export it again as 'CSV UTF-8'"
        )


def _refuse_ragged_records(path: Path, what: str) -> None:
    """Refuse a CSV in which any record, wherever it is, has fewer or more fields than the
    header. Polars fills a short record with empty values, so Python's csv reader (the same
    quoting rules: quoted commas and line breaks are values) counts each record's fields."""
    short: list[int] = []
    long: list[int] = []
    counts = {"fewer": 0, "more": 0}
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # an overlong value is counted invalid later, not refused here
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            width = len(next(reader, []))
            start = reader.line_num + 1
            for record in reader:
                if record and len(record) != width:
                    kind, lines = ("fewer", short) if len(record) < width else ("more", long)
                    counts[kind] += 1
                    if len(lines) < _MAX_ROWS_NAMED:
                        lines.append(start)
                start = reader.line_num + 1
    except (csv.Error, UnicodeDecodeError):
        return  # Polars reports files it cannot read
    finally:
        csv.field_size_limit(limit)
    problems = []
    if short:
        problems.append(
            f"rows with fewer fields than the header on line(s) {_line_numbers(short, counts['fewer'])} "
            "(a line break inside a value that is not in quotes splits a record in two)"
        )
    if long:
        problems.append(
            f"rows with more fields than the header on line(s) {_line_numbers(long, counts['more'])} "
            "(an unquoted comma inside a value?)"
        )
    if problems:
        raise PartnerKitError(
            f"{what} {path.name} has {' and '.join(problems)}: quote values that contain commas or line "
            "breaks (Excel's 'CSV UTF-8' does) and export it again"
        )


def read_raw_extract(
    path: Path, what: str = "raw extract", sheet: str | None = None
) -> pl.DataFrame:
    """Read a raw extract (CSV, Parquet or an .xlsx workbook's ``sheet``) with every column
    as text.

    Column names have surrounding spaces removed. Raises :class:`PartnerKitError` for an
    empty file, a file that is none of these, an unparseable CSV, or repeated column names.
    """
    path = Path(path)
    fmt = sniff_format(path, what)
    if fmt == "xlsx":
        return read_workbook(path, what, sheet)
    try:
        if fmt == "parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8", raise_if_empty=True)
    except pl.exceptions.NoDataError:
        raise PartnerKitError(f"{what} {path.name} is empty: export it again") from None
    except pl.exceptions.DuplicateError:
        raise PartnerKitError(
            f"{what} {path.name} has a column name more than once in its header row: "
            "rename or remove the repeated column"
        ) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        problem = str(exc)
        if "more fields" in problem:
            _refuse_ragged_records(path, what)  # names the lines, if the csv reader finds them
            hint = (
                "a row has more fields than the header (an unquoted comma inside a "
                "value?): quote values that contain commas"
            )
        elif "utf-8" in problem.lower():
            hint = "it is not UTF-8 text: save it as 'CSV UTF-8' (in Excel: Save As > CSV UTF-8)"
        else:
            hint = f"{type(exc).__name__}; check that it is a complete, uncorrupted export"
        raise PartnerKitError(
            f"{what} {path.name} could not be read as {fmt.upper()}: {hint}"
        ) from None

    if fmt == "csv":
        _refuse_ragged_records(path, what)
        _refuse_nul_bytes(path, what)
    names = [name.strip() for name in frame.columns]
    header = _csv_header(path) if fmt == "csv" else names
    if len(set(names)) != len(names) or len({h.strip() for h in header}) != len(header):
        raise PartnerKitError(
            f"{what} {path.name} has a column name more than once in its header row: "
            "rename or remove the repeated column"
        )
    frame = frame.rename(dict(zip(frame.columns, names, strict=True)))
    nested = [name for name, dtype in frame.schema.items() if dtype.is_nested()]
    if nested:
        raise PartnerKitError(
            f"{what} {path.name}: column(s) {', '.join(nested)} hold lists or structs; "
            "a raw extract has one plain value per cell"
        )
    # Parquet may carry typed columns (dates, integers): as text they read like the CSV.
    return frame.with_columns(pl.all().cast(pl.String))


def _csv_header(path: Path) -> list[str]:
    # Polars renames a repeated column ("x", "x_duplicated_0"); read the names as written.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader([handle.readline()]), [])


def allowed_raw_columns(contract: Contract, dataset: Dataset) -> tuple[str, ...]:
    """Raw columns a partner may supply for ``dataset``: the identity columns, the
    contract's payload items and any other raw column a listed feature is made from."""
    allowed = list(IDENTITY_COLUMNS)
    allowed += [name for name in dataset.columns_classified("payload") if name not in allowed]
    for feature in contract_features(contract, dataset):
        allowed += [source for source in feature.sources if source not in allowed]
    return tuple(allowed)


def used_raw_columns(contract: Contract, dataset: Dataset) -> tuple[str, ...]:
    """The raw columns the kit reads for ``dataset``: ``record_id``, the identity columns its
    contract's items are made from and its payload items (what a header row should hold)."""
    used = ["record_id"]
    for feature in contract_features(contract, dataset):
        used += [source for source in feature.sources if source not in used]
    return tuple(used + [n for n in dataset.columns_classified("payload") if n not in used])


def check_raw_columns(
    frame: pl.DataFrame, path: Path, contract: Contract, dataset: Dataset
) -> None:
    """Reject an extract without ``record_id``, with a column the contract does not
    allow, or without a payload column (or a required feature's source) the contract needs."""
    path = Path(path)
    where = f"raw extract {path.name}"
    if "record_id" not in frame.columns:
        # Do not list the columns found: without a header row they would be data values.
        raise PartnerKitError(
            f"{where} has no 'record_id' column: the first line must be the header row, with "
            f"{','.join(used_raw_columns(contract, dataset))} for dataset '{dataset.name}' of "
            f"contract {contract.label}; if your export names its columns otherwise, say which is "
            "which in a mapping file (--mapping; README: your own export)"
        )
    allowed = allowed_raw_columns(contract, dataset)
    unknown = [name for name in frame.columns if name not in allowed]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        # A header row may be a row of data (a file exported without one): name only columns
        # whose names look like column names, and only the first few.
        shown = [u for u in unknown if _COLUMN_NAME.match(u)][:_MAX_ROWS_NAMED]
        hidden = len(unknown) - len(shown)
        listed = ", ".join(repr(u) for u in shown)
        if hidden:
            listed += (" and " if shown else "") + (
                f"{hidden} not shown (names that are not like column names: is the first line data?)"
            )
        raise PartnerKitError(
            f"{where}: column{plural} {listed} not allowed by "
            f"contract {contract.label} for dataset '{dataset.name}' "
            f"(allowed: {', '.join(allowed)}). Remove the column{plural} from the extract, "
            "or ask your IG officer to add the item to the contract."
        )
    missing = [name for name in dataset.columns_classified("payload") if name not in frame.columns]
    for feature in contract_features(contract, dataset):
        required = dataset.item(feature.name).required
        if required:
            missing += [s for s in feature.sources if s not in frame.columns and s not in missing]
    if missing:
        raise PartnerKitError(
            f"{where} lacks column(s) {', '.join(missing)} that contract {contract.label} "
            "needs for dataset "
            f"'{dataset.name}': add them (cells may be empty where a value is not known)"
        )


def _rows(mask: pl.Series) -> str:
    """Line numbers in the CSV (header is line 1) of the first few rows in ``mask``."""
    lines = (mask.arg_true() + 2).head(_MAX_ROWS_NAMED).to_list()
    more = int(mask.sum()) - len(lines)
    return ", ".join(map(str, lines)) + (f" and {more} more" if more > 0 else "")


def _all_different(ids: pl.Series) -> bool:
    """True if no value repeats. Extracts are often in record_id order, and strictly
    increasing values cannot repeat: a comparison of neighbours is ~30x cheaper than
    hashing every id, which is the fallback."""
    if ids.len() < 2:
        return True
    if (ids.slice(1) > ids.slice(0, ids.len() - 1)).all():
        return True
    return ids.n_unique() == ids.len()


def check_record_ids(frame: pl.DataFrame, path: Path) -> None:
    """Every row needs a record_id, unique within the extract, of at most
    :data:`MAX_RECORD_ID_CHARS` characters."""
    path = Path(path)
    ids = frame["record_id"].str.strip_chars().replace("", None)
    blank = ids.is_null()
    if blank.any():
        raise PartnerKitError(
            f"raw extract {path.name}: record_id is empty on line(s) {_rows(blank)}: every "
            "record needs its source-system identifier"
        )
    too_long = ids.str.len_chars() > MAX_RECORD_ID_CHARS
    if too_long.any():
        raise PartnerKitError(
            f"raw extract {path.name}: record_id is longer than {MAX_RECORD_ID_CHARS} characters on "
            f"line(s) {_rows(too_long)}: is another column's value in record_id (a broken line?)"
        )
    if _all_different(ids):
        return
    repeated = ids.is_duplicated()
    if repeated.any():
        raise PartnerKitError(
            f"raw extract {path.name}: record_id is not unique ({int(repeated.sum())} rows "
            f"share a record_id, first on line(s) {_rows(repeated)}): each row must be one "
            "record with its own record_id; "
            "remove duplicate rows"
        )


_INT32 = (-(2**31), 2**31 - 1)
_TRUE = ("TRUE", "T", "YES", "Y", "1")
_FALSE = ("FALSE", "F", "NO", "N", "0")


def _parse_item(
    values: pl.Series,
    logical_type: str,
    allowed_values: tuple[str, ...] | None,
    date_formats: tuple[DateFormat, ...] = (),
) -> pl.Series:
    text = values.str.strip_chars().replace("", None)
    if logical_type == "date":
        return normalise_dates(text, formats=date_formats).values
    frame = pl.DataFrame({"v": text})
    if logical_type == "integer":
        number = pl.col("v").str.replace(r"^\+", "").str.to_integer(strict=False)
        in_range = number.is_between(*_INT32)
        return frame.select(pl.when(in_range).then(number).cast(pl.Int32)).to_series()
    if logical_type == "number":
        return frame.select(pl.col("v").cast(pl.Float64, strict=False)).to_series()
    if logical_type == "boolean":
        upper = pl.col("v").str.to_uppercase()
        return frame.select(
            pl.when(upper.is_in(_TRUE))
            .then(True)
            .when(upper.is_in(_FALSE))
            .then(False)
            .otherwise(None)
        ).to_series()
    if allowed_values:
        # Case and surrounding spaces forgiven; anything else is not sent (a free-text
        # value in a coded column is a minimisation risk).
        spelling = {value.lower(): value for value in allowed_values}
        return map_distinct(
            text,
            lambda d: d.str.to_lowercase().replace_strict(
                spelling, default=None, return_dtype=pl.String
            ),
            pl.String,
        )
    return text


@dataclass(frozen=True)
class Payload:
    """Typed payload columns and, per column, how many values were unusable (sent as null)."""

    columns: dict[str, pl.Series]
    invalid: dict[str, int]


def parse_payload(frame: pl.DataFrame, contract: Contract, dataset: Dataset) -> Payload:
    """Type the payload columns as the contract says. A malformed date, integer or
    coded value becomes null and is counted; it never stops the extract."""
    columns: dict[str, pl.Series] = {}
    invalid: dict[str, int] = {}
    for item in dataset.items:
        if item.classification != "payload":
            continue
        if item.logical_type not in PAYLOAD_DTYPES:
            raise PartnerKitError(
                f"contract {contract.label} ({contract.path.name}): payload item "
                f"'{dataset.name}.{item.name}' has logicalType '{item.logical_type}', "
                "which the partner kit cannot send (use one of "
                f"{', '.join(PAYLOAD_DTYPES)})"
            )
        # Payload values repeat heavily (dates, counts, codes): each distinct value is
        # parsed once and the result spread over the rows.
        raw = Factorised.of(frame[item.name])
        parsed = _parse_item(
            raw.distinct, item.logical_type, item.allowed_values, dataset.date_formats
        ).cast(PAYLOAD_DTYPES[item.logical_type])
        present = raw.distinct.str.strip_chars() != ""
        invalid[item.name] = raw.count_rows(present & parsed.is_null())
        columns[item.name] = raw.expand(parsed).alias(item.name)
    return Payload(columns=columns, invalid=invalid)


# The lookup's columns under the names the kit uses and under ONS's names: the ONS Postcode
# Directory (ONSPD: pcds, lsoa21, osward) and ONS's "PCD to OA to LSOA to MSOA to LAD" best-fit
# lookup (PCDS, LSOA21CD; it has no ward). First listed, first taken: 2021 LSOAs before 2011.
LOOKUP_COLUMNS = {
    "postcode": ("postcode", "pcds", "pcd", "pcd7", "pcd8", "pcd2"),
    "lsoa_code": ("lsoa_code", "lsoa21cd", "lsoa21", "lsoa11cd", "lsoa11"),
    "ward_code": ("ward_code", "osward"),
}
_WARD_CODE = re.compile(r"wd\d{2}cd")  # ONS names ward codes by their year: WD24CD


def _lookup_column(names: list[str], wanted: str) -> str | None:
    lower = {name.strip().lower(): name for name in names}
    found = next((lower[c] for c in LOOKUP_COLUMNS[wanted] if c in lower), None)
    if found is None and wanted == "ward_code":
        found = next(
            (lower[c] for c in sorted(lower, reverse=True) if _WARD_CODE.fullmatch(c)), None
        )
    return found


def read_postcode_lookup(path: Path) -> pl.DataFrame:
    """The partner-side postcode lookup as ``postcode, lsoa_code, ward_code``, postcodes
    normalised like the extract's; one row per postcode.

    The file is CSV or Parquet with the kit's column names or ONS's (see
    :data:`LOOKUP_COLUMNS`), so ONS's files are used as downloaded; only the three columns
    are read. A lookup without wards gives ``ward_code`` empty.
    """
    path = Path(path)
    what = "postcode lookup"
    fmt = sniff_format(path, what)
    names = _csv_header(path) if fmt == "csv" else read_raw_extract(path, what).columns
    chosen = {wanted: _lookup_column(names, wanted) for wanted in LOOKUP_COLUMNS}
    missing = [w for w in ("postcode", "lsoa_code") if chosen[w] is None]
    if missing:
        raise PartnerKitError(
            f"{what} {path.name} has no {' or '.join(missing)} column: expected a header row with "
            "postcode, lsoa_code and (optionally) ward_code, or ONS's names (pcds, lsoa21cd, osward)"
        )
    source = [c for c in chosen.values() if c is not None]
    if fmt == "csv":
        frame = pl.scan_csv(path, infer_schema=False, encoding="utf8").select(source).collect()
    else:
        frame = read_raw_extract(path, what).select(source)
    frame = frame.select(
        pl.col(c).cast(pl.String).alias(wanted) if c else pl.lit(None, pl.String).alias(wanted)
        for wanted, c in chosen.items()
    )
    postcodes = normalise_postcodes(frame["postcode"]).values
    lookup = (
        frame.select(pl.col("lsoa_code", "ward_code").str.strip_chars().replace("", None))
        .with_columns(postcode=postcodes)
        .drop_nulls("postcode")
        .unique(maintain_order=True)
    )
    clashes = lookup["postcode"].is_duplicated()
    if clashes.any():
        raise PartnerKitError(
            f"postcode lookup {path.name}: {int(clashes.sum())} rows give different areas for "
            "the same postcode: use one lookup release (ONSPD) without duplicates"
        )
    return lookup.select("postcode", "lsoa_code", "ward_code")


def read_opt_outs(path: Path) -> pl.Series:
    """NHS numbers with a National Data Opt-out (column ``nhs_number``), normalised;
    unusable entries are dropped (they cannot match a valid NHS number)."""
    path = Path(path)
    frame = _read_reference(path, "opt-out list", ("nhs_number",))
    return normalise_nhs_numbers(frame["nhs_number"]).values.drop_nulls().unique()


def _read_reference(path: Path, what: str, columns: tuple[str, ...]) -> pl.DataFrame:
    frame = read_raw_extract(path, what)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PartnerKitError(
            f"{what} {path.name} has no column(s) {', '.join(missing)}: "
            f"expected a header row with {', '.join(columns)}"
        )
    return frame
