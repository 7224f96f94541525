"""Normalisation: one spelling per identifier, counted when unusable."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.gb import nhs

from pipelines.partner_kit import normalise as n
from pipelines.partner_kit.features import IdentityInputs
from pipelines.partner_kit.tokens import LinkageKey

TODAY = dt.date(2026, 10, 15)


def normalised(column: str, raw: pl.Series, today: dt.date = TODAY) -> n.Normalised:
    """``raw`` as the partner kit normalises the identity column ``column`` of an extract."""
    inputs = IdentityInputs(
        pl.DataFrame({column: raw}),
        partner_id="p",
        dataset="d",
        key=LinkageKey.generate(),
        today=today,
    )
    values = inputs.rows(column, getattr(inputs, column))
    return n.Normalised(values, inputs.missing[column], inputs.invalid[column])


def test_names_lose_accents_punctuation_spaces_and_case():
    raw = pl.Series(["Siobhán", "O'Brien", "  smith ", "Smith-Jones", "Smith Jones", "Ærø"])
    assert normalised("family_name", raw).values.to_list() == [
        "SIOBHAN",
        "OBRIEN",
        "SMITH",
        "SMITHJONES",
        "SMITHJONES",
        "AERO",
    ]


def test_letters_without_a_decomposition_fold_as_ascii_only_systems_write_them():
    # One partner's system keeps Łukasz Dąbrowski, another's writes Lukasz Dabrowski.
    kept, flattened = (
        pl.Series(["Łukasz", "Dąbrowski", "Søren", "Strauß"]),
        pl.Series(["Lukasz", "Dabrowski", "Soren", "Strauss"]),
    )
    assert (
        normalised("family_name", kept).values.to_list()
        == normalised("family_name", flattened).values.to_list()
    )


def test_name_parts_are_the_first_and_last_words_of_a_name_as_written():
    parts = n.name_parts(pl.Series(["Mary-Anne", "Smith Jones", "Ann", "J.", None, "--"]))
    assert parts["first"].to_list() == ["MARY", "SMITH", "ANN", "J", None, None]
    assert parts["last"].to_list() == ["ANNE", "JONES", "ANN", "J", None, None]


def test_blank_names_are_missing_and_names_without_letters_invalid():
    result = normalised("given_name", pl.Series(["Ann", None, "", "   ", "123", "?"]))
    assert result.values.to_list() == ["ANN", None, None, None, None, None]
    assert (result.missing, result.invalid) == (3, 2)


def test_each_distinct_value_is_normalised_once():
    seen = []

    def transform(values: pl.Series) -> pl.Series:
        seen.append(values.len())
        return values.str.to_uppercase()

    out = n.map_distinct(pl.Series(["a", "b", "a", None, "a", "b"]), transform, pl.String)
    assert out.to_list() == ["A", "B", "A", None, "A", "B"]
    assert seen == [2]


@pytest.mark.parametrize(
    "nickname, canonical",
    [
        ("BOB", "ROBERT"),
        ("BOBBY", "ROBERT"),
        ("ROBERT", "ROBERT"),
        ("BILL", "WILLIAM"),
        ("WILLIAM", "WILLIAM"),
        ("LIZ", "ELIZABETH"),
        ("BETH", "ELIZABETH"),
        ("TOM", "THOMAS"),
        ("MIKE", "MICHAEL"),
        ("KATE", "KATHERINE"),
        ("MICHAEL", "MICHAEL"),
        ("MARY", "MARY"),
        # Registered names in their own right, and names shared by men and women, stay.
        ("JACK", "JACK"),
        ("AMY", "AMY"),
        ("SAM", "SAM"),
        ("ALEX", "ALEX"),
        ("SIOBHAN", "SIOBHAN"),  # unknown to the nickname list
    ],
)
def test_given_names_map_to_a_canonical_form(nickname, canonical):
    assert n.canonical_given_name(nickname) == canonical


def test_nickname_table_is_idempotent():
    table = n.nickname_table()
    assert table  # the package's list is loaded, not just the fixed table
    assert all(n.canonical_given_name(target) == target for target in table.values())


def test_canonical_given_names_keep_nulls():
    assert n.canonical_given_names(pl.Series(["BOB", None, "LIZ"])).to_list() == [
        "ROBERT",
        None,
        "ELIZABETH",
    ]


def test_nhs_numbers_lose_spaces_and_dashes_and_need_a_valid_check_digit():
    raw = pl.Series(
        [
            "943 476 5870",
            "943-476-5870",
            "9434765871",
            "12345",
            "0000000000",
            "1111111111",
            None,
            "",
        ]
    )
    result = n.normalise_nhs_numbers(raw)
    assert result.values.to_list() == [
        "9434765870",
        "9434765870",
        None,
        None,
        None,
        None,
        None,
        None,
    ]
    assert (result.missing, result.invalid) == (2, 4)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_nhs_check_digit_agrees_with_stdnum(number):
    ours = n.valid_nhs_numbers(pl.Series([number])).item() is not None
    placeholder = len(set(number)) == 1  # rejected on purpose, though mod 11 passes
    assert ours == (nhs.is_valid(number) and not placeholder)


def test_dates_of_birth_must_be_iso_real_and_plausible():
    raw = pl.Series(
        [
            "1980-02-29",
            "1981-02-29",
            "2099-01-01",
            "01/02/1980",
            "1899-12-31",
            "1980-1-2",
            None,
            " 2000-12-31 ",
        ]
    )
    result = normalised("date_of_birth", raw)
    assert result.values.to_list() == [
        dt.date(1980, 2, 29),
        None,
        None,
        None,
        None,
        None,
        None,
        dt.date(2000, 12, 31),
    ]
    assert (result.missing, result.invalid) == (1, 5)


def test_postcodes_are_upper_case_with_one_space_before_the_inward_code():
    raw = pl.Series(["ab1 2cd", "SW1A1AA", " m1  1ae", "GIR 0AA", "XX", "AB1 2C", None])
    result = n.normalise_postcodes(raw)
    assert result.values.to_list() == ["AB1 2CD", "SW1A 1AA", "M1 1AE", "GIR 0AA", None, None, None]
    assert (result.missing, result.invalid) == (1, 2)
    assert n.postcode_sectors(result.values).to_list()[:2] == ["AB1 2", "SW1A 1"]
    assert n.postcode_districts(result.values).to_list()[:2] == ["AB1", "SW1A"]


def test_another_countrys_postal_codes_are_kept_only_when_asked_and_have_no_sector():
    raw = pl.Series(
        ["2615", "D02 X285", "d02-x285", "K1A 0B6", "12345-6789", "ab1-2cd", "NFA", "", "ZZ99 3VZ"]
    )
    assert n.normalise_postcodes(raw).values.to_list() == [None] * 9
    result = n.normalise_postcodes(raw, any_country=True)
    # UK ones keep the UK form, so a UK postcode gives the same token either way.
    assert result.values.to_list() == [
        "2615",
        "D02X285",
        "D02X285",
        "K1A0B6",
        "123456789",
        "AB1 2CD",
        None,
        None,
        None,
    ]
    # NFA (no digit) and the NHS's pseudo-postcode for no fixed abode are not postal codes.
    assert (result.missing, result.invalid) == (1, 2)
    assert n.postcode_sectors(result.values).to_list()[:6] == [None] * 5 + ["AB1 2"]
    assert n.postcode_districts(result.values).to_list()[:6] == [None] * 5 + ["AB1"]
    assert n.other_country_postcodes(raw).to_list() == [True] * 5 + [False] * 4


def test_a_district_alone_is_read_as_the_district_and_nothing_else():
    raw = pl.Series(["ls6", " M1 ", "SW1A", "LS6 2AB", "2615", "NFA", "ZZ99", None])
    assert n.district_only_postcodes(raw).to_list() == ["LS6", "M1", "SW1A"] + [None] * 5
    # Not another country's postal code either: a UK partner sending districts stays UK.
    assert not n.other_country_postcodes(raw).head(3).any()


@pytest.mark.parametrize(
    "values, formats",
    [
        (["13/02/1990", "01/12/1985", "", None], ["dd/mm/yyyy"]),
        (["01/02/1990", "01/12/1985"], ["dd/mm/yyyy", "mm/dd/yyyy"]),  # only the partner knows
        (["19900213", "19851201"], ["yyyymmdd"]),
        (["13-Feb-1990", "1-Dec-1985", "1990-01-01"], ["dd-mon-yyyy"]),  # ISO is read anyway
        (["1990-02-13", "1985-12-01"], []),  # nothing to declare
        (["not known", "13/02/1990"], []),  # not 95% of the values
    ],
)
def test_a_date_format_is_suggested_only_where_it_reads_nearly_every_value(values, formats):
    assert n.suggest_date_formats(pl.Series(values, dtype=pl.String)) == formats


def test_sex_aliases():
    result = normalised("sex", pl.Series(["m", "Female", "1", "2", "9", "0", " u ", "X", None]))
    assert result.values.to_list() == ["M", "F", "M", "F", "U", "U", "U", None, None]
    assert (result.missing, result.invalid) == (1, 1)
