"""Spot clear identifiers a partner should have tokenised, before the hub accepts an extract.

Looks at every text column of a decrypted extract for values shaped like direct
identifiers: valid NHS numbers (modulus 11), full UK postcodes (outside columns the
contract classifies as ``area``), e-mail addresses, UK phone numbers, and - in free-text
payload columns (text without a list of allowed values) - strings that look like a
personal name. Returns counts per column and kind, never the values.
"""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from pipelines.contracts import Dataset
from pipelines.partner_kit.normalise import valid_nhs_numbers

# Postcodes and e-mail addresses are found anywhere in a value ("Flat 2, SW1A 1AA"), but only
# as whole words, so a run of letters and digits inside a hex token never counts.
FULL_POSTCODE = r"\b[A-Z]{1,2}[0-9][A-Z0-9]?\s*[0-9][A-Z]{2}\b"
EMAIL = r"\b[^@\s]+@[^@\s]+\.[A-Za-z]{2,}\b"
UK_PHONE = r"^(?:\+44\s?|0)(?:[\s\-()]?[0-9]){9,10}$"
# Two or more capitalised words ("Jane Smith", "Mary-Ann O'Neil"): a strict shape, so codes
# ("A&E", "E01000001") and lower-case category values do not trip it.
_NAME_WORD = r"[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:-[A-Z][a-z]+)*"
PERSONAL_NAME = rf"^{_NAME_WORD}(?:\s+{_NAME_WORD})+$"


@dataclass(frozen=True)
class Suspicion:
    column: str
    kind: str
    count: int

    def describe(self) -> str:
        return f"column '{self.column}': {self.count} value(s) that look like {self.kind}"


def scan_for_identifiers(table: pa.Table, dataset: Dataset) -> list[Suspicion]:
    """Every (column, kind) with at least one suspicious value, with the count of such values."""
    found: list[Suspicion] = []
    for name in table.column_names:
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        values = pl.from_arrow(column).cast(pl.String).drop_nulls().str.strip_chars()
        if values.is_empty():
            continue
        try:
            item = dataset.item(name)
        except KeyError:
            item = None
        checks = {"NHS numbers (valid modulus-11 check digit)":
                  lambda v: valid_nhs_numbers(v).is_not_null(),
                  "e-mail addresses": lambda v: v.str.contains(EMAIL),
                  "UK phone numbers": lambda v: v.str.contains(UK_PHONE)}
        if item is None or item.classification != "area":
            checks["full UK postcodes"] = lambda v: v.str.to_uppercase().str.contains(FULL_POSTCODE)
        if item is not None and item.classification == "payload" and not item.allowed_values:
            checks["personal names (free text)"] = lambda v: v.str.contains(PERSONAL_NAME)
        for kind, test in checks.items():
            count = int(test(values).fill_null(False).sum())
            if count:
                found.append(Suspicion(name, kind, count))
    return found
