"""The match threshold, calibrated on a place's own scores instead of 0.9 everywhere.

Splink's match probabilities assume the comparisons are independent given the match status,
and on real data they are not (a family shares a surname, a postcode and often a date of birth
pattern), so the probabilities are over-confident near the boundary and no single cut-off suits
every place. What is stable is the shape of the scores: the blocked pairs form two humps of
match weight, strangers on the left and the same people on the right, with few pairs in
between. The threshold is put where that valley is lowest between probabilities
:data:`LOWEST` and :data:`HIGHEST` (match weights 0 to +6.6 bits; one-bit bins smoothed over
three; bins within a quarter of the lowest count are the floor, and of several stretches the
highest), where moving it either way changes fewest links and
no place links on less than even odds.

It is calibrated once, on the scores of the run that trained the model, and saved with it, so
the threshold changes only on retraining; ``PLACELINK_LINKAGE_THRESHOLD`` overrides it.
"""

from __future__ import annotations

import math

import numpy as np

LOWEST, HIGHEST = 0.5, 0.99
# A place whose scores have no valley (too few pairs to tell) keeps the earlier fixed threshold.
DEFAULT = 0.9
BIN_BITS = 1.0
MIN_PAIRS = 200

METHOD = "valley of the match-weight distribution of the training run's scored pairs"


def probability(match_weight: float) -> float:
    return 1.0 / (1.0 + 2.0**-match_weight)


def calibrate(match_weights: np.ndarray) -> tuple[float, str]:
    """The threshold for a model, from the match weights of every pair it scored, and how.

    The valley is looked for between the match weights of :data:`LOWEST` and :data:`HIGHEST`
    (0 and +6.6 bits): the lowest smoothed count of pairs there, the middle of its stretch."""
    weights = match_weights[np.isfinite(match_weights)]
    if len(weights) < MIN_PAIRS or not (weights > 0).any() or not (weights < 0).any():
        return DEFAULT, f"default {DEFAULT} (too few scored pairs to calibrate)"
    low, high = math.floor(weights.min()), math.ceil(weights.max()) + BIN_BITS
    counts, edges = np.histogram(weights, bins=np.arange(low, high + BIN_BITS, BIN_BITS))
    smooth = np.convolve(counts, np.ones(3) / 3, mode="same")
    centres = (edges[:-1] + edges[1:]) / 2
    window = np.flatnonzero((centres >= _weight(LOWEST)) & (centres <= _weight(HIGHEST)))
    if len(window) == 0:
        return DEFAULT, f"default {DEFAULT} (no scores between {LOWEST} and {HIGHEST})"
    lowest = smooth[window].min()
    # Counts in the valley are small and noisy: bins within a quarter (or one pair) of the lowest
    # count are taken as the floor.
    floor = window[smooth[window] <= max(lowest * 1.25, lowest + 1.0)]
    # Of several equally low stretches, the highest: a wrong link merges whole persons (and
    # every record of both), a missed one splits off one record, so ties go to fewer links.
    run_start = floor[-1]
    while run_start - 1 in floor:
        run_start -= 1
    valley = (centres[run_start] + centres[floor[-1]]) / 2
    threshold = min(HIGHEST, max(LOWEST, probability(valley)))
    return float(round(threshold, 4)), f"{METHOD} (match weight {float(valley):+.1f})"


def _weight(p: float) -> float:
    return math.log2(p / (1 - p))
