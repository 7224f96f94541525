"""The match threshold, calibrated on a place's own scores instead of 0.9 everywhere.

Splink's match probabilities assume the comparisons are independent given the match status,
and on real data they are not: twins and siblings share a family name, a postcode, an address and
often a date of birth, so pairs of relatives score probabilities of 0.8 to 0.98 while few of them
are the same person. The probabilities are over-confident near the boundary and no single cut-off
suits every place. What is stable is the shape of the scores: the blocked pairs form humps of
match weight, strangers on the left, the same people on the right (and, in places with many
families, relatives in between), with few pairs between the relatives and the same people.

The threshold is put in that valley, found with nothing tuned by eye (issue 17):

- **where**: between even odds (match weight 0: no place links on less) and :data:`HIGHEST`
  (0.999, +10 bits: odds of a thousand to one), or the peak of the same-person hump (the most
  pairs at a positive weight) if that is lower, since a valley lies between humps. Relatives
  score up to about +6 bits while mostly not the same person, so the valley above them lies at +6
  to +8 bits, past the 0.99 (+6.6 bits) this search once stopped at; above +10 bits a dip in the
  counts separates kinds of true matches (with and without a shared address, say), not
  strangers from the same people;
- **how low**: pairs are counted within :data:`SMOOTH_BITS` bits of each one-bit step, and every
  step whose count is within Poisson noise of the lowest count *m* (at most ``m + 2√m + 1``, two
  standard deviations of a count, plus one pair) is the valley floor, since counts of a handful of
  pairs differ by chance;
- **which stretch**: of several stretches of floor, the highest, and its middle: a wrong link
  merges whole persons (and every record of both), a missed one splits off one record, so ties go
  to fewer links.

With fewer than :data:`MIN_PAIRS` scored pairs, no pair on one side of even odds, or no valley
(the peak is within noise of the floor: one hump), the threshold stays :data:`DEFAULT`.

It is calibrated once, on the scores of the run that trained the model, and saved with it, so
the threshold changes only on retraining; ``PLACELINK_LINKAGE_THRESHOLD`` overrides it.
"""

from __future__ import annotations

import math

import numpy as np

LOWEST = 0.5  # never link on less than even odds
HIGHEST = 0.999  # the valley is not looked for above +10 bits (see the module docstring)
# A place whose scores have no valley (too few pairs to tell, or one hump) keeps the earlier
# fixed threshold.
DEFAULT = 0.9
BIN_BITS = 1.0
SMOOTH_BITS = 3  # pairs are counted over three one-bit steps
MIN_PAIRS = 200

METHOD = "valley of the match-weight distribution of the training run's scored pairs"

# The valley is looked for from the one-bit step above even odds, each step counted with its
# neighbours, so nothing below -1 bit moves the threshold: scoring for calibration keeps only
# the pairs from this weight up (a fifth of a chance, with a bit to spare). At 10M people the
# pairs below it are nearly all the blocked pairs (strangers), and keeping them all filled the
# disk (docs/benchmarks.md).
SCORED_FROM_WEIGHT = -2.0


def probability(match_weight: float) -> float:
    return 1.0 / (1.0 + 2.0**-match_weight)


def calibrate(match_weights: np.ndarray) -> tuple[float, str]:
    """The threshold for a model, from the match weights of every pair it scored, and how
    (see the module docstring): the middle of the highest stretch of the valley floor between
    even odds and the peak of the same-person hump (at most :data:`HIGHEST`)."""
    weights = match_weights[np.isfinite(match_weights)]
    if _too_few(weights):
        return DEFAULT, f"default {DEFAULT} (too few scored pairs to calibrate)"
    low, high = math.floor(weights.min()), math.ceil(weights.max()) + BIN_BITS
    counts, edges = np.histogram(weights, bins=np.arange(low, high + BIN_BITS, BIN_BITS))
    pairs = np.convolve(counts, np.ones(SMOOTH_BITS), mode="same")
    centres = (edges[:-1] + edges[1:]) / 2
    above = np.flatnonzero(centres >= _weight(LOWEST))
    peak = above[np.argmax(pairs[above])]
    window = above[(above <= peak) & (centres[above] <= _weight(HIGHEST))]
    lowest = pairs[window].min()
    noise = 2 * math.sqrt(lowest) + 1
    if pairs[peak] <= lowest + noise:
        return DEFAULT, f"default {DEFAULT} (no valley between strangers and the same people)"
    floor = window[pairs[window] <= lowest + noise]
    top = floor[-1]
    start = top
    while start - 1 in floor:
        start -= 1
    valley = (centres[start] + centres[top]) / 2
    threshold = max(LOWEST, probability(valley))
    return float(round(threshold, 4)), f"{METHOD} (match weight {float(valley):+.1f})"


def _too_few(weights: np.ndarray) -> bool:
    return len(weights) < MIN_PAIRS or not (weights > 0).any() or not (weights < 0).any()


def needs_every_pair(kept_weights: np.ndarray) -> bool:
    """Whether :func:`calibrate` on the pairs kept from :data:`SCORED_FROM_WEIGHT` up could
    decide otherwise than on every scored pair: only where the kept pairs are too few or none is
    below even odds (a small place), so the caller scores every pair again. Otherwise the counts
    it reads are the same, and so is the threshold."""
    return _too_few(kept_weights[np.isfinite(kept_weights)])


def _weight(p: float) -> float:
    return math.log2(p / (1 - p))
