"""The model is built from the fields the records hold: a field no partner sends (no postcode
anywhere, no sex, no NHS number) costs only the evidence it would have given, and training
never fails for lack of one (issue 17)."""

import json
import logging

import pyarrow as pa
import pytest

from pipelines.linkage.model import blocked_comparisons, predict_clusters, present_columns, train


def without(records: pa.Table, *columns: str) -> pa.Table:
    """``records`` with every value of ``columns`` missing, as when no contract lists them."""
    for column in columns:
        index = records.schema.get_field_index(column)
        records = records.set_column(
            index, column, pa.nulls(records.num_rows, records.schema.field(column).type)
        )
    return records


POSTCODE = ("postcode_token", "postcode_sector_token", "postcode_district_token")


@pytest.fixture(scope="module")
def full(small_place_person_records):
    records = small_place_person_records
    return records, predict_clusters(records, train(records), 0.9, keep_pairs=True)


def linked_pairs(prediction, threshold=0.9) -> set[tuple[str, str]]:
    l, r, p = (prediction.pairs.column(i).to_pylist() for i in range(3))
    return {(a, b) for a, b, q in zip(l, r, p) if q >= threshold}


def test_training_with_no_postcode_anywhere_completes_and_links_what_names_and_dates_can(full):
    records, with_postcode = full
    no_postcode = without(records, *POSTCODE)

    model = train(no_postcode)

    saved = json.dumps(model.splink_settings)
    assert (
        "postcode" not in saved
    )  # no comparison level or blocking rule reads a column nobody sends
    assert model.training_rules and all("postcode" not in rule for rule in model.training_rules)
    assert all("postcode" not in rule for rule, _ in blocked_comparisons(no_postcode))
    prediction = predict_clusters(no_postcode, model, 0.9, keep_pairs=True)
    # Most links rest on names, date of birth and NHS number: losing the postcode loses few.
    before, after = linked_pairs(with_postcode), linked_pairs(prediction)
    assert len(before & after) >= 0.95 * len(before)


def test_a_place_without_sex_or_nhs_numbers_trains_on_names_and_dates(full):
    records, with_all = full
    bare = without(records, "sex", "nhs_number_token")

    model = train(bare)

    names = [c["output_column_name"] for c in model.splink_settings["comparisons"]]
    assert "sex" not in names and "nhs_number_token" not in names
    assert "date_of_birth" in names and "given_name" in names
    assert (
        "nhs_number_token" not in model.prior_method
    )  # the prior comes from names + date of birth
    after = linked_pairs(predict_clusters(bare, model, 0.9, keep_pairs=True))
    assert len(linked_pairs(with_all) & after) >= 0.9 * len(linked_pairs(with_all))


def test_present_columns_are_those_some_record_holds(small_place_person_records):
    records = without(small_place_person_records, "sex", "nhs_number_token")
    records = records.set_column(
        records.schema.get_field_index("nhs_number_token"),
        "nhs_number_token",
        pa.array(["a"] + [None] * (records.num_rows - 1), pa.string()),
    )
    have = present_columns(records)
    assert "sex" not in have and "nhs_number_token" in have
    assert {"given_name_token", "date_of_birth_token", "postcode_token"} <= have


def test_training_on_a_handful_of_records_completes_and_says_what_it_could_not_estimate(
    small_place_person_records, caplog
):
    tiny = small_place_person_records.slice(0, 12)

    with caplog.at_level(logging.WARNING, logger="pipelines.linkage.model"):
        model = train(tiny)

    assert any("no training rule has enough pairs" in w for w in model.warnings)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "no training rule has enough pairs" in logged
    # Labels only: no token of the records appears in what is logged or saved.
    tokens = [t for t in tiny.column("given_name_token").to_pylist() if t]
    assert not any(t in logged or t in " ".join(model.warnings) for t in tokens)
    for comparison in model.splink_settings["comparisons"]:
        for level in comparison["comparison_levels"]:
            if not level.get("is_null_level"):
                assert isinstance(level["m_probability"], float) and isinstance(
                    level["u_probability"], float
                )


def test_a_comparison_no_rule_can_train_on_500_pairs_is_trained_on_fewer_with_a_warning():
    """Pairs sharing a full name can be few (a small place, or one partner whose exact
    duplicates are already one identity record): the date of birth must still be trained, not
    left weighing nothing. (A postcode is sent, so those pairs can share a date of birth:
    test_one_partner_duplicates.py has the case where they cannot.)"""
    import duckdb

    from pipelines.linkage.model import EM_FEW_PAIRS, splink_settings, training_rules

    names = ("given_name_token", "family_name_token")
    parts = ("given_name_first_part_token", "family_name_first_part_token")
    have = frozenset((*names, *parts, "date_of_birth_token", "postcode_token"))
    con = duckdb.connect()
    # 120 pairs share a full name; no two records share a date of birth
    con.execute(f"""
        CREATE TABLE person_records AS
        SELECT i AS unique_id, 'g' || (i // 2) AS {names[0]}, 'f' || (i // 2) AS {names[1]},
               'g' || (i // 2) AS {parts[0]}, 'f' || (i // 2) AS {parts[1]},
               'd' || i AS date_of_birth_token, 'p' || i AS postcode_token
        FROM range(240) t(i)""")
    settings = splink_settings(have=have).create_settings_dict("duckdb")

    rules, untrained, thin = training_rules(con, settings, have)

    # the names themselves have no rule (no two records share a date of birth): said, not hidden
    assert rules == [(*names, *parts)] and untrained == ["family_name", "given_name"]
    assert len(thin) == 1 and "had only 120 pairs (fewer than 500)" in thin[0]
    assert "date_of_birth" in thin[0] and "rough estimate" in thin[0]
    # below the floor nothing is taken: the comparison is reported untrained instead
    rules, untrained, thin = training_rules(con, settings, have, few_pairs=121)
    assert rules == [] and "date_of_birth" in untrained and thin == []
    assert EM_FEW_PAIRS <= 120


def test_postcodes_with_no_district_block_in_the_districts_place(full):
    # Another country's postal codes (postcodeFormat: any) come with no sector or district: the
    # rules that pair a date of birth or names with the district pair them with the postcode.
    records, _ = full
    date_and = '(l."date_of_birth_token" = r."date_of_birth_token") AND (l."{}" = r."{}")'
    abroad = dict(
        blocked_comparisons(without(records, "postcode_sector_token", "postcode_district_token"))
    )
    on_postcode = date_and.format("postcode_token", "postcode_token")
    assert abroad[on_postcode] > 0  # pairs that no rule before it found
    assert not any("district" in rule for rule in abroad)
    # With districts, the rules are the UK ones.
    home = dict(blocked_comparisons(records))
    assert date_and.format(*["postcode_district_token"] * 2) in home and on_postcode not in home


def _postcode_level(left: dict, right: dict) -> str:
    """The postcode comparison's level for one pair of records (first level whose SQL holds)."""
    import duckdb

    from pipelines.linkage.comparisons import COLUMNS_BY_FIELD, postcode_comparison

    columns = COLUMNS_BY_FIELD["postcode"]
    con = duckdb.connect()
    values = [left.get(c) for c in columns] + [right.get(c) for c in columns]
    names = [f"{c}_l" for c in columns] + [f"{c}_r" for c in columns]
    con.execute(
        f"CREATE TABLE pair AS SELECT {', '.join(f'$v{i}::VARCHAR AS {n}' for i, n in enumerate(names))}",
        {f"v{i}": v for i, v in enumerate(values)},
    )
    levels = postcode_comparison().get_comparison("duckdb").as_dict()["comparison_levels"]
    for level in levels:
        sql = level["sql_condition"]
        if sql == "ELSE" or con.execute(f"SELECT coalesce(({sql}), false) FROM pair").fetchone()[0]:
            return level["label_for_charts"]
    raise AssertionError("no level")


def test_a_district_sent_alone_agrees_at_the_district_level_and_no_place_is_null():
    full = {"postcode_token": "p1", "postcode_sector_token": "s1", "postcode_district_token": "d1"}
    district = {"postcode_district_token": "d1"}
    abroad = {"postcode_token": "x1"}
    assert _postcode_level(full, district) == "same district"
    assert _postcode_level(district, {"postcode_district_token": "d2"}) == "All other comparisons"
    assert _postcode_level(abroad, abroad) == "Exact match on postcode_token"
    assert _postcode_level(full, {}) == "no postcode or district"
    assert _postcode_level({}, district) == "no postcode or district"
    assert _postcode_level(full, full) == "Exact match on postcode_token"


def test_a_postal_code_of_another_country_with_characters_transposed_agrees_partly():
    """6062 and 6602: with no sector or district, the same characters in another order are the
    partial agreement a UK postcode's sector gives (FEBRL4: 113 of 340 missed true pairs)."""
    abroad = {"postcode_token": "x1", "postcode_unordered_token": "u1"}
    transposed = {"postcode_token": "x2", "postcode_unordered_token": "u1"}
    other = {"postcode_token": "x3", "postcode_unordered_token": "u3"}
    assert _postcode_level(abroad, abroad) == "Exact match on postcode_token"
    assert _postcode_level(abroad, transposed).startswith("characters transposed")
    assert _postcode_level(abroad, other) == "All other comparisons"


def test_a_postal_code_of_another_country_one_keying_error_apart_agrees_partly():
    """2602 and 2612: the two share a form with one character left out (262); clear text has a
    Damerau-Levenshtein level for it (FEBRL4 on names, date of birth and postcode: 66 of the 247
    missed true pairs had one digit changed)."""
    a, b, c, d = (f"{i:032x}" for i in range(4))
    abroad = {"postcode_token": "x1", "postcode_variant_tokens": f"{a} {b}"}
    changed = {"postcode_token": "x2", "postcode_variant_tokens": f"{b} {c}"}
    other = {"postcode_token": "x3", "postcode_variant_tokens": d}
    assert _postcode_level(abroad, abroad) == "Exact match on postcode_token"
    assert _postcode_level(abroad, changed).startswith("one character apart")
    assert _postcode_level(abroad, other) == "All other comparisons"
    assert _postcode_level(abroad, {"postcode_token": "x4"}) == "All other comparisons"
