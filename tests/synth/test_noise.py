"""Identifier noise, measured against the truth in truth/people.csv."""

from __future__ import annotations

import polars as pl
import pytest
from nicknames import NickNamer
from stdnum.gb import nhs

from pipelines.tooling.synth.partners import DATASETS

COUNCIL_AND_VCS = [
    "csc_referrals",
    "school_attendance",
    "homelessness_applications",
    "family_support_enrolments",
]


@pytest.fixture(scope="module")
def records(medium_place) -> dict[str, pl.DataFrame]:
    return {layout.dataset: medium_place.with_truth(layout.dataset) for layout in DATASETS}


def _nickname_share(frame: pl.DataFrame) -> float:
    namer = NickNamer()
    pairs = frame.select(
        raw=pl.col("given_name").str.strip_chars().str.to_lowercase(),
        true=pl.col("given_name_true").str.to_lowercase(),
    ).drop_nulls()
    distinct = pairs.unique()
    nick = {(r, t) for r, t in distinct.iter_rows() if r in namer.nicknames_of(t)}
    hits = pairs.filter(
        pl.struct("raw", "true").map_elements(
            lambda s: (s["raw"], s["true"]) in nick, return_dtype=pl.Boolean
        )
    )
    return hits.height / pairs.height


def test_council_and_vcs_record_nicknames_for_about_one_given_name_in_twelve(records):
    council = pl.concat(
        [records[d].select("given_name", "given_name_true") for d in COUNCIL_AND_VCS]
    )
    assert 0.05 < _nickname_share(council) < 0.12
    assert _nickname_share(records["ae_attendances"]) < 0.03


def test_day_and_month_are_sometimes_swapped_in_dates_of_birth(records):
    frame = pl.concat([r.select("date_of_birth", "date_of_birth_true") for r in records.values()])
    true = pl.col("date_of_birth_true")
    swapped = frame.filter(
        (
            pl.col("date_of_birth")
            == true.str.slice(0, 5) + true.str.slice(8, 2) + "-" + true.str.slice(5, 2)
        )
        & (true.str.slice(5, 2) != true.str.slice(8, 2))
    )
    assert 0.008 < swapped.height / frame.height < 0.025
    assert 0.005 < frame["date_of_birth"].is_null().mean() < 0.02


def test_partner_kit_has_invalid_nhs_numbers_and_malformed_dates_to_count(records):
    frame = pl.concat([r.select("nhs_number", "date_of_birth") for r in records.values()])
    numbers = frame["nhs_number"].drop_nulls().str.replace_all(" ", "").str.strip_chars()
    invalid = sum(not nhs.is_valid(n) for n in numbers)
    assert 0 < invalid / numbers.len() < 0.01
    spaced = frame["nhs_number"].drop_nulls().str.contains(r"^\d{3} \d{3} \d{4}$")
    assert 0.02 < spaced.mean() < 0.1
    dob = frame["date_of_birth"].drop_nulls()
    malformed = dob.str.to_date("%Y-%m-%d", strict=False).is_null()
    assert 0 < malformed.sum() and malformed.mean() < 0.005


def test_some_people_have_a_second_registration_with_a_different_identity(records):
    identity = ["nhs_number", "given_name", "family_name", "date_of_birth", "sex", "postcode"]
    for dataset in ("ae_attendances", "school_attendance"):
        variants = (
            records[dataset]
            .group_by("person_id")
            .agg(pl.len().alias("records"), pl.struct(identity).n_unique().alias("identities"))
        )
        several = variants.filter(pl.col("records") > 1)
        duplicated = (several["identities"] > 1).mean()
        # Most people look the same in every record of a system; a few do not.
        assert 0.003 < duplicated < 0.06, dataset
        assert (variants["identities"] <= 2).all(), dataset


def test_names_vary_in_case_spacing_accents_and_surname_form(records):
    frame = pl.concat(
        [
            r.select(
                "given_name",
                "family_name",
                "given_name_true",
                "family_name_true",
                dataset=pl.lit(name),
            )
            for name, r in records.items()
        ]
    )
    given = frame["given_name"].drop_nulls()
    assert (given != given.str.strip_chars()).any()
    assert (given == given.str.to_lowercase()).any()
    family = frame.filter(pl.col("family_name").is_not_null())
    assert (family["family_name"] == family["family_name"].str.to_uppercase()).mean() > 0.05
    assert family["family_name"].str.contains("'").any()
    double = family.filter(
        pl.col("family_name").str.contains("-") & ~pl.col("family_name_true").str.contains("-")
    )
    assert double.height > 0
    accented = frame.filter(
        ~pl.col("given_name").str.contains(r"^[\x00-\x7F]*$")
        | ~pl.col("family_name").str.contains(r"^[\x00-\x7F]*$")
    )
    assert accented.height > 0
    # The council's social care and housing systems only store ASCII.
    assert set(accented["dataset"]).isdisjoint({"csc_referrals", "homelessness_applications"})


def test_typos_change_about_three_percent_of_names(records):
    frame = records["ae_attendances"].filter(pl.col("family_name").is_not_null())
    recorded = frame["family_name"].str.strip_chars().str.to_lowercase()
    true = frame["family_name_true"].str.to_lowercase()
    differs = (recorded != true).mean()
    assert 0.02 < differs < 0.12  # typos, former and double-barrelled surnames, ASCII folding


def test_about_one_in_twelve_records_carries_an_old_address(records):
    frame = pl.concat([r.select("postcode", "postcode_true") for r in records.values()])
    frame = frame.drop_nulls()
    recorded = frame["postcode"].str.to_uppercase().str.replace_all(" ", "")
    moved = (recorded != frame["postcode_true"].str.replace_all(" ", "")).mean()
    assert 0.05 < moved < 0.11
    assert frame["postcode"].str.contains("[a-z]").any()
    assert frame["postcode"].str.contains(r"^[A-Z]+\d+[0-9][A-Z]{2}$").any()  # no space


def test_sex_is_mostly_recorded_with_rare_unknowns(records):
    sex = pl.concat([r["sex"] for r in records.values()])
    assert set(sex.drop_nulls()) == {"M", "F", "U"}
    assert 0 < (sex == "U").mean() < 0.01
    assert 0 < sex.is_null().mean() < 0.01
