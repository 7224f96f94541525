"""One partner whose file holds its own duplicates (a case-management system with a client
entered twice; FEBRL3), with names and a date of birth only. The hub merges that partner's records
that agree on every identity field into one identity record, so among its identity records no
pair sharing the exact full name shares the date of birth: training on that rule saw the exact
date "never" among matches and gave the strongest evidence of the model no weight (issue 17)."""

import dataclasses
import math

import duckdb
import polars as pl
import pytest

from pipelines.linkage.model import (
    hides_agreement,
    predict_clusters,
    splink_settings,
    train,
    training_rules,
)
from pipelines.linkage.person_records import IDENTITY_KEY
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.bench.linkage_profiles import partner_records
from pipelines.tooling.stress import PROFILES, generate

FIELDS = ("given_name", "family_name", "date_of_birth")
NAMES = ("given_name_token", "family_name_token")
PARTS = ("given_name_first_part_token", "family_name_first_part_token")
PHONETIC = ("given_name_phonetic_token", "family_name_phonetic_token")
KEY = ("given_name_token", "family_name_token", "date_of_birth_token")


def as_the_hub_groups(records: pl.DataFrame) -> pl.DataFrame:
    """One identity record per set of equal identity tokens (names and date of birth all
    present), as ``hub.person_records`` holds them; records missing one stay on their own."""
    complete = pl.all_horizontal(pl.col(c).is_not_null() for c in KEY)
    merged = records.filter(complete).unique(subset=list(KEY), keep="first", maintain_order=True)
    return pl.concat([merged, records.filter(~complete)])


@pytest.fixture(scope="module")
def one_partner():
    """A stress place's two files sent by one partner, under one key: its own duplicates."""
    key = LinkageKey.generate()
    files = generate(dataclasses.replace(PROFILES["baseline"], people=1500), seed=17)
    raw = pl.concat([files.first, files.second]).select("record_id", *FIELDS)
    records = as_the_hub_groups(partner_records(raw, "solo", key))
    return key, records, train(records.to_arrow())


def level_weight(model, comparison: str, label_start: str) -> float:
    (found,) = (
        level
        for c in model.splink_settings["comparisons"]
        if c["output_column_name"] == comparison
        for level in c["comparison_levels"]
        if level.get("label_for_charts", "").startswith(label_start)
    )
    return math.log2(found["m_probability"] / found["u_probability"])


def test_an_exact_date_of_birth_is_evidence_when_one_partner_links_its_own_duplicates(one_partner):
    _, _, model = one_partner

    # an exact date of birth is rare among strangers: strong evidence, not none (it weighed 0.0)
    assert level_weight(model, "date_of_birth", "Exact match") > 6
    assert not any("date_of_birth: Exact match" in w for w in model.warnings)
    assert "given_name_token + family_name_token" not in " ".join(model.training_rules)


def test_a_duplicate_with_a_misspelt_family_name_links_on_its_date_of_birth(one_partner):
    key, records, model = one_partner
    rows = pl.DataFrame(
        {
            "record_id": ["HAND-L", "HAND-R"],
            "given_name": ["Aleksandra", "Aleksandra"],
            "family_name": ["Wiśniewska", "Wisniewski"],
            "date_of_birth": ["1987-03-07", "1987-03-07"],
        }
    )
    hand = partner_records(rows, "solo", key)
    everyone = pl.concat([records, hand]).to_arrow()

    clusters = predict_clusters(everyone, model).clusters.to_pylist()

    of = {c["unique_id"]: c["cluster_id"] for c in clusters}
    assert of["HAND-L"] == of["HAND-R"]


@pytest.mark.parametrize(
    ("rule", "reads", "have", "hidden"),
    [
        # names and a date only: the exact full name hides the exact date
        ((*NAMES, *PARTS), {"date_of_birth_token", "dob_year_token"}, set(KEY), True),
        # ... and sex, which one person's records rarely differ in, does not reveal it
        ((*NAMES,), {"date_of_birth_token"}, {*KEY, "sex"}, True),
        # a postcode that differs (a move) separates records of one person: agreement is seen
        ((*NAMES,), {"date_of_birth_token"}, {*KEY, "postcode_token"}, False),
        # names as they sound: two spellings are two identity records, whatever the date
        (PHONETIC, {"date_of_birth_token"}, {*KEY, *PHONETIC}, False),
        # the date of birth rule and the names: another name field can still differ
        (("date_of_birth_token",), {"given_name_token"}, set(KEY), False),
    ],
)
def test_a_rule_hides_agreement_where_with_the_comparison_it_makes_up_the_identity(
    rule, reads, have, hidden
):
    assert set(KEY) <= set(IDENTITY_KEY)
    assert hides_agreement(rule, reads, frozenset(have)) is hidden


def test_the_date_of_birth_is_trained_on_names_as_they_sound_when_exact_names_hide_it():
    have = frozenset((*NAMES, *PARTS, *PHONETIC, "date_of_birth_token"))
    con = duckdb.connect()
    # 600 pairs share a full name (never a date: merged otherwise), and as they sound; no two
    # records share a date of birth
    con.execute(f"""
        CREATE TABLE person_records AS
        SELECT i AS unique_id, 'g' || (i // 2) AS {NAMES[0]}, 'f' || (i // 2) AS {NAMES[1]},
               'g' || (i // 2) AS {PARTS[0]}, 'f' || (i // 2) AS {PARTS[1]},
               'G' || (i // 2) AS {PHONETIC[0]}, 'F' || (i // 2) AS {PHONETIC[1]},
               'd' || i AS date_of_birth_token
        FROM range(1200) t(i)""")
    settings = splink_settings(have=have).create_settings_dict("duckdb")

    rules, untrained, _ = training_rules(con, settings, have)

    assert rules == [PHONETIC] and "date_of_birth" not in untrained
    # with a postcode sent, pairs sharing the exact name can share the date: that rule is kept
    with_postcode = have | {"postcode_token"}
    con.execute("ALTER TABLE person_records ADD COLUMN postcode_token VARCHAR")
    settings = splink_settings(have=with_postcode).create_settings_dict("duckdb")
    rules, _, _ = training_rules(con, settings, with_postcode)
    assert rules[0] == (*NAMES, *PARTS)
