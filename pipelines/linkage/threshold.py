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
  (0.9999, +13.3 bits: odds of ten thousand to one), or the peak of the same-person hump (the
  most pairs at a positive weight) if that is lower, since a valley lies between humps. Relatives
  score up to about +6 bits while mostly not the same person at a few thousand people, so the
  valley above them lies at +6 to +8 bits, past the 0.99 (+6.6 bits) this search once stopped
  at; their hump moves up as the place grows (to +9 bits at 32,000 people, the valley above it
  to +10 to +11 bits, past the +10 bits this search stopped at until 3 December 2026); above
  about +13 bits a dip in the counts separates kinds of true matches (with and without a
  shared address, say), not strangers from the same people;
- **which dip**: pairs are counted within :data:`SMOOTH_BITS` bits of each one-bit step; a
  valley is a step whose count *m* is below the highest count *h* on each side of it (before
  the counts fall below *m* again: its two hills) by more than chance, ``h - m > 2√(h + m)``
  (two standard deviations of the difference of two Poisson counts), since counts of a
  handful of pairs differ by chance. Of several valleys, the **highest**: a wrong link merges
  whole persons (and every record of both), a missed one splits off one record, so the choice
  goes to fewer links. The depth of a valley is measured against its own hills, never against
  the lowest count elsewhere: the thin valley above the relatives (a few pairs per bit) and
  the dip where the strangers' tail meets the relatives (near even odds) both grow with the
  population, and which of the two holds fewer pairs is chance. Until 3 December 2026 the
  floor was every step within noise of the single lowest count and the highest stretch of it
  was taken; as a place grew, the noise allowance (growing with √n) shrank against the counts
  (growing with n) and the threshold could drop to the dip near even odds (0.74-0.89 instead
  of about 0.998 on a stress profile at 16,000 people: the relatives linked);
- **where in it**: the middle of the stretch of steps around the valley's lowest step that are
  within noise of it (at most ``m + 2√m + 1``: two standard deviations of a count, plus one
  pair).

With fewer than :data:`MIN_PAIRS` scored pairs, no pair on one side of even odds, or no valley
(no step with a rise beyond noise on both sides: one hump), the threshold stays :data:`DEFAULT`.

It is calibrated once, on the scores of the run that trained the model, and saved with it, so
the threshold changes only on retraining; ``PLACELINK_LINKAGE_THRESHOLD`` overrides it.
"""

from __future__ import annotations

import math

import numpy as np

LOWEST = 0.5  # never link on less than even odds
HIGHEST = 0.9999  # the valley is not looked for above +13.3 bits (see the module docstring)
# A place whose scores have no valley (too few pairs to tell, or one hump) keeps the earlier
# fixed threshold.
DEFAULT = 0.9
BIN_BITS = 1.0
SMOOTH_BITS = 3  # pairs are counted over three one-bit steps
MIN_PAIRS = 200

METHOD = "valley of the match-weight distribution of the training run's scored pairs"


def probability(match_weight: float) -> float:
    return 1.0 / (1.0 + 2.0**-match_weight)


def calibrate(match_weights: np.ndarray) -> tuple[float, str]:
    """The threshold for a model, from the match weights of every pair it scored, and how
    (see the module docstring): the middle of the highest valley deeper than noise between
    even odds and the peak of the same-person hump (at most :data:`HIGHEST`)."""
    weights = match_weights[np.isfinite(match_weights)]
    if len(weights) < MIN_PAIRS or not (weights > 0).any() or not (weights < 0).any():
        return DEFAULT, f"default {DEFAULT} (too few scored pairs to calibrate)"
    low, high = math.floor(weights.min()), math.ceil(weights.max()) + BIN_BITS
    counts, edges = np.histogram(weights, bins=np.arange(low, high + BIN_BITS, BIN_BITS))
    pairs = np.convolve(counts, np.ones(SMOOTH_BITS), mode="same")
    centres = (edges[:-1] + edges[1:]) / 2
    above = np.flatnonzero(centres >= _weight(LOWEST))
    peak = above[np.argmax(pairs[above])]
    window = above[(above <= peak) & (centres[above] <= _weight(HIGHEST))]
    bottom = _highest_valley(pairs, window, peak)
    if bottom is None:
        return DEFAULT, f"default {DEFAULT} (no valley between strangers and the same people)"
    floor = pairs <= pairs[bottom] + _noise(pairs[bottom])
    start = top = bottom
    while start - 1 >= window[0] and floor[start - 1]:
        start -= 1
    while top + 1 <= window[-1] and floor[top + 1]:
        top += 1
    valley = (centres[start] + centres[top]) / 2
    threshold = max(LOWEST, probability(valley))
    return float(round(threshold, 4)), f"{METHOD} (match weight {float(valley):+.1f})"


def _noise(count: float) -> float:
    """Two standard deviations of a Poisson count, plus one pair."""
    return 2 * math.sqrt(count) + 1


def _apart(hill: float, bottom: float) -> bool:
    """Whether two counts differ by more than chance: by more than two standard deviations of
    the difference of two Poisson counts."""
    return hill - bottom > 2 * math.sqrt(hill + bottom)


def _highest_valley(pairs: np.ndarray, window: np.ndarray, peak: int) -> int | None:
    """The highest step of ``window`` that is the bottom of a valley deeper than noise: the
    counts rise beyond chance (:func:`_apart`) on both sides (to the left over all steps, to
    the right up to ``peak``) before falling below it. None if there is none."""
    for step in window[::-1]:
        count = pairs[step]
        left = step - 1
        while left >= 0 and pairs[left] >= count:
            left -= 1
        right = step + 1
        while right <= peak and pairs[right] >= count:
            right += 1
        if right <= peak:  # the counts fall lower before the peak: not a bottom
            continue
        rise_left = pairs[left + 1 : step].max(initial=count)
        rise_right = pairs[step + 1 : right].max(initial=count)
        if _apart(rise_left, count) and _apart(rise_right, count):
            return int(step)
    return None


def _weight(p: float) -> float:
    return math.log2(p / (1 - p))
