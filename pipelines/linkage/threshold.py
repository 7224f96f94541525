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
  to +8 bits; above +10 bits a dip in the counts separates kinds of true matches (with and
  without a shared address, say), not strangers from the same people;
- **the pairs' density**: each pair is spread over a normal curve of :data:`BANDWIDTH_BITS` (a
  kernel density, read every :data:`STEP_BITS`), counted as pairs per :data:`PER_BITS` bits. A
  histogram of one-bit steps moved a pair from one step to the next when a fresh linkage key
  moved its weight by a fraction of a bit; the density moves by a fraction of a pair;
- **the dips**: every local minimum of the density in the window (and either end of the window
  if the density rises from it) is a dip; a dip counts as the valley floor when its density is
  within :data:`NOISE_SDS` standard deviations of a Poisson count of the lowest dip's *m* pairs
  (at most ``m + 3√m + 1``): counts of a handful of pairs differ by chance, and a dip above the
  relatives with a few more pairs than one near even odds is no shallower;
- **which dip**: the highest of those, at its lowest point: a wrong link merges whole persons
  (and every record of both), a missed one splits off one record, so ties go to fewer links.

Until December 2026 the floor was every one-bit step within two standard deviations of the
lowest, and the threshold the middle of its highest stretch: whether the stretch above the
relatives qualified turned on a single pair, so a fresh key flipped the threshold between the dip
near even odds and the one above the relatives (docs/linkage-benchmark.md).

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
BANDWIDTH_BITS = 1.0  # each pair's weight is spread over a normal curve of this deviation
STEP_BITS = 0.1  # the density is read every tenth of a bit
PER_BITS = 3  # and counted as pairs per three bits
NOISE_SDS = 3  # a dip within three standard deviations of the lowest is as deep
MIN_PAIRS = 200

METHOD = "valley of the match-weight distribution of the training run's scored pairs"


def probability(match_weight: float) -> float:
    return 1.0 / (1.0 + 2.0**-match_weight)


def calibrate(match_weights: np.ndarray) -> tuple[float, str]:
    """The threshold for a model, from the match weights of every pair it scored, and how
    (see the module docstring): the highest dip of the pairs' density between even odds and the
    peak of the same-person hump (at most :data:`HIGHEST`) that is as deep as the lowest, within
    noise."""
    weights = match_weights[np.isfinite(match_weights)]
    if len(weights) < MIN_PAIRS or not (weights > 0).any() or not (weights < 0).any():
        return DEFAULT, f"default {DEFAULT} (too few scored pairs to calibrate)"
    at, pairs = density(weights)
    above = np.flatnonzero(at >= _weight(LOWEST))
    peak = above[np.argmax(pairs[above])]
    window = above[(above <= peak) & (at[above] <= _weight(HIGHEST))]
    lowest = pairs[window].min()
    noise = NOISE_SDS * math.sqrt(lowest) + 1
    if pairs[peak] <= lowest + noise:
        return DEFAULT, f"default {DEFAULT} (no valley between strangers and the same people)"
    deep = [i for i in _dips(pairs[window]) if pairs[window][i] <= lowest + noise]
    valley = at[window][deep[-1]]
    threshold = max(LOWEST, probability(valley))
    return float(round(threshold, 4)), f"{METHOD} (match weight {float(valley):+.1f})"


def density(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs' kernel density (pairs per :data:`PER_BITS` bits) every :data:`STEP_BITS`,
    from a histogram of tenth-of-a-bit steps smoothed by the normal curve, and where it is read."""
    reach = 4 * BANDWIDTH_BITS
    low = math.floor(min(weights.min(), 0.0) - reach)
    high = math.ceil(weights.max() + reach)
    edges = np.arange(low, high + STEP_BITS / 2, STEP_BITS)
    counts, edges = np.histogram(weights, bins=edges)
    offsets = np.arange(-reach, reach + STEP_BITS / 2, STEP_BITS)
    kernel = np.exp(-0.5 * (offsets / BANDWIDTH_BITS) ** 2)
    kernel /= kernel.sum()
    pairs = np.convolve(counts, kernel, mode="same") * (PER_BITS / STEP_BITS)
    return (edges[:-1] + edges[1:]) / 2, pairs


def _dips(pairs: np.ndarray) -> list[int]:
    """Where ``pairs`` has a local minimum (the right end of a level stretch), and either end if
    the density rises from it; the lowest point is always one of them."""
    if len(pairs) == 1:
        return [0]
    inner = np.flatnonzero((pairs[1:-1] <= pairs[:-2]) & (pairs[1:-1] < pairs[2:])) + 1
    dips = [int(i) for i in inner]
    if pairs[0] <= pairs[1]:
        dips.insert(0, 0)
    if pairs[-1] <= pairs[-2]:
        dips.append(len(pairs) - 1)
    lowest = int(np.argmin(pairs))
    return sorted(set(dips) | {lowest})


def _weight(p: float) -> float:
    return math.log2(p / (1 - p))
