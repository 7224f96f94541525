"""The generated place: files, determinism, ground truth, geography and reference data."""

from __future__ import annotations

import json
import re
from datetime import date

import polars as pl
import pytest
from stdnum.gb import nhs

from pipelines.tooling.synth import generate_place
from pipelines.tooling.synth.partners import DATASETS

POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$")


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(small_place, tmp_path):
    again = generate_place(2_000, 11, tmp_path / "again")
    other = generate_place(2_000, 12, tmp_path / "other")
    first = _files(small_place.root)
    assert _files(tmp_path / "again") == first
    assert again == small_place.manifest
    different = _files(tmp_path / "other")
    assert different.keys() == first.keys()
    assert different["raw/nhs/ae_attendances.csv"] != first["raw/nhs/ae_attendances.csv"]
    assert different["truth/people.csv"] != first["truth/people.csv"]
    assert other.seed == 12


def test_writes_the_documented_layout(small_place):
    names = set(_files(small_place.root))
    expected = {d.path for d in DATASETS} | {
        "reference/postcode_lookup.csv",
        "reference/lsoa_reference.csv",
        "reference/national_data_opt_outs.csv",
        "truth/ground_truth.csv",
        "truth/people.csv",
        "truth/planted_effect.json",
        "manifest.json",
    }
    assert names == expected
    for layout in DATASETS:
        header = small_place.raw(layout.dataset).columns
        assert tuple(header) == layout.columns


def test_manifest_counts_match_the_files(small_place):
    manifest = json.loads((small_place.root / "manifest.json").read_text())
    assert manifest["seed"] == 11 and manifest["people"] == 2_000
    assert manifest["generator_version"] == small_place.manifest.generator_version
    people = small_place.people()
    assert people.height == 2_000
    assert manifest["households"] == people["household_id"].n_unique()
    for key, entry in manifest["datasets"].items():
        rows = pl.read_csv(small_place.root / entry["path"], infer_schema=False).height
        assert rows == entry["rows"], key
    assert manifest["records"] == small_place.manifest.records


def test_ground_truth_covers_every_raw_record_exactly_once(medium_place):
    truth = medium_place.ground_truth()
    assert truth.select("source", "record_id").is_duplicated().sum() == 0
    people = set(medium_place.people()["person_id"])
    assert set(truth["person_id"]) <= people
    for layout in DATASETS:
        raw_ids = medium_place.raw(layout.dataset)["record_id"]
        assert raw_ids.is_duplicated().sum() == 0, layout.dataset
        assert raw_ids.null_count() == 0
        truth_ids = truth.filter(pl.col("source") == layout.dataset)["record_id"]
        assert sorted(raw_ids) == sorted(truth_ids), layout.dataset


def test_geography_has_realistic_lsoas_and_wards(medium_place):
    lsoas = pl.read_csv(medium_place.root / "reference" / "lsoa_reference.csv")
    assert lsoas.height == 13  # 20,000 people / ~1,500 per LSOA
    assert lsoas["population"].sum() == 20_000
    assert lsoas["population"].min() > 700 and lsoas["population"].max() < 3_000
    per_ward = lsoas.group_by("ward_code").len()["len"]
    assert per_ward.min() >= 5 and per_ward.max() <= 8
    assert set(lsoas["imd_decile"]) <= set(range(1, 11))
    assert lsoas["imd_decile"].n_unique() > 2


def test_postcode_lookup_covers_every_resident_and_units_are_realistic(medium_place):
    lookup = pl.read_csv(medium_place.root / "reference" / "postcode_lookup.csv")
    lsoas = pl.read_csv(medium_place.root / "reference" / "lsoa_reference.csv")
    assert lookup["postcode"].is_duplicated().sum() == 0
    assert all(POSTCODE.match(p) for p in lookup["postcode"])
    assert set(lookup["lsoa_code"]) == set(lsoas["lsoa_code"])
    people = medium_place.people()
    assert set(people["postcode"]) <= set(lookup["postcode"])
    households_per_unit = people.group_by("postcode").agg(pl.col("household_id").n_unique())
    assert 15 <= households_per_unit["household_id"].median() <= 40


def _normalised_postcode(column: str) -> pl.Expr:
    squashed = pl.col(column).str.to_uppercase().str.replace_all(r"\s", "")
    return squashed.str.slice(0, squashed.str.len_chars() - 3) + " " + squashed.str.slice(-3)


def test_raw_postcodes_are_in_the_lookup_unless_the_person_moved_from_outside(medium_place):
    lookup = set(pl.read_csv(medium_place.root / "reference" / "postcode_lookup.csv")["postcode"])
    for layout in DATASETS:
        records = medium_place.with_truth(layout.dataset).filter(pl.col("postcode").is_not_null())
        records = records.with_columns(normalised=_normalised_postcode("postcode"))
        assert (
            records["normalised"]
            .map_elements(lambda p: bool(POSTCODE.match(p)), return_dtype=pl.Boolean)
            .all()
        )
        # Every recorded postcode is the person's current or previous address.
        current = records["normalised"] == records["postcode_true"]
        previous = records["normalised"] == records["previous_postcode"]
        assert (current | previous).all(), layout.dataset
        unknown = records.filter(~pl.col("normalised").is_in(lookup))
        assert (unknown["normalised"] == unknown["previous_postcode"]).all(), layout.dataset
        assert (unknown["normalised"] != unknown["postcode_true"]).all(), layout.dataset


def test_nhs_numbers_are_valid_unique_and_opt_outs_are_about_three_percent(medium_place):
    people = medium_place.people()
    numbers = people["nhs_number"]
    assert numbers.is_duplicated().sum() == 0
    assert all(nhs.is_valid(n) for n in numbers)
    opt_outs = pl.read_csv(
        medium_place.root / "reference" / "national_data_opt_outs.csv", infer_schema=False
    )["nhs_number"]
    assert opt_outs.str.contains(r"^\d{10}$").all()
    assert set(opt_outs) <= set(numbers)
    assert 0.02 < opt_outs.len() / numbers.len() < 0.04


@pytest.mark.parametrize(
    "dataset, low, high",
    [
        ("ae_attendances", 0.96, 0.995),
        ("emergency_admissions", 0.96, 0.995),
        ("mental_health_referrals", 0.95, 1.0),
        ("csc_referrals", 0.45, 0.75),
        ("school_attendance", 0.5, 0.7),
        ("homelessness_applications", 0.45, 0.75),
        ("family_support_enrolments", 0.0, 0.25),
    ],
)
def test_nhs_number_is_recorded_as_often_as_in_each_partner_system(
    medium_place, dataset, low, high
):
    share = medium_place.raw(dataset)["nhs_number"].is_not_null().mean()
    assert low <= share <= high


def test_event_volumes_follow_the_stated_rates(medium_place):
    years = ((date(2026, 9, 30) - date(2022, 1, 1)).days + 1) / 365.25
    people = medium_place.manifest.people
    assert 0.27 < medium_place.manifest.rows("ae_attendances") / people / years < 0.33
    assert 0.07 < medium_place.manifest.rows("emergency_admissions") / people / years < 0.09
    assert 2.5 <= medium_place.manifest.records_per_person <= 4.2
    for layout in DATASETS:
        dates = medium_place.raw(layout.dataset)[layout.date_column].str.to_date("%Y-%m-%d")
        assert dates.min() >= date(2022, 1, 1) and dates.max() <= date(2026, 9, 30), layout.dataset


def test_school_attendance_is_one_row_per_pupil_per_term(medium_place):
    school = medium_place.with_truth("school_attendance")
    assert school.select("person_id", "term_start_date").is_duplicated().sum() == 0
    starts = {date.fromisoformat(d) for d in school["term_start_date"].unique()}
    assert {(d.month, d.day) for d in starts} == {(9, 1), (1, 5), (4, 15)}
    possible = school["sessions_possible"].cast(pl.Int32)
    attended = school["sessions_attended"].cast(pl.Int32)
    assert possible.min() >= 120 and possible.max() <= 130
    assert (attended <= possible).all() and attended.min() >= 0
    dob = school["date_of_birth_true"].str.to_date()
    age = (school["term_start_date"].str.to_date() - dob).dt.total_days() / 365.25
    assert age.min() >= 4 and age.max() < 17.1
    # Families with need miss more school.
    rate = school.group_by("family_with_need").agg(
        (
            pl.col("sessions_attended").cast(pl.Int32).sum()
            / pl.col("sessions_possible").cast(pl.Int32).sum()
        ).alias("rate")
    )
    by_need = dict(rate.iter_rows())
    assert by_need["true"] < by_need["false"] - 0.01


def test_vcs_enrolments_are_whole_families_inside_the_enrolment_period(medium_place):
    vcs = medium_place.with_truth("family_support_enrolments")
    dates = vcs["enrolment_date"].str.to_date()
    assert dates.min() >= date(2023, 6, 1) and dates.max() <= date(2025, 6, 30)
    per_family = vcs.group_by("family_id").agg(
        pl.col("household_id").n_unique().alias("households"),
        pl.col("enrolment_date").n_unique().alias("dates"),
        pl.col("programme_type").n_unique().alias("programmes"),
    )
    assert (per_family["households"] == 1).all() and (per_family["dates"] == 1).all()
    assert (per_family["programmes"] == 1).all()
    people = medium_place.people()
    enrolled = people.filter(pl.col("enrolled") == "true")
    assert set(enrolled["person_id"]) == set(vcs["person_id"])
    families_with_children = people.filter(
        pl.col("household_kind").is_in(["couple_with_children", "lone_parent"])
    )["household_id"].n_unique()
    assert 0.02 < enrolled["household_id"].n_unique() / families_with_children < 0.06


def test_enrolment_favours_families_with_need_but_leaves_a_comparison_pool(medium_place):
    people = medium_place.people().filter(
        pl.col("household_kind").is_in(["couple_with_children", "lone_parent"])
    )
    families = people.group_by("household_id").agg(
        pl.col("enrolled").first(), pl.col("family_with_need").first()
    )
    share = dict(
        families.group_by("family_with_need")
        .agg((pl.col("enrolled") == "true").mean().alias("share"))
        .iter_rows()
    )
    assert share["true"] > 3 * share["false"]
    pool = families.filter((pl.col("family_with_need") == "true") & (pl.col("enrolled") == "false"))
    enrolled_with_need = families.filter(
        (pl.col("family_with_need") == "true") & (pl.col("enrolled") == "true")
    )
    # At least three unenrolled families of similar need for every enrolled one.
    assert pool.height > 3 * enrolled_with_need.height


def test_rejects_a_place_too_small_to_be_useful(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        generate_place(10, 1, tmp_path)


def test_a_ten_million_person_place_has_enough_postcode_sectors():
    """issue 24's 10M place needs 6,667 LSOAs, each a postcode sector; the scheme held 5,940."""
    import numpy as np

    from pipelines.partner_kit.normalise import normalise_postcodes
    from pipelines.tooling.synth.geography import PEOPLE_PER_LSOA, build_postcodes

    n_lsoas = round(10_000_000 / PEOPLE_PER_LSOA)
    households = np.arange(n_lsoas, dtype=np.int64)  # one household per LSOA keeps it fast
    postcodes, _ = build_postcodes(np.random.default_rng(1), households, n_lsoas)
    assert postcodes.height == n_lsoas
    assert postcodes["postcode"].n_unique() == n_lsoas
    assert all(POSTCODE.match(p) for p in postcodes["postcode"])
    read = normalise_postcodes(postcodes["postcode"])
    assert read.values.null_count() == 0
