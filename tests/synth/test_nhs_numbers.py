"""Synthetic NHS numbers agree with the NHS mod-11 rule as python-stdnum implements it."""

from __future__ import annotations

import numpy as np
from stdnum.gb import nhs

from pipelines.tooling.synth.nhs_numbers import check_digits, draw_nhs_numbers, spoil_check_digit


def test_check_digit_matches_stdnum_including_unusable_bases():
    bases = np.random.default_rng(0).integers(900_000_000, 1_000_000_000, 2_000)
    for base, check in zip(bases.tolist(), check_digits(bases).tolist()):
        valid_digits = [d for d in range(10) if nhs.is_valid(f"{base}{d}")]
        assert valid_digits == ([] if check == 10 else [check])


def test_drawn_numbers_are_valid_distinct_and_never_real_ranges():
    numbers = draw_nhs_numbers(np.random.default_rng(1), 5_000)
    assert len(set(numbers.tolist())) == 5_000
    assert all(nhs.is_valid(str(n)) for n in numbers.tolist())
    assert (numbers // 1_000_000_000 == 9).all()


def test_spoiled_numbers_fail_the_check():
    numbers = draw_nhs_numbers(np.random.default_rng(2), 500)
    shift = np.random.default_rng(3).integers(1, 10, 500)
    assert not any(nhs.is_valid(str(n)) for n in spoil_check_digit(numbers, shift).tolist())
