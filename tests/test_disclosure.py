import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.publish.disclosure import (
    DisclosureRule,
    Rate,
    TableSpec,
    add_totals,
    control_table,
    differencing_attack,
    unsafe_cells,
)

PER_100 = Rate.parse("per_100 = events / people * 100")


def cell_by_cell(
    table: pl.DataFrame,
    counts: list[str],
    rates: list[Rate] = (),
    rule: DisclosureRule = DisclosureRule(),
) -> pl.DataFrame:
    """The publisher's rule applied to each cell alone (no margins declared, so none protected):
    every column not in ``counts`` is a dimension and passes unchanged."""
    spec = TableSpec(
        dimensions=tuple(c for c in table.columns if c not in counts),
        counts=tuple(counts),
        rates=tuple(rates),
    )
    return control_table(table, spec, rule)


def test_small_counts_redacted_and_others_rounded():
    table = pl.DataFrame({"group": list("abcdef"), "people": [0, 1, 7, 8, 12, 103]})
    out = cell_by_cell(table, ["people"], [])
    assert out["people"].to_list() == [0, None, None, 10, 10, 105]
    assert unsafe_cells(out, ["people"]) == 0


def test_rates_use_unrounded_counts_and_hide_with_their_inputs():
    table = pl.DataFrame({"people": [40, 40, 5], "events": [12, 3, 20]})
    out = cell_by_cell(table, ["people", "events"], [PER_100])
    assert out["per_100"].to_list() == [30.0, None, None]  # 12/40 unrounded; 3 and 5 redacted
    assert out["events"].to_list() == [10, None, 20]


def test_unsafe_cells_finds_raw_counts():
    assert unsafe_cells(pl.DataFrame({"n": [3, 11, 10]}), ["n"]) == 2


def test_rate_syntax_errors_are_explained():
    with pytest.raises(ValueError, match="numerator / denominator"):
        Rate.parse("events per people")


def test_rule_describes_itself():
    assert "1-7 redacted" in DisclosureRule().describe()


def test_rates_from_decimal_sums_are_not_truncated():
    import decimal

    table = pl.DataFrame(
        {"people": [40], "events": [decimal.Decimal(13)]},
        schema={"people": pl.Int64, "events": pl.Decimal(38, 0)},
    )
    out = cell_by_cell(table, ["people", "events"], [PER_100])
    assert out["per_100"].to_list() == [32.5]


# --- margins, secondary suppression and the differencing attack ---------------------------------

SPEC = TableSpec(
    dimensions=("cohort", "age_band"),
    counts=("people", "events"),
    rates=(Rate.parse("per_100 = events / people * 100"),),
    population="people",
    totals=(("age_band", "All ages"),),
)


def _by_age(people, events=None):
    bands = [f"band{i}" for i in range(len(people))]
    return pl.DataFrame(
        {
            "cohort": ["programme"] * len(people),
            "age_band": bands,
            "people": people,
            "events": events or [p * 2 for p in people],
        }
    )


def test_totals_are_true_margins_then_controlled():
    out = control_table(_by_age([40, 60, 100]), SPEC)
    total = out.filter(pl.col("age_band") == "All ages")
    assert total["people"].to_list() == [200]
    assert total["per_100"].to_list() == [200.0]


def test_a_single_redacted_cell_is_recovered_from_its_total_without_secondary_suppression():
    # The attack the rule must defeat: publish the true total next to cells with one redaction.
    # Without rounding (base 1, plain small-number suppression) subtraction gives the exact value.
    naive_rule = DisclosureRule(threshold=7, rounding_base=1)
    table = add_totals(_by_age([3, 41, 57]), SPEC)
    naive = cell_by_cell(table, ["people", "events"], [], naive_rule)
    recovered = differencing_attack(naive, SPEC, naive_rule)
    people = [r for r in recovered if r.column == "people"]
    assert [(r.row, r.low, r.high) for r in people] == [(0, 3.0, 3.0)]  # exactly the hidden 3


def test_differencing_attack_fails_after_secondary_suppression():
    for rule in (DisclosureRule(), DisclosureRule(threshold=7, rounding_base=1)):
        out = control_table(_by_age([3, 41, 57]), SPEC, rule)
        assert out["people"].to_list() == [
            None,
            None,
            55 if rule.rounding_base == 5 else 57,
            100 if rule.rounding_base == 5 else 101,
        ]
        assert differencing_attack(out, SPEC, rule) == []
        # the rate of a row whose people are redacted is hidden too, even if its events are not
        assert out["per_100"].to_list()[:2] == [None, None]


def test_rounded_margin_still_narrows_a_lone_redacted_cell_so_it_is_protected():
    # Even with rounding, a lone redaction next to a total tells an attacker more than '1-7'.
    table = add_totals(_by_age([1, 8]), SPEC)
    naive = cell_by_cell(table, ["people"], [])
    found = [r for r in differencing_attack(naive, SPEC) if r.column == "people"]
    assert found and found[0].high < 7
    assert differencing_attack(control_table(_by_age([1, 8]), SPEC), SPEC) == []


def test_totals_over_two_dimensions_are_each_protected():
    spec = TableSpec(
        dimensions=("ward", "age_band"),
        counts=("people",),
        totals=(("ward", "All wards"), ("age_band", "All ages")),
    )
    raw = pl.DataFrame(
        {
            "ward": ["w1", "w1", "w2", "w2"],
            "age_band": ["a", "b", "a", "b"],
            "people": [5, 30, 40, 50],
        }
    )
    out = control_table(raw, spec)
    assert (
        out.height == 4 + 2 + 2 + 1
    )  # cells, ward totals per band, band totals per ward, grand total
    assert out.filter((pl.col("ward") == "All wards") & (pl.col("age_band") == "All ages"))[
        "people"
    ].to_list() == [125]
    assert differencing_attack(out, spec) == []
    assert unsafe_cells(out, ["people"]) == 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=60), min_size=2, max_size=6),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([1, 5]),
)
def test_no_published_table_gives_a_redacted_cell_away(groups, base):
    rows = [
        {"cohort": f"c{g}", "age_band": f"b{i}", "people": v, "events": v}
        for g, values in enumerate(groups)
        for i, v in enumerate(values)
    ]
    rule = DisclosureRule(threshold=7, rounding_base=base)
    out = control_table(pl.DataFrame(rows), SPEC, rule)
    assert differencing_attack(out, SPEC, rule) == []
    assert unsafe_cells(out, ["people", "events"], rule) == 0
    # nothing redacted is shown as zero, and a zero is never redacted as if it were small
    raw_total = {(r["cohort"]): 0 for r in rows}
    for r in rows:
        raw_total[r["cohort"]] += r["people"]
    for cohort, total in raw_total.items():
        published = out.filter((pl.col("cohort") == cohort) & (pl.col("age_band") == "All ages"))[
            "people"
        ][0]
        assert published is None or abs(published - total) <= base / 2


def test_a_subtotal_is_a_margin_too():
    spec = TableSpec(
        dimensions=("age_band",),
        counts=("people",),
        totals=(("age_band", "All ages"),),
        subtotals=(("age_band", "0-17", ("0-4", "5-10")),),
    )
    raw = pl.DataFrame({"age_band": ["0-4", "5-10", "18-64", "65+"], "people": [3, 20, 30, 40]})
    out = dict(control_table(raw, spec).select("age_band", "people").iter_rows())
    # '0-17' = 23 would give the 3 away next to a visible 20, so the 20 is hidden (not the 30)
    assert out == {"0-4": None, "5-10": None, "18-64": 30, "65+": 40, "0-17": 25, "All ages": 95}
    naive_rule = DisclosureRule(threshold=7, rounding_base=1)
    naive = cell_by_cell(add_totals(raw, spec), ["people"], [], naive_rule)
    assert [(r.low, r.high) for r in differencing_attack(naive, spec, naive_rule)][0] == (3.0, 3.0)
    assert differencing_attack(control_table(raw, spec, naive_rule), spec, naive_rule) == []


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=40), min_size=5, max_size=5),
    st.lists(st.integers(min_value=0, max_value=40), min_size=5, max_size=5),
)
def test_no_redacted_cell_is_given_away_by_totals_and_subtotals_together(programme, comparison):
    spec = TableSpec(
        dimensions=("cohort", "age_band"),
        counts=("people",),
        totals=(("age_band", "All ages"),),
        subtotals=(
            ("age_band", "0-17", ("0-4", "5-10", "11-17")),
            ("age_band", "18+", ("18-64", "65+")),
        ),
    )
    bands = ["0-4", "5-10", "11-17", "18-64", "65+"]
    raw = pl.DataFrame(
        {"cohort": ["p"] * 5 + ["c"] * 5, "age_band": bands * 2, "people": programme + comparison}
    )
    for rule in (DisclosureRule(), DisclosureRule(threshold=7, rounding_base=1)):
        out = control_table(raw, spec, rule)
        assert differencing_attack(out, spec, rule) == []
        assert unsafe_cells(out, ["people"], rule) == 0


def test_subtotals_and_the_total_form_a_margin_of_their_own():
    # All ages = 0-17 + 18+: with the small children hidden, 0-17 (= 3) would be All ages - 18+.
    spec = TableSpec(
        dimensions=("age_band",),
        counts=("people",),
        totals=(("age_band", "All ages"),),
        subtotals=(
            ("age_band", "0-17", ("0-4", "5-10", "11-17")),
            ("age_band", "18+", ("18-64", "65+")),
        ),
    )
    raw = pl.DataFrame(
        {"age_band": ["0-4", "5-10", "11-17", "18-64", "65+"], "people": [1, 1, 1, 30, 40]}
    )
    rule = DisclosureRule(threshold=7, rounding_base=1)
    naive = cell_by_cell(add_totals(raw, spec), ["people"], [], rule)
    assert any(r.low == r.high == 3.0 for r in differencing_attack(naive, spec, rule))
    out = dict(control_table(raw, spec, rule).select("age_band", "people").iter_rows())
    # Hiding 'All ages' protects that equation at the cost of one cell; hiding '18+' instead would
    # expose 18+ = 18-64 + 65+ and cost a second cell, so the adults' rows stay visible.
    assert out["0-17"] is None and out["All ages"] is None
    assert (out["18+"], out["18-64"], out["65+"]) == (70, 30, 40)
    assert differencing_attack(control_table(raw, spec, rule), spec, rule) == []


def test_secondary_suppression_hides_the_fewest_cells_not_a_large_subtotal():
    # The comparison group's children's social-care referrals in one window: 16, 16 and 17 in the
    # children's bands, one referral among adults. An earlier rule hid the 0-4 and 5-10 cells and
    # then the whole '0-17' row (49 referrals among 670 children) to protect that one adult; hiding
    # 'All ages' alone protects it as well.
    spec = TableSpec(
        dimensions=("age_band",),
        counts=("events",),
        totals=(("age_band", "All ages"),),
        subtotals=(
            ("age_band", "0-17", ("0-4", "5-10", "11-17")),
            ("age_band", "18+", ("18-64", "65+")),
        ),
    )
    raw = pl.DataFrame({"age_band": ["0-4", "5-10", "11-17", "18-64"], "events": [16, 16, 17, 1]})
    rule = DisclosureRule()
    controlled = control_table(raw, spec, rule)
    out = dict(controlled.select("age_band", "events").iter_rows())
    assert (out["0-4"], out["5-10"], out["11-17"], out["0-17"]) == (15, 15, 15, 50)
    assert sorted(band for band, value in out.items() if value is None) == [
        "18+",
        "18-64",
        "All ages",
    ]
    assert differencing_attack(controlled, spec, rule) == []
