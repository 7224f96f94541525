"""The match threshold is calibrated on the scores, saved with the model, and overridable."""

import numpy as np
import pytest

from pipelines.linkage.threshold import (
    DEFAULT,
    LOWEST,
    MIN_PAIRS,
    SCORED_FROM_WEIGHT,
    calibrate,
    needs_every_pair,
    probability,
)


def two_humps(valley_at: float, seed: int = 3) -> np.ndarray:
    """Strangers around -15 bits, matches around +20, a few pairs in between except near ``valley_at``."""
    rng = np.random.default_rng(seed)
    between = rng.uniform(-2, 9, 400)
    between = between[np.abs(between - valley_at) > 1.5]
    return np.concatenate([rng.normal(-15, 4, 20_000), rng.normal(20, 4, 5_000), between])


def test_the_threshold_sits_where_fewest_pairs_score():
    threshold, method = calibrate(two_humps(valley_at=4.0))
    assert isinstance(threshold, float) and type(threshold) is float  # Dagster metadata takes it
    assert probability(2.5) <= threshold <= probability(5.5)
    assert "valley" in method


def test_two_clean_humps_put_the_threshold_between_them_never_below_even_odds():
    rng = np.random.default_rng(1)
    weights = np.concatenate([rng.normal(-15, 3, 8_000), rng.normal(25, 3, 2_000)])
    threshold, _ = calibrate(weights)
    # the empty stretch between the humps runs from about -5 to +15 bits; even odds cut it at 0
    assert probability(3) <= threshold <= probability(12)
    # a valley among the strangers (below even odds) is never used
    threshold, _ = calibrate(two_humps(valley_at=-10.0))
    assert threshold >= LOWEST


def test_the_valley_above_a_hump_of_relatives_is_taken():
    # Twins and siblings: a small hump at +2..+5 bits (probabilities 0.8-0.97) of pairs that are
    # mostly not the same person, a thin valley at +7, then the same people from +9 up. A handful
    # of pairs near even odds make a dip as low as the real valley's, within chance.
    rng = np.random.default_rng(7)
    weights = np.concatenate(
        [
            rng.normal(-18, 5, 3_000),
            rng.uniform(-1, 1, 6),
            rng.normal(3.5, 0.8, 60),
            rng.uniform(6.5, 7.5, 4),
            rng.normal(25, 5, 2_500),
        ]
    )
    threshold, _ = calibrate(weights)
    assert probability(6) <= threshold <= probability(9)  # above the relatives, below the matches


def test_a_heavy_left_tail_does_not_pull_the_threshold_into_it():
    # Strangers' scores with a heavy tail: most disagree on everything (down to -80 bits), and a
    # long thin tail of pairs sharing a surname and a postcode reaches up to +4 bits; the same people
    # score around +20. The threshold is past the tail, in the empty stretch before the matches.
    rng = np.random.default_rng(11)
    strangers = np.concatenate(
        [-10 - rng.exponential(15.0, 6_000), -10 + 14 * rng.beta(1, 4, 3_000)]
    )
    weights = np.concatenate([strangers, rng.normal(20, 3, 1_500)])
    threshold, _ = calibrate(weights)
    assert probability(5) <= threshold <= probability(13)


def test_one_hump_has_no_valley_and_keeps_the_default():
    rng = np.random.default_rng(5)
    threshold, method = calibrate(rng.normal(0, 6, 5_000))
    assert threshold == DEFAULT and "no valley" in method


def test_too_few_scored_pairs_keep_the_default():
    threshold, method = calibrate(np.array([-3.0, 12.0, 14.0]))
    assert threshold == DEFAULT and "too few" in method
    rng = np.random.default_rng(2)
    few = np.concatenate([rng.normal(-15, 3, 120), rng.normal(25, 3, 40)])  # two humps, 160 pairs
    assert calibrate(few) == (DEFAULT, f"default {DEFAULT} (too few scored pairs to calibrate)")
    only_strangers = -np.abs(rng.normal(10, 3, 1_000))
    assert calibrate(only_strangers)[0] == DEFAULT


# Scored pairs per one-bit step of match weight, of a stress profile's training run (baseline,
# development seed 13, tokens): a dip near even odds, relatives at +3 to +6 bits (29 of 31 of them
# different people), a thin valley at +6 to +10, and the same people from there up.
RELATIVES = {
    **{-3: 21, -2: 8, -1: 2, 0: 3, 1: 1, 2: 0, 3: 8, 4: 11, 5: 12, 6: 2, 7: 5, 8: 3, 9: 3},
    **{10: 5, 11: 7, 12: 8, 13: 14, 14: 9, 15: 8, 16: 11, 17: 20, 18: 15, 19: 16, 20: 27},
    **{21: 32, 22: 37, 23: 64, 24: 72, 25: 70, 26: 54, 27: 100, 28: 74, 29: 92},
}
# The same for the B-like profile (development seed 12): the pairs at +3 to +6 bits are mostly
# the same people with a name or an address changed, and a shallow dip at +7 to +9 bits lies
# among the same people.
TRUE_MATCHES_IN_BETWEEN = {
    **{-3: 5, -2: 8, -1: 2, 0: 8, 1: 16, 2: 27, 3: 71, 4: 64, 5: 67, 6: 44, 7: 16, 8: 12},
    **{9: 72, 10: 91, 11: 111, 12: 150, 13: 114, 14: 228, 15: 308, 16: 504, 17: 609},
    **{18: 510, 19: 514, 20: 382, 21: 220, 22: 56, 23: 11},
}


def scored_pairs(per_bit: dict[int, int], strangers: int, key: int | None = None) -> np.ndarray:
    """Match weights with ``per_bit`` pairs in each one-bit step, ``strangers`` more below it and
    as many above it as in its last step; ``key`` moves every weight a little, as a fresh linkage
    key moves the tokens' collisions (a normal shift of a quarter of a bit)."""
    rng = np.random.default_rng(0)
    lowest, highest = min(per_bit), max(per_bit) + 1
    weights = np.concatenate(
        [np.linspace(b, b + 1, n, endpoint=False) + 0.5 / n for b, n in per_bit.items() if n]
        + [
            lowest - rng.exponential(10, strangers),
            highest + rng.exponential(5, 20 * per_bit[highest - 1]),
        ]
    )
    if key is not None:
        weights += np.random.default_rng(key).normal(0, 0.25, len(weights))
    return weights


@pytest.mark.xfail(
    strict=True,
    reason="known (issue 17): whether the thin valley above the relatives is within noise of the "
    "dip near even odds turns on a pair, so the key flips the threshold between them",
)
def test_a_fresh_linkage_key_does_not_move_the_threshold_below_the_relatives():
    # With one-bit steps and the highest step within two standard deviations of the lowest, the
    # thin valley above the relatives is the floor or not by a pair: 11 of these 21 keys put the
    # threshold near even odds (+1 to +1.5 bits), linking the relatives. A rule that fixed this on
    # the development seeds cost F1 on held-out ones (docs/linkage-benchmark.md).
    thresholds = [calibrate(scored_pairs(RELATIVES, 600, key))[0] for key in [None, *range(20)]]
    assert min(thresholds) >= probability(7.5)  # above the relatives, every key
    assert max(thresholds) <= probability(10)  # below the same people
    spread = _weight(max(thresholds)) - _weight(min(thresholds))
    assert spread <= 1.0  # within a bit of each other


def test_a_shallow_dip_among_true_matches_is_not_taken():
    # The dip near even odds holds 26 pairs per three bits, the one at +7 to +9 bits 72: not
    # within noise of it, so the threshold stays near even odds whatever the key, and the pairs
    # in between (mostly the same people) link.
    for key in [None, *range(10)]:
        threshold, method = calibrate(scored_pairs(TRUE_MATCHES_IN_BETWEEN, 70, key))
        assert LOWEST <= threshold <= probability(2) and "valley" in method


def _weight(p: float) -> float:
    return float(np.log2(p / (1 - p)))


@pytest.mark.parametrize("seed", range(12))
def test_the_pairs_below_the_scoring_floor_never_move_the_threshold(seed):
    """Scoring for calibration keeps only the pairs from SCORED_FROM_WEIGHT up; on any mix of
    strangers, relatives and the same people the threshold is the one every pair gives."""
    rng = np.random.default_rng(seed)
    weights = np.concatenate(
        [
            rng.normal(rng.uniform(-25, -5), rng.uniform(2, 8), int(rng.integers(500, 20_000))),
            rng.normal(rng.uniform(0, 6), rng.uniform(0.5, 2), int(rng.integers(0, 300))),
            rng.uniform(-3, 12, int(rng.integers(0, 60))),
            rng.normal(rng.uniform(8, 25), rng.uniform(2, 6), int(rng.integers(200, 5_000))),
        ]
    )
    kept = weights[weights >= SCORED_FROM_WEIGHT]
    assert not needs_every_pair(kept)
    assert calibrate(kept) == calibrate(weights)


def test_a_small_place_is_scored_again_in_full_for_calibration():
    """Too few kept pairs, or none of them below even odds, could calibrate otherwise than every
    pair: the caller then scores every pair."""
    rng = np.random.default_rng(5)
    assert needs_every_pair(rng.normal(20, 3, MIN_PAIRS - 1))
    assert needs_every_pair(rng.uniform(0.5, 30, 5_000))  # nothing kept below even odds
    assert not needs_every_pair(np.concatenate([[-1.5], rng.uniform(0.5, 30, 5_000)]))
