"""The stage clock the benchmark reads: time goes to the innermost stage, and nothing is
measured (or broken) when no clock runs."""

import subprocess
import sys

import pytest

from pipelines.core.stages import StageClock, resident_mb, stage
from pipelines.tooling.bench.stages import (
    HUB_STAGES,
    LINKAGE_CORE,
    StageFigures,
    StageRun,
    format_table,
    nlogn_ratio,
    summarise,
)


class FakeTimer:
    """Seconds that pass only when the test says so: the clock's arithmetic, not the machine's speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_nested_stages_add_up_to_the_wall_time_without_counting_twice():
    timer = FakeTimer()
    with StageClock(timer=timer) as clock:
        with stage("outer"):
            timer.advance(0.05)
            with stage("inner"):
                timer.advance(0.1)
            timer.advance(0.05)
        timer.advance(7.0)  # between stages: nobody's time
        with stage("inner"):
            timer.advance(0.02)
    outer, inner = clock.stages["outer"], clock.stages["inner"]
    assert inner.calls == 2 and outer.calls == 1
    assert inner.seconds == pytest.approx(0.12)
    assert outer.seconds == pytest.approx(0.10)  # its own time only, not the inner stage's
    assert clock.total_seconds == pytest.approx(0.22)
    assert inner.peak_mb > 0 and clock.peak_mb >= inner.peak_mb


def test_marks_do_nothing_without_a_clock_and_one_clock_at_a_time():
    @stage("decorated")
    def work(x):
        return x * 2

    assert work(21) == 42  # no clock: the mark is only a call
    with StageClock() as clock:
        assert work(1) == 2
        with pytest.raises(RuntimeError, match="already running"):
            StageClock().__enter__()
    assert clock.stages["decorated"].calls == 1
    with StageClock() as again:  # the first one stopped cleanly
        work(2)
    assert again.stages["decorated"].calls == 1


def test_memory_counts_child_processes_like_the_quality_worker():
    # A child holding 300 MB: the quality worker holds a delivery beside the hub's process.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; b = bytearray(300 * 2**20); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        alone, together = resident_mb(children=False), resident_mb()
        assert together - alone > 280
        with StageClock() as clock:
            with stage("with a child"):  # memory is read as a stage opens and closes
                pass
        assert clock.stages["with a child"].peak_mb > alone + 280
    finally:
        child.stdin.close()
        child.wait(timeout=10)


def test_a_failing_stage_still_closes_and_is_charged():
    with StageClock() as clock:
        with pytest.raises(ValueError):
            with stage("fails"):
                raise ValueError("boom")
        with stage("after"):
            pass
    assert set(clock.stages) == {"fails", "after"}


def _run(people: int, records: int, scale: float) -> StageRun:
    stages = {name: StageFigures(scale, 100.0) for name in (*HUB_STAGES, "partner kit")}
    stages |= {
        f"reference: {s}": StageFigures(scale / 2, 100.0) for s in ("train", "predict", "cluster")
    }
    return StageRun(
        people,
        1,
        records=records,
        identity_records=records // 3,
        persons=people,
        stages=stages,
        peak_mb=700.0,
        process_peak_mb=500.0,
        identity_f1=0.99,
        reference_f1=0.995,
    )


def test_the_table_shows_medians_ratios_and_growth_against_n_log_n():
    small = summarise([_run(10_000, 30_000, s) for s in (1.0, 3.0, 2.0)])
    large = summarise([_run(100_000, 300_000, s) for s in (40.0, 60.0, 50.0)])
    assert small.seconds["linkage: train"] == 2.0 and small.runs == 3
    assert small.total(LINKAGE_CORE) == 6.0 and small.reference_seconds == 3.0
    table = format_table([small, large])
    assert "| hub linkage ÷ bare Splink | 2.00 | 2.00 |" in table
    assert "| partner kit, records/s per core | 15,000 | 6,000 |" in table
    assert (
        "| peak resident memory of the run, with the quality worker's, MB | **700** | **700** |"
        in table
    )
    bound = nlogn_ratio(30_000, 300_000)
    assert 11 < bound < 13
    assert f"| n·log n of records | {bound:.1f}× |" in table
    assert "| linkage: train | 25.0× (above) |" in table  # 2 s -> 50 s grows faster than n·log n


def test_the_partner_kits_steps_are_timed_by_the_same_clock_with_cpu_time_and_the_rest_as_other():
    from pipelines.partner_kit import steps

    wall, cpu = FakeTimer(), FakeTimer()

    def work(seconds: float, cpu_seconds: float) -> None:
        wall.advance(seconds)
        cpu.advance(cpu_seconds)

    clock = StageClock(interval=None, timer=wall, cpu_timer=cpu, outside="other")
    work(1.0, 0.5)  # before any step: the kit's "other"
    clock.enter("read")
    work(2.0, 2.0)
    clock.enter("normalise")  # nested: charged to normalise, not read
    work(3.0, 1.0)
    clock.exit()
    work(0.5, 0.5)
    clock.exit()
    clock.settle()
    assert {n: (t.seconds, t.cpu_seconds) for n, t in clock.stages.items()} == {
        "other": (1.0, 0.5),
        "read": (2.5, 2.5),
        "normalise": (3.0, 1.0),
    }
    assert clock.peak_mb == 0  # no memory sampling for the kit

    with steps.recording() as times:  # the kit's recording runs this clock
        with steps.step("read"):
            pass
    assert list(times.wall) == list(steps.STEPS) == list(times.cpu)
    assert times.wall["read"] >= 0 and sum(times.wall.values()) > 0
