"""The match threshold is calibrated on the scores, saved with the model, and overridable."""

import numpy as np

from pipelines.linkage.threshold import DEFAULT, LOWEST, calibrate, probability


def two_humps(valley_at: float, seed: int = 3) -> np.ndarray:
    """Strangers around -15 bits, matches around +20, a few pairs in between except near ``valley_at``."""
    rng = np.random.default_rng(seed)
    between = rng.uniform(-2, 14, 600)  # runs into the matches: no second valley above the gap
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


def from_counts(counts_from_minus_5: list[int], strangers: int) -> np.ndarray:
    """Match weights with these counts per one-bit step from -5 bits up (spread evenly inside
    each step), and ``strangers`` pairs spread over -30 to -5 bits."""
    weights = [np.linspace(-30, -5, strangers, endpoint=False)]
    for step, count in enumerate(counts_from_minus_5, start=-5):
        weights.append(step + (np.arange(count) + 0.5) / max(count, 1))
    return np.concatenate(weights)


# Counts per one-bit step of the scored pairs' match weights (counts only) from the bench's
# `transposed_names` profile on development seed 101: clear text at 16,000 people, tokens at
# 32,000. Strangers' tail and relatives meet in a dip near even odds (+1 to +3 bits); the
# relatives' hump is at +4 to +9 bits; the thin valley above it is at +8 to +9 bits (16,000)
# or +10 to +11 (32,000); then the same people.
CLEAR_16K = [39, 28, 38, 41, 43, 12, 11, 9, 13, 29, 17, 40, 32, 12, 3, 44, 22, 79, 34, 39, 42, 26,
             27, 24, 29, 28, 57, 111, 319, 134, 271, 259, 287, 281, 242, 234, 178, 201, 135, 164,
             337, 905, 502, 786, 901, 868, 743, 592, 416, 245, 93, 45, 11, 2]  # fmt: skip
TOKENS_32K = [71, 66, 54, 66, 71, 62, 26, 27, 41, 22, 30, 69, 68, 64, 44, 61, 22, 111, 63, 96, 129,
              77, 71, 72, 92, 100, 93, 110, 139, 453, 461, 368, 739, 556, 540, 567, 513, 372, 409,
              474, 411, 329, 387, 860, 2467, 1447, 1615, 1402, 1314, 1085, 726, 417, 231, 104, 24,
              5, 4]  # fmt: skip


def test_the_valley_above_the_relatives_is_taken_however_many_people():
    # Before December the floor was every step within Poisson noise of the single lowest count:
    # with more people the counts grow faster than the noise allowance, the dip near even odds
    # held fewer pairs than the thin valley above the relatives and the threshold fell into it
    # (0.80 on the 16,000 clear text, 0.92 on the 32,000 tokens: the relatives linked).
    threshold, method = calibrate(from_counts(CLEAR_16K, strangers=3_807))
    assert probability(8) <= threshold <= probability(10.5), method
    # At 32,000 the relatives reach +9 bits and the valley above them is at +10 to +11 bits.
    threshold, method = calibrate(from_counts(TOKENS_32K, strangers=11_909))
    assert probability(10) <= threshold <= probability(12), method
    assert threshold < 1.0  # some pairs still link


# Tokens at 16,000 people, development seed 202: past the valley at +9 bits, the same people's
# counts dip again at +15 to +16 bits (between kinds of true matches).
TOKENS_16K = [20, 37, 38, 26, 30, 16, 11, 20, 10, 15, 24, 28, 22, 18, 23, 8, 57, 58, 27, 40, 36,
              43, 36, 43, 60, 32, 53, 296, 91, 135, 289, 267, 291, 268, 265, 231, 216, 236, 289,
              207, 263, 944, 462, 690, 832, 828, 770, 601, 436, 270, 123, 28, 10, 5]  # fmt: skip


def test_a_dip_among_the_same_people_is_not_the_valley():
    # The valley is looked for up to +13.3 bits only: the highest dip above that would link
    # only the pairs scoring like exact copies (a threshold of 1.0 links nothing at all).
    threshold, method = calibrate(from_counts(TOKENS_16K, strangers=3_881))
    assert probability(8) <= threshold <= probability(10.5), method
