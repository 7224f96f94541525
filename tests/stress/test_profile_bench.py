"""`placelink bench linkage --profile`: recall by name origin with 95% intervals, a population
size of one's own, and a clear-text reference without the name-swap evidence (issue 17)."""

import json

import duckdb
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.linkage.evaluation import PairwiseScores
from pipelines.tooling.bench.linkage_profiles import (
    NO_SWAP,
    recall_interval,
    recall_spread,
    reference_comparisons,
)

NAMES = frozenset(
    {"given_name_token", "family_name_token", "given_name_clear", "family_name_clear"}
)


def origin(true_pairs: int, recall: float) -> PairwiseScores:
    return PairwiseScores(
        records=2 * true_pairs,
        true_pairs=true_pairs,
        predicted_pairs=true_pairs,
        correct_pairs=round(recall * true_pairs),
    )


def test_recall_interval_holds_the_recall_and_narrows_with_more_pairs():
    few, many = recall_interval(origin(300, 0.98)), recall_interval(origin(30_000, 0.98))
    assert few[0] < 0.98 < few[1] and many[0] < 0.98 < many[1]
    assert many[1] - many[0] < (few[1] - few[0]) / 5
    # Wilson, not the normal approximation: never past 1 when every pair is found.
    # Every pair found: the interval reaches 1 (not 0.9999999999999999, below the recall it
    # should hold), and still says a few hundred pairs leave room below.
    low, high = recall_interval(origin(300, 1.0))
    assert high == 1.0 and low < 0.99


def test_a_one_point_gap_is_noise_at_a_profiles_size_and_real_at_a_hundred_times_it():
    spread, apart = recall_spread({"en_GB": origin(300, 0.99), "en_PK": origin(300, 0.98)})
    assert spread == pytest.approx(0.01, abs=0.002) and not apart
    spread, apart = recall_spread({"en_GB": origin(30_000, 0.99), "en_PK": origin(30_000, 0.98)})
    assert spread == pytest.approx(0.01, abs=0.0001) and apart


def first_level(comparison, left: dict, right: dict) -> str:
    """The label of the first level of a Splink comparison that holds for one pair of records."""
    con = duckdb.connect()
    columns = ", ".join(
        f"{value!r} AS {name}_{side}"
        for side, record in (("l", left), ("r", right))
        for name, value in record.items()
    )
    for level in comparison.create_comparison_dict("duckdb")["comparison_levels"]:
        if level["sql_condition"] == "ELSE":
            return "else"
        if con.execute(f"SELECT ({level['sql_condition']}) FROM (SELECT {columns})").fetchone()[0]:
            return level["label_for_charts"]
    raise AssertionError("no level holds")


def record(given: str, family: str) -> dict:
    return {
        "given_name_token": given,
        "family_name_token": family,
        "given_name_clear": given,
        "family_name_clear": family,
    }


def test_clear_text_without_swap_evidence_sees_transposed_names_as_different_names():
    left, right = record("AMARA", "OKAFOR"), record("OKAFOR", "AMARA")
    with_swap = reference_comparisons(NAMES)[0]
    without = reference_comparisons(NAMES, swap=False)[0]
    assert "reversed" in first_level(with_swap, left, right)
    assert first_level(without, left, right) == "else"
    # One name written in the other field is swap evidence too: gone without it.
    moved = record("OKAFOR", "OKAFOR-BELLO")
    assert first_level(with_swap, left, moved) == "one name found in the other field"
    assert first_level(without, left, moved) == "else"
    # Everything else is the same model: a typo is still a typo.
    typo = record("AMRA", "OKAFOR")
    assert first_level(with_swap, left, typo) == first_level(without, left, typo)


def test_one_population_size_for_the_profiles_not_several():
    result = CliRunner().invoke(
        main,
        ["bench", "linkage", "--profile", "baseline", "--people", "600", "--people", "900"],
    )
    assert result.exit_code != 0
    assert "--people" in result.output and "one" in result.output


@pytest.mark.slow
def test_a_swap_profile_at_a_chosen_size_reports_three_methods_with_intervals(tmp_path):
    out = tmp_path / "profiles.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "linkage",
            "--profile",
            "transposed_names",
            "--people",
            "700",
            "--seed",
            "3",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "clear, no swap" in result.output and "95% intervals apart?" in result.output
    (profile,) = json.loads(out.read_text())
    # 700 people, about 56% in both files and a few twice: about a thousand records, not ~6,000.
    assert 800 < profile["records"] < 1_300
    assert set(profile["methods"]) == {"tokens", "clear_text", NO_SWAP}
    for method in profile["methods"].values():
        assert set(method["by_origin"]) == {"en_GB", "en_IN", "en_NG", "en_PK", "pl_PL", "zh_CN"}
        for scores in method["by_origin"].values():
            low, high = scores["recall_95"]
            assert low <= scores["recall"] <= high
        recalls = [s["recall"] for s in method["by_origin"].values()]
        assert method["recall_spread"] == pytest.approx(max(recalls) - min(recalls))
