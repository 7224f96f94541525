"""Blocking: which pairs are scored at all. Every rule pairs two keys so the people sharing a
key stay few as a place grows; records that carry only names are still compared by name."""

import pyarrow as pa
import pytest

from pipelines.linkage.model import blocked_comparisons

NAMES = ("given_name_phonetic_token", "family_name_phonetic_token")


@pytest.fixture(scope="module")
def full_record(small_place_person_records) -> tuple[pa.Schema, dict]:
    """One identity record of the small place with every linkage feature present."""
    table = small_place_person_records
    sent = [c for c in table.column_names if table.column(c).null_count < table.num_rows]
    for row in table.to_pylist():
        if all(row[c] is not None for c in sent):
            return table.schema, row
    pytest.fail("no identity record with every feature present")


def pairs_scored(schema: pa.Schema, rows: list[dict]) -> list[tuple[str, int]]:
    return [
        (rule, n) for rule, n in blocked_comparisons(pa.Table.from_pylist(rows, schema=schema)) if n
    ]


def other(value: str | None) -> str | None:
    return None if value is None else "other-" + value


def test_a_record_with_only_names_is_compared_with_records_of_the_same_names(full_record):
    schema, a = full_record
    only_names = {
        key: (
            value
            if key in (*NAMES, "given_name_token", "family_name_token", "partner_id")
            else None
        )
        for key, value in a.items()
    } | {"unique_id": "b"}

    for first, second in (
        (a | {"unique_id": "a"}, only_names),
        (only_names | {"unique_id": "0"}, a | {"unique_id": "z"}),
    ):
        scored = pairs_scored(schema, [first, second])
        assert len(scored) == 1 and scored[0][1] == 1
        assert "IS NULL" in scored[0][0]  # the names-only rule, whichever side lacks the rest


def unlike(value):
    """A Bloom filter with every bit of ``value``'s flipped: Dice 0 with it."""
    if value is None:
        return None
    if isinstance(value, str):  # a BIT string
        return value.translate(str.maketrans("01", "10"))
    return bytes(~byte & 0xFF for byte in value)


def test_sharing_only_a_date_of_birth_and_sex_is_not_a_reason_to_compare(full_record):
    """Date of birth + sex alone blocked pairs that grew with the square of the population."""
    schema, a = full_record
    different = {
        key: (
            other(value)
            if key.endswith("_token") and not key.startswith(("date_of_birth", "dob_"))
            else unlike(value)
            if key.endswith("_bloom")
            else value
        )
        for key, value in a.items()
    } | {"unique_id": "b"}
    assert (
        different["sex"] == a["sex"]
        and different["date_of_birth_token"] == a["date_of_birth_token"]
    )

    assert pairs_scored(schema, [a | {"unique_id": "a"}, different]) == []
    # ... but with one more key in common (here the postcode district) the pair is scored.
    moved_nearby = different | {"postcode_district_token": a["postcode_district_token"]}
    assert len(pairs_scored(schema, [a | {"unique_id": "a"}, moved_nearby])) == 1


def test_the_same_names_with_nothing_else_in_common_are_not_compared(full_record):
    schema, a = full_record
    namesakes = {
        key: (
            value
            if key in (*NAMES, "given_name_token", "family_name_token", "partner_id", "sex")
            else other(value)
            if key.endswith("_token")
            else value
        )
        for key, value in a.items()
    }
    assert pairs_scored(schema, [a | {"unique_id": "a"}, namesakes | {"unique_id": "b"}]) == []
