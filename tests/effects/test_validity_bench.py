"""The machinery of `placelink bench validity` on one tiny place (the benchmark itself is not a test)."""

from __future__ import annotations

import pytest

from pipelines.tooling.bench.validity import markdown, one_place, summarise


def test_one_place_gives_each_target_an_interval_and_its_truth(tmp_path):
    found = one_place(seed=3, people=1500, effect=-0.3, enrolment_share=0.2, root=tmp_path)
    by_target = {(e.target, e.measure): e for e in found}
    children = by_target["A&E 0-17", "rate_ratio"]
    # the planted effect is the children's truth; nothing is planted on admissions
    assert children.truth == pytest.approx(0.7)
    assert by_target["emergency admissions 0-17 (null)", "rate_difference"].truth == 0.0
    assert by_target["A&E 0-17", "rate_difference"].truth < 0
    assert children.estimate is not None and children.low < children.estimate < children.high
    assert children.programme_families > 10
    assert not any(tmp_path.iterdir())  # each place is removed once estimated
    table = markdown(summarise(found), 1500, 0.2, 1.0)
    assert "| -0.30 | A&E 0-17 | rate_ratio | 1 |" in table
    assert children.covered == (children.low <= 0.7 <= children.high)
