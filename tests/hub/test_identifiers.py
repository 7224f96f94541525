import hashlib

import pyarrow as pa
import pytest

from pipelines.governance.contracts import DataItem, Dataset
from pipelines.hub.identifiers import scan_for_identifiers


def _item(name, classification, allowed=None):
    return DataItem(name, "string", classification, False, False, "why", allowed)


DATASET = Dataset(
    "referrals",
    "",
    (
        _item("record_token", "token"),
        _item("ward_code", "area"),
        _item("lsoa_code", "area"),
        _item("referral_source", "payload", ("gp", "school", "self")),
        _item("notes", "payload"),
    ),
)
TOKENS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(6)]


def _scan(**columns):
    base = {
        "record_token": TOKENS,
        "ward_code": ["E05000001"] * 6,
        "lsoa_code": ["E01000001"] * 6,
        "referral_source": ["gp", "school", "self", "gp", "gp", None],
        "notes": ["seen", "ok", None, "", "x", "y"],
    }
    base.update(columns)
    return {
        (s.column, s.kind.split(" (")[0]): s.count
        for s in scan_for_identifiers(pa.table(base), DATASET)
    }


def test_pseudonymised_extract_raises_nothing():
    assert _scan() == {}


@pytest.mark.parametrize(
    "column, values, kind, count",
    [
        (
            "record_token",
            ["9434765919", "943 476 5919", "9434765918"] + TOKENS[:3],
            "NHS numbers",
            2,
        ),
        (
            "notes",
            ["Flat 2, SW1A 1AA", "SW1A 1AA", "sw1a1aa", "ok", None, "E1 6AN"],
            "full UK postcodes",
            4,
        ),
        (
            "notes",
            ["jo@example.org", "a@b", "write to jo.b@nhs.net", "y", "z", "w"],
            "e-mail addresses",
            2,
        ),
        (
            "notes",
            ["07700 900123", "+44 7700 900123", "0161 496 0000", "12", "x", "y"],
            "UK phone numbers",
            3,
        ),
        (
            "notes",
            ["Jane Smith", "Mary-Ann O'Neil", "seen by gp", "A&E", "ok", "Smith"],
            "personal names",
            2,
        ),
    ],
)
def test_clear_identifiers_are_counted_by_column(column, values, kind, count):
    assert _scan(**{column: values}) == {(column, kind): count}


def test_postcodes_are_allowed_in_area_columns_and_names_in_coded_columns():
    assert _scan(ward_code=["SW1A 1AA"] * 6, referral_source=["Jane Smith"] * 6) == {}


# Identifiers in free text as people write them (issue 18): any case, accents, other scripts,
# NHS numbers in groups inside a sentence. NHS numbers here are valid (modulus 11); the
# same digits with a wrong check digit must not count.
@pytest.mark.parametrize(
    "text, kind",
    [
        ("ZARA QUIXOTEUPPER", "personal names"),
        ("José Quixoteblöm", "personal names"),
        ("spoke to josé quixoteblöm about the housing form", "personal names"),
        ("called re nhs no 401 023 2137 about the appointment", "NHS numbers"),
        ("NHS number 401-023-2137.", "NHS numbers"),
        ("nhs no: 401 then 023 then 2137", "NHS numbers"),
        ("NHS ４０１０２３２１３７ (fullwidth digits)", "NHS numbers"),
        ("mum Mary Brown rang back", "personal names"),
        ("SMITH, Jane attended", "personal names"),
        ("Siobhán O'Brien was seen", "personal names"),
        ("Анна Петрова пришла на приём", "personal names"),
        ("lives at flat 2, sw1a 1aa since may", "full UK postcodes"),
        ("write to JOSÉ.B@EXAMPLE.ORG please", "e-mail addresses"),
        ("ring 07700 900123 after 5pm", "UK phone numbers"),
        ("tel +44 (0)161 496 0000", "UK phone numbers"),
        ("DOB 07/03/1990", "dates of birth"),
        ("born 7th March 1990 in Leeds", "dates of birth"),
        ("d.o.b. 1990-03-07", "dates of birth"),
        ("Date of birth: Mar 7, 1990", "dates of birth"),
    ],
)
def test_identifiers_inside_free_text_are_found_in_any_case_and_script(text, kind):
    found = _scan(notes=[text, "seen", "ok", None, "", "y"])
    assert found.get(("notes", kind)) == 1, found


@pytest.mark.parametrize(
    "text",
    [
        "Will attend clinic on 12/03/2024 at 14:30",
        "Grace period of 28 days agreed with the landlord",
        "May need support from Early Help; Family Hub referral made",
        "WILL ATTEND CLINIC NEXT WEEK, MUM AWARE",
        "Scored 120 out of 150 in 2024",
        "Seen 3 times in A&E since 01/01/2024",
        "Mark as complete. Hope to see improvement by June.",
        "Invoice 1234567 paid £45.00 on 2024-03-07",
        "nhs no 401 023 2138 was read out wrong",  # wrong check digit: not an NHS number
        "Referred by school nurse to CAMHS, Leeds team; letter sent by Royal Mail",
        "appointment 10:30 tues 5 march, room 401",
        "Rose and Frank Road allotments closed",
    ],
)
def test_ordinary_free_text_raises_nothing(text):
    assert _scan(notes=[text, "seen", "ok", None, "", "y"]) == {}


# Hex runs the scan skips (HEX_RUN), chosen to sit as close to an identifier as a run can:
# digits only, an NHS number or a phone number at either end, letters that spell words.
HEX_RUNS = [
    "9434765919000000",
    "0000009434765919",
    "07700900123abcde",
    "abcde07700900123",
    "4010232137401023",
    "deadbeefdeadbeef",
    "DEADBEEFCAFEBABE",
    "face0bad0bed0fed",
    "0161496000001614",
    TOKENS[0],
    TOKENS[1].upper(),
    # Several tokens in one value (a postal code's variants), and runs that hold identifiers
    # between the spaces.
    f"{TOKENS[0]} {TOKENS[1]}",
    "9434765919000000 0000009434765919",
    "deadbeefdeadbeef 07700900123abcde face0bad0bed0fed",
]


def test_every_check_finds_nothing_in_the_hex_runs_the_scan_skips():
    # The fast path is only sound while no check can match a hex run: this fails if a pattern
    # is widened so that it could (the skipped values would then hide identifiers).
    import polars as pl

    from pipelines.hub import identifiers
    from pipelines.hub.names_in_text import contains_names

    values = pl.Series("v", HEX_RUNS)
    assert values.str.contains(identifiers.HEX_RUN).all()
    checks = [identifiers.nhs_numbers_in_text, contains_names] + [
        identifiers._matches(p)
        for p in (
            identifiers.EMAIL,
            identifiers.UK_PHONE,
            identifiers.DATE_OF_BIRTH,
            identifiers.FULL_POSTCODE,
        )
    ]
    for check in checks:
        assert not check(values).any(), check


def test_short_digit_runs_are_still_scanned_in_token_columns():
    # Ten digits are hex digits too, but too short to be skipped: an NHS number in a token column.
    assert _scan(record_token=["9434765919"] + TOKENS[1:]) == {("record_token", "NHS numbers"): 1}


def test_dictionary_encoded_columns_are_counted_like_plain_ones():
    # Ingest reads text columns as the Parquet stores them, as dictionaries; the counts must be
    # those of the same rows as plain text, with the values spread over several chunks whose
    # dictionaries repeat values, hold values no row uses, and have null rows.
    rows = {
        "record_token": ["9434765919", TOKENS[1], "9434765919", None, TOKENS[2], "943 476 5919"],
        "ward_code": ["E05000001"] * 6,
        "lsoa_code": ["E01000001"] * 6,
        "referral_source": ["gp", "school", "self", "gp", "gp", None],
        "notes": ["Jane Smith", "SW1A 1AA", None, "Jane Smith", "ok", "jo@example.org"],
    }
    plain = pa.table(rows)

    def chunked(values):
        halves = (values[:3], values[3:])
        return pa.chunked_array(
            [
                pa.DictionaryArray.from_arrays(
                    pa.array([None if v is None else half.index(v) + 1 for v in half], pa.int32()),
                    pa.array(["Mary Brown", *half]),  # index 0: a name no row holds
                )
                for half in halves
            ]
        )

    encoded = pa.table({name: chunked(values) for name, values in rows.items()})
    assert pa.types.is_dictionary(encoded.schema.field("notes").type)
    found = {(s.column, s.kind, s.count) for s in scan_for_identifiers(encoded, DATASET)}
    assert found == {(s.column, s.kind, s.count) for s in scan_for_identifiers(plain, DATASET)}
    assert ("record_token", "NHS numbers (valid modulus-11 check digit)", 3) in found
    assert ("notes", "personal names (free text)", 2) in found
