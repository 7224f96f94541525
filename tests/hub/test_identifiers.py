import hashlib

import pyarrow as pa
import pytest

from pipelines.contracts import DataItem, Dataset
from pipelines.hub.identifiers import scan_for_identifiers


def _item(name, classification, allowed=None):
    return DataItem(name, "string", classification, False, False, "why", allowed)


DATASET = Dataset("referrals", "", (
    _item("record_token", "token"), _item("ward_code", "area"), _item("lsoa_code", "area"),
    _item("referral_source", "payload", ("gp", "school", "self")), _item("notes", "payload"),
))
TOKENS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(6)]


def _scan(**columns):
    base = {"record_token": TOKENS, "ward_code": ["E05000001"] * 6, "lsoa_code": ["E01000001"] * 6,
            "referral_source": ["gp", "school", "self", "gp", "gp", None], "notes": ["seen", "ok", None, "", "x", "y"]}
    base.update(columns)
    return {(s.column, s.kind.split(" (")[0]): s.count for s in scan_for_identifiers(pa.table(base), DATASET)}


def test_pseudonymised_extract_raises_nothing():
    assert _scan() == {}


@pytest.mark.parametrize("column, values, kind, count", [
    ("record_token", ["9434765919", "943 476 5919", "9434765918"] + TOKENS[:3], "NHS numbers", 2),
    ("notes", ["Flat 2, SW1A 1AA", "SW1A 1AA", "sw1a1aa", "ok", None, "E1 6AN"], "full UK postcodes", 4),
    ("notes", ["jo@example.org", "a@b", "write to jo.b@nhs.net", "y", "z", "w"], "e-mail addresses", 2),
    ("notes", ["07700 900123", "+44 7700 900123", "0161 496 0000", "12", "x", "y"], "UK phone numbers", 3),
    ("notes", ["Jane Smith", "Mary-Ann O'Neil", "seen by gp", "A&E", "ok", "Smith"], "personal names", 2),
])
def test_clear_identifiers_are_counted_by_column(column, values, kind, count):
    assert _scan(**{column: values}) == {(column, kind): count}


def test_postcodes_are_allowed_in_area_columns_and_names_in_coded_columns():
    assert _scan(ward_code=["SW1A 1AA"] * 6, referral_source=["Jane Smith"] * 6) == {}
