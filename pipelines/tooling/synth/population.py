"""The people of the place: households, ages, names, NHS numbers and family need.

Everything here is the truth that the partner systems later record imperfectly.
Family need is a household-level latent score (standard normal overall, higher in
deprived LSOAs and lone-parent households); it drives service use and programme
enrolment, which is what makes a matched comparison group possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.tooling.synth.geography import build_postcodes, outside_postcodes
from pipelines.tooling.synth.names import NamePools
from pipelines.tooling.synth.nhs_numbers import draw_nhs_numbers
from pipelines.tooling.synth.study import DAYS_PER_YEAR, START_DAY, day_series

HOUSEHOLD_KINDS = ("single", "couple", "couple_with_children", "lone_parent", "shared")
SINGLE, COUPLE, COUPLE_WITH_CHILDREN, LONE_PARENT, SHARED = range(5)
NEED_THRESHOLD = 1.0  # families above this are "families with need" (~1 in 6)
OPT_OUT_SHARE = 0.03
MOVED_WITHIN_BOROUGH_SHARE = 0.6
DOUBLE_BARRELLED_HOUSEHOLDS = 0.03
OWN_SURNAME_PARTNER = 0.25  # partners/lone parents whose surname differs from the household's


@dataclass(frozen=True)
class Population:
    households: pl.DataFrame
    people: pl.DataFrame
    postcodes: pl.DataFrame


def build_population(
    rng: np.random.Generator, people: int, lsoas: pl.DataFrame, pools: NamePools
) -> Population:
    """Exactly `people` people in households spread over the LSOAs.

    households: household_idx, household_id, lsoa_idx, postcode_idx, kind, n_children,
    need, family_with_need.
    people: person_idx, person_id, household_idx, member_no, is_child, sex, date_of_birth,
    age (years at the window start), given_name, family_name, nhs_number, postcode,
    lsoa_idx, previous_postcode, previous_family_name, national_data_opt_out.
    """
    n_lsoas = lsoas.height
    decile_of_lsoa = lsoas["imd_decile"].to_numpy().astype(float)
    weights = lsoas["weight"].to_numpy()

    guess = int(people / 2.2 * 1.2) + 16
    lsoa = rng.choice(n_lsoas, size=guess, p=weights / weights.sum())
    decile = decile_of_lsoa[lsoa]
    kind = _draw_kinds(rng, decile)
    n_children = np.zeros(guess, dtype=np.int64)
    with_couple = kind == COUPLE_WITH_CHILDREN
    n_children[with_couple] = rng.choice(
        [1, 2, 3, 4], size=with_couple.sum(), p=[0.42, 0.40, 0.13, 0.05]
    )
    lone = kind == LONE_PARENT
    n_children[lone] = rng.choice([1, 2, 3], size=lone.sum(), p=[0.5, 0.35, 0.15])
    n_adults = np.choose(kind, [1, 2, 2, 1, 3]).astype(np.int64)
    n_adults[kind == SHARED] += rng.random((kind == SHARED).sum()) < 0.35
    size = n_adults + n_children

    # Keep whole households until `people` is reached; trim the last one.
    ends = np.cumsum(size)
    n_households = int(np.searchsorted(ends, people) + 1)
    lsoa, decile, kind = lsoa[:n_households], decile[:n_households], kind[:n_households]
    size = size[:n_households].copy()
    size[-1] -= ends[n_households - 1] - people
    n_adults = np.minimum(n_adults[:n_households], size)
    n_children = size - n_adults

    deprivation = (5.5 - decile) / 2.87
    need = (
        0.5 * deprivation + 0.3 * (kind == LONE_PARENT) + 0.85 * rng.standard_normal(n_households)
    )
    postcodes, postcode_of_household = build_postcodes(rng, lsoa, n_lsoas)

    household_of = np.repeat(np.arange(n_households), size)
    first_member = np.concatenate([[0], np.cumsum(size)[:-1]])
    member_no = np.arange(people) - first_member[household_of]
    is_child = member_no >= n_adults[household_of]
    age, sex = _ages_and_sexes(rng, kind, household_of, member_no, is_child, n_children)
    dob_day = START_DAY - np.floor(age * DAYS_PER_YEAR).astype(np.int64) - 1

    given, family, previous_family = _names(
        rng, pools, kind, household_of, member_no, is_child, sex
    )
    nhs_number = draw_nhs_numbers(rng, people)
    opted_out = rng.random(people) < OPT_OUT_SHARE
    postcode_text = postcodes["postcode"].to_numpy()
    postcode_idx = postcode_of_household[household_of]
    previous = _previous_postcodes(rng, postcode_text, postcode_idx)

    households = pl.DataFrame(
        {
            "household_idx": np.arange(n_households, dtype=np.int64),
            "household_id": _ids("H", n_households),
            "lsoa_idx": lsoa.astype(np.int32),
            "postcode_idx": postcode_of_household,
            "kind": np.array(HOUSEHOLD_KINDS)[kind],
            "n_children": n_children,
            "need": need,
            "family_with_need": (need > NEED_THRESHOLD) & (n_children > 0),
        }
    )
    people_frame = pl.DataFrame(
        {
            "person_idx": np.arange(people, dtype=np.int64),
            "person_id": _ids("P", people),
            "household_idx": household_of.astype(np.int64),
            "member_no": member_no.astype(np.int16),
            "is_child": is_child,
            "sex": np.where(sex == 1, "F", "M"),
            "date_of_birth": day_series("date_of_birth", dob_day),
            "age": age,
            "given_name": given,
            "family_name": family,
            "nhs_number": nhs_number,
            "postcode": postcode_text[postcode_idx],
            "lsoa_idx": lsoa[household_of].astype(np.int32),
            "previous_postcode": previous,
            "previous_family_name": previous_family,
            "national_data_opt_out": opted_out,
        }
    )
    return Population(households, people_frame, postcodes)


def _ids(prefix: str, n: int) -> pl.Series:
    width = max(7, len(str(n)))
    numbers = pl.Series(np.arange(1, n + 1)).cast(pl.String).str.zfill(width)
    return pl.select(pl.lit(prefix) + numbers).to_series()


def _draw_kinds(rng: np.random.Generator, decile: np.ndarray) -> np.ndarray:
    # Lone-parent households are about three times as common in the most deprived areas.
    lone = 0.035 + 0.009 * (10 - decile)
    probs = np.column_stack(
        [
            np.full_like(lone, 0.31),
            np.full_like(lone, 0.30),
            np.full_like(lone, 0.19),
            lone,
            np.full_like(lone, 0.08),
        ]
    )
    cumulative = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    return (rng.random(len(decile))[:, None] > cumulative[:, :-1]).sum(axis=1)


def _ages_and_sexes(rng, kind, household_of, member_no, is_child, n_children):
    n_households = len(kind)
    has_children = n_children > 0
    oldest_child = np.where(has_children, rng.uniform(0.0, 18.0, n_households), 0.0)
    parent_age = np.where(
        kind == LONE_PARENT,
        oldest_child + rng.uniform(17.0, 36.0, n_households),
        oldest_child + rng.uniform(20.0, 38.0, n_households),
    )
    older = rng.random(n_households) < 0.6
    single_age = np.where(
        older, rng.uniform(60, 95, n_households), rng.uniform(20, 60, n_households)
    )
    band = rng.random(n_households)
    couple_age = np.select(
        [band < 0.35, band < 0.60],
        [rng.uniform(21, 45, n_households), rng.uniform(45, 65, n_households)],
        rng.uniform(65, 92, n_households),
    )
    head_age = np.choose(kind, [single_age, couple_age, parent_age, parent_age, parent_age])

    n = len(household_of)
    kind_p = kind[household_of]
    head = head_age[household_of]
    age = np.empty(n)
    adult = ~is_child
    partner_age = np.clip(head + rng.normal(1.5, 3.0, n), 18, 100)
    age[adult] = np.where(member_no[adult] == 0, head[adult], partner_age[adult])
    shared = adult & (kind_p == SHARED)
    age[shared] = rng.uniform(18, 60, shared.sum())
    first_child_no = np.where(kind_p == LONE_PARENT, 1, 2)
    child_rank = member_no - first_child_no
    gaps = rng.uniform(1.2, 3.5, n)
    child_age = oldest_child[household_of] - child_rank * gaps
    child_age = np.where(child_age < 0, rng.uniform(0.0, 0.9, n), child_age)
    age[is_child] = child_age[is_child]

    female_head = np.where(
        kind == LONE_PARENT, rng.random(n_households) < 0.9, rng.random(n_households) < 0.55
    )
    opposite = rng.random(n) < 0.95
    own = rng.random(n) < 0.5
    sex = np.where(
        is_child | (kind_p == SHARED),
        own,
        np.where(
            member_no == 0,
            female_head[household_of],
            np.where(opposite, ~female_head[household_of], female_head[household_of]),
        ),
    ).astype(np.int8)
    return age, sex


def _names(rng, pools: NamePools, kind, household_of, member_no, is_child, sex):
    n_households = len(kind)
    n = len(household_of)
    locale = rng.choice(len(pools.locales), size=n_households, p=pools.shares / pools.shares.sum())
    person_locale = locale[household_of]

    def from_pool(which: tuple[np.ndarray, ...], owner_locale: np.ndarray) -> pl.Series:
        sizes = np.array([len(pool) for pool in which])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        picks = offsets[owner_locale] + np.floor(
            rng.random(len(owner_locale)) * sizes[owner_locale]
        )
        return pl.Series(np.concatenate(which)).gather(picks.astype(np.int64))

    surname = from_pool(pools.family, locale)
    second = from_pool(pools.family, locale)
    barrelled = pl.Series((rng.random(n_households) < DOUBLE_BARRELLED_HOUSEHOLDS) & (locale == 0))
    surname = pl.select(
        pl.when(barrelled).then(surname + "-" + second).otherwise(surname)
    ).to_series()
    # Some partners (and lone parents) keep a surname the children do not share.
    kind_p = kind[household_of]
    keeps_own = (~is_child) & (kind_p != SHARED) & (rng.random(n) < OWN_SURNAME_PARTNER)
    keeps_own &= (member_no == 1) | (kind_p == LONE_PARENT)
    own_surname = from_pool(pools.family, person_locale)
    unrelated = pl.Series(keeps_own | (kind_p == SHARED))
    family = pl.select(
        pl.when(unrelated).then(own_surname).otherwise(surname.gather(household_of))
    ).to_series()
    female = from_pool(pools.female, person_locale)
    male = from_pool(pools.male, person_locale)
    given = pl.select(pl.when(pl.Series(sex == 1)).then(female).otherwise(male)).to_series()
    # A surname some adults were once registered under (before marriage, say).
    former = from_pool(pools.family, person_locale)
    previous = pl.select(pl.when(pl.Series(is_child)).then(None).otherwise(former)).to_series()
    return given, family, previous


def _previous_postcodes(rng, postcode_text: np.ndarray, postcode_idx: np.ndarray) -> np.ndarray:
    """An older address for each person: elsewhere in the borough, or outside it."""
    n = len(postcode_idx)
    other = rng.integers(0, len(postcode_text), n)
    other = np.where(other == postcode_idx, (other + 1) % len(postcode_text), other)
    within = postcode_text[other]
    if len(postcode_text) == 1:
        within = outside_postcodes(rng, n)
    outside = outside_postcodes(rng, n)
    return np.where(rng.random(n) < MOVED_WITHIN_BOROUGH_SHARE, within, outside)
