"""The match threshold is calibrated on the scores, saved with the model, and overridable."""

import numpy as np

from pipelines.linkage.threshold import DEFAULT, LOWEST, calibrate, probability


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
