"""The match threshold is calibrated on the scores, saved with the model, and overridable."""

import numpy as np

from pipelines.linkage.threshold import DEFAULT, HIGHEST, LOWEST, calibrate, probability


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


def test_the_threshold_stays_between_even_odds_and_0_99():
    for valley in (-10.0, 15.0):
        threshold, _ = calibrate(two_humps(valley_at=valley))
        assert LOWEST <= threshold <= HIGHEST


def test_too_few_scored_pairs_keep_the_default():
    threshold, method = calibrate(np.array([-3.0, 12.0, 14.0]))
    assert threshold == DEFAULT and "too few" in method
