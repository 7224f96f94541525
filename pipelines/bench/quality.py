"""What the quality gate costs in the whole hub pipeline: the demo, run in a fresh process each time.

Each run is ``placelink demo`` in a temporary home, in a new Python process (Great
Expectations is imported once per process, and that import is part of the cost). The
validation time is the sum of ``hub.quality_deliveries.seconds``; the share is that over the
demo's "hub pipeline" time of the same run. The time per delivery is then split by a
least-squares line over every delivery but the first: seconds = per delivery + rows x per
row; what the first delivery took beyond that line is the one-off cost per process.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb

PER_ROWS = 100_000


@dataclass(frozen=True)
class QualityRun:
    """One demo run: the hub pipeline's seconds, and (rows, seconds) of each validated delivery
    in the order they were validated."""

    hub_seconds: float
    deliveries: tuple[tuple[int, float], ...]

    @property
    def rows(self) -> int:
        return sum(rows for rows, _ in self.deliveries)

    @property
    def validation_seconds(self) -> float:
        return sum(seconds for _, seconds in self.deliveries)

    @property
    def share(self) -> float:
        return self.validation_seconds / self.hub_seconds

    def split(self) -> tuple[float, float, float]:
        """(one-off seconds per process, seconds per delivery, seconds per 100k rows)."""
        rest = self.deliveries[1:]
        n, mean_rows = len(rest), statistics.fmean(r for r, _ in rest)
        mean_seconds = statistics.fmean(s for _, s in rest)
        spread = sum((r - mean_rows) ** 2 for r, _ in rest)
        per_row = sum((r - mean_rows) * (s - mean_seconds) for r, s in rest) / spread if n > 1 and spread else 0.0
        per_delivery = mean_seconds - per_row * mean_rows
        first_rows, first_seconds = self.deliveries[0]
        return first_seconds - per_delivery - per_row * first_rows, per_delivery, per_row * PER_ROWS


def validated_deliveries(warehouse: Path) -> tuple[tuple[int, float], ...]:
    """(rows, seconds) of each delivery the gate validated, in the order ingest took them."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return tuple(con.execute("SELECT row_count, seconds FROM hub.quality_deliveries "
                                 "ORDER BY received_at, file_name").fetchall())
    finally:
        con.close()


def _one_run(people: int, seed: int, home: str) -> QualityRun:
    """Runs in a fresh process: the demo in ``home``, then its quality timings."""
    from pipelines.demo import run_demo
    from pipelines.settings import Settings

    # The demo's two deliberately bad deliveries are logged as Dagster warnings: not news here.
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):
        report = run_demo(Settings.from_env({"PLACELINK_HOME": home}), people=people, seed=seed,
                          echo=lambda *_: None)
    if report.failures:
        raise RuntimeError("the demo failed: " + "; ".join(report.failures))
    return QualityRun(report.timings["hub pipeline"], validated_deliveries(Path(home) / "warehouse.duckdb"))


def run(people: int = 100_000, runs: int = 3, seed: int = 2026, work: Path | None = None,
        echo=print) -> list[QualityRun]:
    """``runs`` demo runs of ``people`` people, one after the other, each in a new process."""
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="placelink-bench-quality-", dir=work) as home:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
                result = process.submit(_one_run, people, seed, home).result()
        fixed, per_delivery, per_rows = result.split()
        echo(f"  run {i + 1}: validation {result.validation_seconds:.2f} s of {result.hub_seconds:.1f} s hub "
             f"pipeline = {result.share:.1%}; one-off {fixed:.2f} s, {per_delivery:.3f} s per delivery, "
             f"{per_rows:.2f} s per 100k rows")
        results.append(result)
    return results


def summary(people: int, results: list[QualityRun]) -> str:
    def median(values) -> float:
        return statistics.median(list(values))

    first = results[0]
    splits = [r.split() for r in results]
    return "\n".join([
        f"{people:,} people: {len(first.deliveries)} deliveries, {first.rows:,} rows; medians of {len(results)} runs:",
        f"  validation        {median(r.validation_seconds for r in results):6.2f} s "
        f"({median(r.validation_seconds / r.rows * PER_ROWS for r in results):.2f} s per 100k rows, all in)",
        f"  hub pipeline      {median(r.hub_seconds for r in results):6.1f} s",
        f"  share             {median(r.share for r in results):6.1%}   (runs: "
        f"{', '.join(f'{r.share:.1%}' for r in results)})",
        f"  one-off/process   {median(s[0] for s in splits):6.2f} s   (importing and setting up Great Expectations)",
        f"  per delivery      {median(s[1] for s in splits):6.3f} s",
        f"  per 100k rows     {median(s[2] for s in splits):6.2f} s",
    ])
