"""Synthetic NHS numbers with a valid mod-11 check digit.

All numbers start with 9: England and Wales issue 400-499 and 600-799,
Northern Ireland 320-399, and Scottish CHI numbers start with a day of month,
so a 9xx number never belongs to a real patient.
"""

from __future__ import annotations

import numpy as np

_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)  # weights for the nine base digits
_FIRST_BASE = 900_000_000
_BASES = 100_000_000


def check_digits(bases: np.ndarray) -> np.ndarray:
    """Mod-11 check digit for 9-digit bases; 10 means the base cannot be used.

    Same rule as `stdnum.gb.nhs` (the full number's weighted sum is 0 mod 11);
    the tests cross-check with stdnum.
    """
    digits = (bases[:, None] // 10 ** np.arange(8, -1, -1, dtype=np.int64)) % 10
    remainder = (digits * _WEIGHTS).sum(axis=1) % 11
    check = 11 - remainder
    return np.where(check == 11, 0, check)


def draw_nhs_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct valid 10-digit NHS numbers (int64), in draw order."""
    chosen = np.empty(0, dtype=np.int64)
    while len(chosen) < n:
        bases = _FIRST_BASE + rng.integers(0, _BASES, size=int((n - len(chosen)) * 1.15) + 16)
        check = check_digits(bases)
        numbers = bases[check != 10] * 10 + check[check != 10]
        candidates = np.concatenate([chosen, numbers])
        _, first_seen = np.unique(candidates, return_index=True)
        chosen = candidates[np.sort(first_seen)]
    return chosen[:n]


def spoil_check_digit(numbers: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The same numbers with a different (so invalid) check digit; shift in 1..9."""
    last = numbers % 10
    return numbers - last + (last + shift) % 10
