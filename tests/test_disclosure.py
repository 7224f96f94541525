import polars as pl
import pytest

from pipelines.disclosure import DisclosureRule, Rate, suppress_small_counts, unsafe_cells


def test_small_counts_redacted_and_others_rounded():
    table = pl.DataFrame({"group": list("abcdef"), "people": [0, 1, 7, 8, 12, 103]})
    out = suppress_small_counts(table, ["people"], [])
    assert out["people"].to_list() == [0, None, None, 10, 10, 105]
    assert unsafe_cells(out, ["people"]) == 0


def test_rates_use_unrounded_counts_and_hide_with_their_inputs():
    table = pl.DataFrame({"people": [40, 40, 5], "events": [12, 3, 20]})
    out = suppress_small_counts(table, ["people", "events"], [Rate.parse("per_100 = events / people * 100")])
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
    table = pl.DataFrame({"people": [40], "events": [decimal.Decimal(13)]},
                         schema={"people": pl.Int64, "events": pl.Decimal(38, 0)})
    out = suppress_small_counts(table, ["people", "events"], [Rate.parse("per_100 = events / people * 100")])
    assert out["per_100"].to_list() == [32.5]
