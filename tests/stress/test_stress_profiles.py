"""The stress generator: each profile's files hold the fields it names, with its failure class,
and the same profile and seed give the same files."""

import dataclasses

import polars as pl
import pytest

from pipelines.tooling.stress import PROFILES, generate
from pipelines.tooling.stress.generate import PLACEHOLDER_POSTCODE


def small(name: str, **changes):
    return dataclasses.replace(PROFILES[name], people=600, **changes)


def test_the_same_profile_and_seed_give_the_same_files():
    one, two = generate(small("baseline"), seed=4), generate(small("baseline"), seed=4)
    assert (
        one.first.equals(two.first)
        and one.second.equals(two.second)
        and one.truth.equals(two.truth)
    )
    assert not generate(small("baseline"), seed=5).first.equals(one.first)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_profile_sends_the_fields_it_names(name):
    files = generate(small(name), seed=1)
    assert files.first.columns[0] == files.second.columns[0] == "record_id"
    assert set(files.first.columns[1:]) == set(PROFILES[name].first_fields)
    assert set(files.second.columns[1:]) == set(PROFILES[name].second_fields)
    assert files.truth.height == files.first.height + files.second.height
    # People appear in both files, and every origin is represented.
    both = (
        files.truth.group_by("person_id").agg(pl.col("file").n_unique()).filter(pl.col("file") == 2)
    )
    assert both.height > 100
    assert set(files.truth["origin"]) == set(PROFILES[name].origins)


def test_the_placeholder_profile_fills_most_of_the_second_files_postcodes_with_one_value():
    files = generate(small("placeholder_postcode"), seed=2)
    share = (files.second["postcode"] == PLACEHOLDER_POSTCODE).mean()
    assert 0.7 < share < 0.9
    assert (files.first["postcode"] == PLACEHOLDER_POSTCODE).sum() == 0


def test_postcodes_abroad_mark_the_same_homes_with_codes_that_are_not_uk_postcodes():
    from pipelines.partner_kit.normalise import format_postcodes, other_country_postcodes

    abroad = generate(small("postcodes_abroad"), seed=2)
    home = generate(small("postcodes_abroad", postcodes_abroad=False), seed=2)
    codes = abroad.second["postcode"].drop_nulls()
    assert other_country_postcodes(codes).all() and format_postcodes(codes).is_null().all()
    assert codes.str.contains(r"^\d{4}$").all()
    # Each UK postcode became one code and no two became the same: the same homes.
    both = pl.DataFrame({"uk": home.second["postcode"], "abroad": abroad.second["postcode"]})
    assert both.drop_nulls().unique().height == both["uk"].drop_nulls().n_unique()
    assert both.drop_nulls().unique().height == codes.n_unique()


def test_postal_codes_keyed_wrongly_are_the_codes_of_homes_with_digits_swapped_or_changed():
    files = generate(dataclasses.replace(PROFILES["postcodes_abroad_typos"], people=3000), seed=2)
    # The profile's homes have the codes 2000, 2007, 2014, ...: an error rarely lands on another.
    homes = {str(2000 + 7 * i) for i in range(3000 // 40)}

    def swapped(code):
        return any(code[:i] + code[i + 1] + code[i] + code[i + 2 :] in homes for i in range(3))

    def changed(code):
        return any(code[:i] + d + code[i + 1 :] in homes for i in range(4) for d in "0123456789")

    shares, kinds = [], {"swapped": 0, "changed": 0}
    for sent in (files.first["postcode"].drop_nulls(), files.second["postcode"].drop_nulls()):
        wrong = [code for code in sent if code not in homes]
        shares.append(len(wrong) / len(sent))
        for code in wrong:
            # Both errors on one record (0.1%) may leave a code neither test finds.
            kinds["swapped"] += swapped(code)
            kinds["changed"] += changed(code) and not swapped(code)
        assert sum(swapped(c) or changed(c) for c in wrong) >= 0.95 * len(wrong)
    # About 6% of the second file's records (3% each kind), half that in the first.
    assert 0.04 < shares[1] < 0.08 and shares[0] < shares[1]
    assert kinds["swapped"] > 0.3 * sum(kinds.values()) < kinds["changed"]


def test_a_district_only_partner_sends_the_outward_code_of_each_postcode():
    from pipelines.partner_kit.normalise import district_only_postcodes

    files = generate(small("postcode_district_only"), seed=2)
    sent = files.second["postcode"].drop_nulls()
    assert district_only_postcodes(sent).is_not_null().all()
    assert files.first["postcode"].drop_nulls().str.contains(" ").all()  # the first: full ones


def test_transposed_names_are_written_the_other_way_round():
    files = generate(
        small(
            "transposed_names",
            errors=dataclasses.replace(PROFILES["transposed_names"].errors, transposed=1.0),
        ),
        seed=3,
    )
    truth = files.truth.filter(pl.col("file") == 2).join(files.second, on="record_id")
    first = files.truth.filter(pl.col("file") == 1).join(files.first, on="record_id")
    pairs = truth.join(first, on="person_id", suffix="_1")
    swapped = pairs.filter(
        pl.col("given_name").str.to_uppercase() == pl.col("family_name_1").str.to_uppercase()
    )
    # The second file always transposes, the first at half the rate (both partners make mistakes).
    assert swapped.height > 0.3 * pairs.height
