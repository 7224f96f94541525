"""Later months of the same synthetic place: deterministic whichever months are asked for, with new
events dated in their month, new people, moves and name changes, and record ids unique across months."""

import datetime as dt

import polars as pl
import pytest

from pipelines.tooling.synth import generate_place
from pipelines.tooling.synth.months import (
    delivered_at,
    generate_months,
    month_folder,
    period_of,
    snapshot,
)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    out = tmp_path_factory.mktemp("place")
    generate_place(people=2000, seed=7, out=out)
    manifests = generate_months(out, 4)
    return out, manifests


def test_periods_follow_the_first_delivery():
    assert [period_of(m) for m in (1, 2, 3, 4)] == ["2026-10", "2026-11", "2026-12", "2027-01"]
    assert delivered_at(3) == dt.datetime(2027, 1, 2, 9, 0, tzinfo=dt.UTC)


def test_the_same_place_gives_the_same_bytes_for_a_month_however_it_is_asked_for(place, tmp_path):
    out, _ = place
    again = tmp_path / "again"
    generate_place(people=2000, seed=7, out=again)
    (only_three,) = generate_months(again, 3, first=3)
    assert not month_folder(again, 2).exists()
    for name in (
        "raw/nhs/ae_attendances.csv",
        "raw/council/csc_referrals.csv",
        "truth/people.csv",
        "truth/ground_truth.csv",
    ):
        assert (month_folder(again, 3) / name).read_bytes() == (
            month_folder(out, 3) / name
        ).read_bytes()
    assert only_three.records > 0


def test_each_month_adds_people_moves_and_name_changes(place):
    out, manifests = place
    people = [pl.read_csv(month_folder(out, m) / "truth" / "people.csv") for m in (1, 4)]
    first, last = people
    assert last.height == first.height + sum(m.born + m.moved_in for m in manifests)
    assert sum(m.born for m in manifests) > 0 and sum(m.moved_in for m in manifests) > 0
    joined = first.join(last, on="person_id", suffix="_now")
    moved = joined.filter(pl.col("postcode") != pl.col("postcode_now"))
    assert moved.height > 0 and (moved["previous_postcode_now"] == moved["postcode"]).all()
    renamed = joined.filter(pl.col("family_name") != pl.col("family_name_now"))
    assert (renamed["previous_family_name_now"] == renamed["family_name"]).all()
    assert sum(m.households_moved for m in manifests) > 0


def test_new_records_are_dated_in_their_month_with_ids_unique_across_months(place):
    out, manifests = place
    ids = set(pl.read_csv(out / "truth" / "ground_truth.csv")["record_id"])
    for manifest in manifests:
        folder = month_folder(out, manifest.month)
        ae = pl.read_csv(folder / "raw" / "nhs" / "ae_attendances.csv", try_parse_dates=True)
        assert ae.height > 0
        assert ae["arrival_date"].dt.strftime("%Y-%m").unique().to_list() == [manifest.period]
        truth = pl.read_csv(folder / "truth" / "ground_truth.csv")
        assert not ids & set(truth["record_id"])
        ids |= set(truth["record_id"])
        assert truth.height == manifest.records
    # a term starts in January: a row per pupil; none in November or December
    assert [m.datasets[1].rows > 0 for m in manifests] == [False, False, True]


def test_a_snapshot_is_every_month_so_far(place):
    out, manifests = place
    full = snapshot(out, "ae_attendances", 3)
    first = pl.read_csv(out / "raw" / "nhs" / "ae_attendances.csv")
    assert full.height == first.height + sum(m.datasets[3].rows for m in manifests[:2])
    assert full["record_id"].n_unique() == full.height


def test_months_start_at_two():
    with pytest.raises(ValueError, match="months run from 2"):
        generate_months(".", 1)


def test_people_new_to_the_place_use_its_services_as_those_of_their_age_do(tmp_path):
    # A place's first children born in its history start school years later; if they had no A&E
    # visit or referral of their own meanwhile, no other partner could link them (the linkage
    # check then fails on the generator, not on linkage). Newborns' A&E attendances per head
    # must be of the order of the place's young children's, not a fiftieth of them.
    generate_place(people=6000, seed=11, out=tmp_path)
    last = 18
    generate_months(tmp_path, last)
    events = pl.concat(
        pl.read_csv(month_folder(tmp_path, m) / "truth" / "ground_truth.csv")
        for m in range(2, last + 1)
    ).filter(pl.col("source") == "ae_attendances")
    people = pl.read_csv(
        month_folder(tmp_path, last) / "truth" / "people.csv",
        columns=["person_id", "date_of_birth"],
        try_parse_dates=True,
    )
    born = people.filter(pl.col("date_of_birth") >= dt.date(2026, 11, 1))
    young = people.filter(
        pl.col("date_of_birth").is_between(dt.date(2016, 11, 1), dt.date(2022, 10, 31))
    )
    per_head = {
        name: events.join(group, on="person_id").height / group.height
        for name, group in (("born", born), ("young", young))
    }
    assert born.height > 50 and young.height > 300
    # newborns are in the place for about half of the months on average
    assert per_head["born"] > 0.25 * per_head["young"], per_head
