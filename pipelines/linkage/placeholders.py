"""Placeholder values: a value shared by implausibly many records is treated as missing.

Partner systems fill a field they do not know with one value: a dummy postcode for "no fixed
abode", 1900-01-01 for an unknown date of birth, a practice's own NHS number. Compared as
evidence, such a value makes strangers agree; used for training, it teaches the model that
"same postcode" means little and that true matches disagree on everything else (issue 17's
benchmark B: EM trained on families sharing one placeholder postcode). So before training,
blocking and scoring, every value of a field that holds far more records than the field's
values usually do is set to NULL, with every column derived from it (a placeholder postcode
also loses its sector and district), and the linkage QA report says how many records of each
partner lost which field. Counts only: the values themselves are never shown or logged.

A value is a placeholder when it is held by at least :data:`MIN_RECORDS` identity records and
either by more than ``ratio`` times the count a common real value reaches (the 95th percentile of
the counts of the field's values, or the count of the value the median record holds if larger:
:func:`_typical_count`; neither moves much for one dominant value),
or by more than 5% of the records that have the field and ten times as many as the median
value: in a small place with few postcodes each real one may hold 5%, but not ten times its
neighbours' share. Names are
distributed very unevenly (KHAN, SINGH or WANG are common in some communities), so a name is
only a placeholder when it stands out far more (50 times, or a fifth of the records):
treating a common name as missing would cost one group its recall.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.linkage.comparisons import COLUMNS_BY_FIELD

MIN_RECORDS = 20
SHARE, NAME_SHARE = 0.05, 0.20
OVER_MEDIAN = 10

# field: (the column whose values are counted, how many times the 95th percentile a placeholder
# holds); a placeholder masks every column made from the same raw value (COLUMNS_BY_FIELD).
_COUNTED: dict[str, tuple[str, float]] = {
    "nhs_number": ("nhs_number_token", 20.0),
    "given_name": ("given_name_token", 50.0),
    "family_name": ("family_name_token", 50.0),
    "date_of_birth": ("date_of_birth_token", 20.0),
    "postcode": ("postcode_token", 20.0),
    "uprn": ("uprn_token", 20.0),
    "address_line": ("address_line_bloom", 20.0),
}
# field: (the column whose values are counted, every column made from the same raw value, ratio)
FIELDS: dict[str, tuple[str, tuple[str, ...], float]] = {
    field: (column, COLUMNS_BY_FIELD[field], ratio) for field, (column, ratio) in _COUNTED.items()
}


@dataclass(frozen=True)
class Placeholders:
    """The placeholder values found in one field: how many, and the records holding them."""

    field: str
    values: int  # distinct values treated as missing
    records: int  # identity records holding one of them
    share: float  # of the identity records with a value in the field
    by_partner: tuple[tuple[str, int], ...]  # (partner, identity records holding one)
    _value_set: pa.Array  # the values themselves: used to mask, never shown

    def __repr__(self) -> str:  # the values stay out of logs and tracebacks
        return (
            f"Placeholders(field={self.field!r}, values={self.values}, records={self.records}, "
            f"share={self.share:.3f}, by_partner={self.by_partner!r})"
        )


def placeholders_digest(found: list[Placeholders]) -> str:
    """SHA-256 of the placeholder values of every field (in field and value order): whether two
    runs treated the same values as missing, without keeping or showing the values."""
    digest = hashlib.sha256()
    for p in sorted(found, key=lambda p: p.field):
        digest.update(p.field.encode() + b"\0")
        for value in sorted(str(v) for v in p._value_set.to_pylist()):
            digest.update(value.encode() + b"\0")
        digest.update(b"\1")
    return digest.hexdigest()


def _typical_count(n: np.ndarray) -> float:
    """The count a common real value reaches: the 95th percentile of the values' counts, or the
    count of the value the median record holds, whichever is larger.

    The first alone fails at scale: typing errors make a long tail of values held once, so among
    1.1M identity records (1M people) 95% of the given names' distinct values were held by at most
    14 records, and every real name held by more than 700 was taken for a placeholder (351 names,
    85% of the records: recall fell from 0.99 to 0.83). The median record's value is a real one
    whatever the tail, unless one value holds half the records, which the share rule catches."""
    by_record = np.sort(n)
    median_record = by_record[np.searchsorted(np.cumsum(by_record), by_record.sum() / 2)]
    return max(float(np.percentile(n, 95)), float(median_record))


def find_placeholders(records: pa.Table) -> list[Placeholders]:
    """The fields of ``records`` (hub person records) that carry placeholder values."""
    found = []
    for field, (column, _, ratio) in FIELDS.items():
        if column not in records.column_names:
            continue
        values = records.column(column)
        present = len(values) - values.null_count
        if present < MIN_RECORDS:
            continue
        counts = pc.value_counts(
            values.drop_null() if isinstance(values, pa.ChunkedArray) else values.drop_null()
        )
        n = counts.field("counts").to_numpy()
        typical = _typical_count(n)
        share = NAME_SHARE if field in ("given_name", "family_name") else SHARE
        dominant = (n > share * present) & (n > OVER_MEDIAN * float(np.median(n)))
        flagged = (n >= MIN_RECORDS) & ((n > ratio * typical) | dominant)
        if not flagged.any():
            continue
        value_set = counts.field("values").filter(pa.array(flagged))
        holds = pc.is_in(values, value_set=value_set)
        partners = (
            pc.value_counts(pc.filter(records.column("partner_id"), holds))
            if "partner_id" in records.column_names
            else pa.array([], pa.struct([("values", pa.string()), ("counts", pa.int64())]))
        )
        held = int(n[flagged].sum())
        found.append(
            Placeholders(
                field,
                int(flagged.sum()),
                held,
                held / present,
                tuple(sorted((str(p["values"]), int(p["counts"])) for p in partners.to_pylist())),
                value_set,
            )
        )
    return found


def mask_placeholders(records: pa.Table, found: list[Placeholders]) -> pa.Table:
    """``records`` with each placeholder value, and every column made from it, set to NULL."""
    for placeholders in found:
        column, derived, _ = FIELDS[placeholders.field]
        holds = pc.fill_null(
            pc.is_in(records.column(column), value_set=placeholders._value_set), False
        )
        for name in derived:
            if name in records.column_names:
                index = records.schema.get_field_index(name)
                values = records.column(name)
                records = records.set_column(
                    index, name, pc.if_else(holds, pa.nulls(len(values), values.type), values)
                )
    return records
