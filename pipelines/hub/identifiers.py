"""Spot clear identifiers a partner should have tokenised, before the hub accepts an extract.

A safety net, not the control: the contract's data items decide what a partner may send, and
the partner kit tokenises every identity column. This scan looks at every text column of a
decrypted extract for values that still hold a direct identifier, anywhere in the text and in
any case: NHS numbers (valid modulus 11, written whole or in 3-3-4 groups split by spaces,
dashes, dots or a short word), full UK postcodes (outside columns the contract classifies as
``area``), e-mail addresses, UK phone numbers, dates of birth (a date after "DOB", "born",
"date of birth") and, in text columns without a list of allowed values, people's names
(:mod:`pipelines.hub.names_in_text`). Text is NFKC-normalised first, so full-width digits and
letters count. Returns counts per column and kind, never the values. What it finds and what it
cannot: docs/identifier-scan.md.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from stdnum.gb import nhs

from pipelines.governance.contracts import Dataset
from pipelines.hub.names_in_text import contains_names

# Postcodes and e-mail addresses are found anywhere in a value ("Flat 2, SW1A 1AA"), but only
# as whole words, so a run of letters and digits inside a hex token never counts.
FULL_POSTCODE = r"(?i)\b[A-Z]{1,2}[0-9][A-Z0-9]?[^\S\n]*[0-9][A-Z]{2}\b"
EMAIL = r"[\p{L}\p{N}._%+'\-]+@[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*\.\p{L}{2,}"
# +44 7700 900123, +44 (0)161 496 0000, 07700 900123, (0161) 496 0000: a 0 (or +44) then
# 9 or 10 digits with single spaces, dashes or brackets between them.
UK_PHONE = (
    r"(?:\+[^\S\n]?44[^\S\n]?(?:\(0\)[^\S\n]?)?|(?:^|[^\p{L}\p{N}+])\(?0)[1-9]"
    r"(?:[^\S\n\d]?[\-()]?[^\S\n]?\d){8,9}\b"
)
# An NHS number written whole, or as 3, 3 and 4 digits with a space, dash, dot or slash
# (or a short word: "401 then 234 then 5678") between the groups; checked with modulus 11 after.
_NHS_GAP = r"(?:[^\S\n]*[\-./][^\S\n]*|[^\S\n]+(?:\p{L}{1,5}[^\S\n]+)?)"
NHS_IN_TEXT = rf"\b(?:\d{{10}}|\d{{3}}{_NHS_GAP}\d{{3}}{_NHS_GAP}\d{{4}})\b"
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = (
    rf"(?:\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]\d{{2,4}}|\d{{4}}[/.\-]\d{{1,2}}[/.\-]\d{{1,2}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{2,4}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}})"
)
DATE_OF_BIRTH = (
    r"(?i)\b(?:d\.?\s?o\.?\s?b|date\s+of\s+birth|birth\s?date|born|birthday)\b\.?"
    rf"[\s:;,.\-]*(?:(?:on|is|was)\s+)?{_DATE}\b"
)


@dataclass(frozen=True)
class Suspicion:
    column: str
    kind: str
    count: int

    def describe(self) -> str:
        return f"column '{self.column}': {self.count} value(s) that look like {self.kind}"


def _ascii_digits(text: str) -> str:
    return "".join(
        str(unicodedata.digit(c)) for c in text if unicodedata.digit(c, None) is not None
    )


def nhs_numbers_in_text(values: pl.Series) -> pl.Series:
    """Whether each text holds a valid NHS number (modulus 11, not one digit repeated: the
    placeholders 0000000000 and 1111111111 pass modulus 11); null stays null."""
    frame = pl.DataFrame({"text": values}).with_row_index("row")
    candidates = (
        frame.select("row", candidate=pl.col("text").str.extract_all(NHS_IN_TEXT))
        .explode("candidate")
        .drop_nulls("candidate")
    )
    # Few values get this far (a 10-digit run or 3-3-4 groups), so stdnum checks each one.
    digits = [_ascii_digits(c) for c in candidates["candidate"].to_list()]
    valid = pl.Series([nhs.is_valid(d) and len(set(d)) > 1 for d in digits], dtype=pl.Boolean)
    rows = candidates.filter(valid)["row"]
    return (
        frame.select(
            pl.when(pl.col("text").is_not_null()).then(pl.col("row").is_in(rows.implode()))
        )
        .to_series()
        .alias(values.name)
    )


# A value that is one run of at least 16 hex digits (every token the partner kit writes: 32), or
# several such runs one space apart (a column of several tokens, ``*_tokens``), cannot hold
# anything the checks below find, so it is not looked at: each identifier pattern is either
# bounded by word boundaries, and so must be a whole word, with at most 13 characters (an NHS
# number 10 digits, a phone number 11, a postcode 8), or needs a character no hex run has (an
# "@", a letter after f, a space inside a run); and a name's words are not runs of 16 hex
# letters. A token column then costs one vectorised match instead of every check on every
# distinct value (docs/benchmarks.md). tests/hub/test_identifiers.py holds the checks to that.
HEX_RUN = r"^[0-9A-Fa-f]{16,}(?: [0-9A-Fa-f]{16,})*$"


def _matches(pattern: str) -> Callable[[pl.Series], pl.Series]:
    return lambda values: values.str.contains(pattern)


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _distinct_values(column: pa.ChunkedArray) -> pl.DataFrame:
    """Each distinct non-null value of a text column (``value``) that is not a hex run
    (HEX_RUN), and the rows holding it (``rows``).

    Hex runs are dropped before anything is counted: a token column is nearly all of them, and
    counting its record tokens (one distinct value per row) cost more than the checks. A
    dictionary-encoded column (as ingest reads the partner's Parquet: each distinct value stored
    once) is matched on its dictionary and counted from its indices, so no row's text is copied;
    a dictionary may hold a value twice or values no row uses, which the sum and the filter on
    ``rows`` take care of."""
    if not pa.types.is_dictionary(column.type):
        values = pl.from_arrow(column).cast(pl.String).drop_nulls().rename("value")
        return values.filter(~values.str.contains(HEX_RUN)).value_counts(name="rows")
    parts = []
    for chunk in column.chunks:
        dictionary = pl.from_arrow(chunk.dictionary).cast(pl.String)
        kept = dictionary.is_not_null() & ~dictionary.str.contains(HEX_RUN)
        if not kept.any():
            continue
        counts = pc.value_counts(chunk.indices.drop_null())
        if len(counts):
            positions = pl.from_arrow(counts.field("values"))
            parts.append(
                pl.DataFrame(
                    {
                        "value": dictionary.gather(positions),
                        "rows": pl.from_arrow(counts.field("counts")).cast(pl.UInt32),
                        "kept": kept.gather(positions),
                    }
                )
                .filter("kept")
                .drop("kept")
            )
    if not parts:
        return pl.DataFrame(schema={"value": pl.String, "rows": pl.UInt32})
    return (
        pl.concat(parts)
        .drop_nulls("value")
        .group_by("value")
        .agg(pl.col("rows").sum())
        .filter(pl.col("rows") > 0)
    )


class IdentifierScan:
    """The scan, fed a delivery's rows in parts (ingest reads a large delivery in parts of whole
    Parquet row groups): each text column's distinct non-hex values and their row counts are
    summed over the parts, so the suspicions are those of the whole delivery at once."""

    def __init__(self) -> None:
        self.columns: list[str] = []
        self.distinct: dict[str, pl.DataFrame] = {}

    def add(self, table: pa.Table) -> IdentifierScan:
        for name in table.column_names:
            column = table.column(name)
            if not _is_text(column.type):
                continue
            part = _distinct_values(column).with_columns(pl.col("rows").cast(pl.Int64))
            if name not in self.distinct:
                self.columns.append(name)
                self.distinct[name] = part
                continue
            # Summed as each part arrives, so what is held is one row per distinct value.
            self.distinct[name] = (
                pl.concat([self.distinct[name], part]).group_by("value").agg(pl.col("rows").sum())
            )
        return self

    def suspicions(self, dataset: Dataset) -> list[Suspicion]:
        """Every (column, kind) with at least one suspicious value, with the count of such values
        (rows). Each distinct value is looked at once."""
        found: list[Suspicion] = []
        for name in self.columns:
            found.extend(_suspicions(name, self.distinct[name], dataset))
        return found


def scan_for_identifiers(table: pa.Table, dataset: Dataset) -> list[Suspicion]:
    """Every (column, kind) with at least one suspicious value, with the count of such values
    (rows). Each distinct value is looked at once."""
    return IdentifierScan().add(table).suspicions(dataset)


def _suspicions(name: str, distinct: pl.DataFrame, dataset: Dataset) -> list[Suspicion]:
    # Distinct values first, then normalised: a column of tokens has a few hundred thousand
    # distinct values but millions of rows. A hex run is ASCII with no spaces, so it is the
    # same before and after normalising and can be dropped before (_distinct_values does).
    if distinct.is_empty():
        return []
    counted = (
        distinct.with_columns(pl.col("value").str.normalize("NFKC").str.strip_chars())
        .group_by("value")
        .agg(pl.col("rows").sum())
    )
    values = counted.get_column("value")
    try:
        item = dataset.item(name)
    except KeyError:
        item = None
    checks: dict[str, Callable[[pl.Series], pl.Series]] = {
        "NHS numbers (valid modulus-11 check digit)": nhs_numbers_in_text,
        "e-mail addresses": _matches(EMAIL),
        "UK phone numbers": _matches(UK_PHONE),
        "dates of birth (a date after DOB, born or date of birth)": _matches(DATE_OF_BIRTH),
    }
    if item is None or item.classification != "area":
        checks["full UK postcodes"] = _matches(FULL_POSTCODE)
    if item is None or not item.allowed_values:
        # Coded columns hold only the contract's values (the quality gate checks them).
        checks["personal names (free text)"] = contains_names
    found = []
    for kind, test in checks.items():
        count = int(counted.filter(test(values).fill_null(False))["rows"].sum())
        if count:
            found.append(Suspicion(name, kind, count))
    return found
