"""What the quality gate costs in the whole hub pipeline: the demo, run in a fresh process each time.

Each run is ``placelink demo`` in a temporary home, in a new Python process (Great
Expectations is imported once per process, in the quality worker, and that import is part of
the cost). Two figures per run, from ``hub.quality_deliveries``:

* **waited**: the seconds ingest waited for verdicts (``waited_seconds``); validation
  otherwise runs in the worker process while ingest opens the next file. The share is that over
  the demo's "hub pipeline" time of the same run.
* **work**: the seconds the worker spent validating (``seconds``), split by a least-squares line
  over every delivery but the first: seconds = per delivery + rows x per row; what the first
  delivery took beyond that line is the one-off cost per process.

Waiting is not the whole cost: handing a delivery to the worker (its Parquet bytes, through a
pipe) and the worker's CPU share the machine with ingest. So each run with the gate is paired
with a run without it (the gate replaced by one that records an empty verdict, so every
downstream step runs as before), alternating, and what the gate **adds** is the difference of
the two medians of the hub pipeline's time. The issue's target: below 10% of the pipeline's time.
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
    deliveries: tuple[tuple[int, float], ...]  # (rows, seconds validating in the worker)
    waited: tuple[float, ...] = ()  # seconds ingest waited for each verdict
    accepted: tuple[
        tuple[str, int], ...
    ] = ()  # (dataset, rows) accepted: did two runs do the same work?

    @property
    def rows(self) -> int:
        return sum(rows for rows, _ in self.deliveries)

    @property
    def validation_seconds(self) -> float:
        return sum(seconds for _, seconds in self.deliveries)

    @property
    def waited_seconds(self) -> float:
        return sum(self.waited)

    @property
    def waited_share(self) -> float:
        """Ingest's waiting for verdicts, as a share of the hub pipeline's wall time."""
        return self.waited_seconds / self.hub_seconds

    def split(self) -> tuple[float, float, float]:
        """(one-off seconds per process, seconds per delivery, seconds per 100k rows)."""
        rest = self.deliveries[1:]
        n, mean_rows = len(rest), statistics.fmean(r for r, _ in rest)
        mean_seconds = statistics.fmean(s for _, s in rest)
        spread = sum((r - mean_rows) ** 2 for r, _ in rest)
        per_row = (
            sum((r - mean_rows) * (s - mean_seconds) for r, s in rest) / spread
            if n > 1 and spread
            else 0.0
        )
        per_delivery = mean_seconds - per_row * mean_rows
        first_rows, first_seconds = self.deliveries[0]
        return first_seconds - per_delivery - per_row * first_rows, per_delivery, per_row * PER_ROWS


def validated_deliveries(
    warehouse: Path,
) -> tuple[tuple[tuple[int, float], ...], tuple[float, ...]]:
    """(rows, seconds validating) of each delivery the gate validated, in the order ingest took
    them, and the seconds ingest waited for each verdict."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(
            "SELECT row_count, seconds, waited_seconds FROM hub.quality_deliveries "
            "ORDER BY received_at, file_name"
        ).fetchall()
    finally:
        con.close()
    return tuple((r, s) for r, s, _ in rows), tuple(w for *_, w in rows)


def accepted_deliveries(warehouse: Path) -> tuple[tuple[str, int], ...]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return tuple(
            con.execute(
                "SELECT dataset, row_count FROM hub.deliveries WHERE status = 'accepted' "
                "ORDER BY dataset, row_count"
            ).fetchall()
        )
    finally:
        con.close()


def _without_gate() -> None:
    """In this (benchmark) process only: every delivery passes with an empty verdict, recorded
    as the real gate records it, and no worker process is started."""
    from pipelines.hub import ingest
    from pipelines.quality import validate

    class Ready:
        """A verdict that is ready at once, as PendingVerdict gives it."""

        waited = 0.0

        def __init__(self, verdict: validate.QualityVerdict) -> None:
            self.verdict = verdict

        def done(self) -> bool:
            return True

        def result(self) -> validate.QualityVerdict:
            return self.verdict

    def start(con, table, header, contract, file_name, now, parquet=None):
        previous = validate.previous_row_count(con, contract.id, header["dataset"])
        return Ready(
            validate.QualityVerdict(
                file_name, contract, header["dataset"], header["row_count"], previous, (), 0.0
            )
        )

    def finish(con, pending, header, contract, now):
        validate.record_verdict(con, pending.verdict, header.get("extract_id"), now, 0.0)
        return pending.verdict

    ingest.start_quality_check, ingest.finish_quality_check = start, finish
    ingest.quality_worker.start = lambda: None


def _one_run(people: int, seed: int, home: str, gate: bool = True) -> QualityRun:
    """Runs in a fresh process: the demo in ``home``, then its quality timings."""
    from pipelines.core.settings import Settings
    from pipelines.tooling.demo import run_demo

    if not gate:
        _without_gate()

    # The demo's two deliberately bad deliveries are logged as Dagster warnings: not news here.
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):
        report = run_demo(
            Settings.from_env(
                {"PLACELINK_HOME": home, "PLACELINK_DEMO_PARTNERS": f"{home}-partners"}
            ),
            people=people,
            seed=seed,
            echo=lambda *_: None,
        )
    if report.failures:
        raise RuntimeError("the demo failed: " + "; ".join(report.failures))
    warehouse = Path(home) / "warehouse.duckdb"
    return QualityRun(
        report.timings["hub pipeline"],
        *validated_deliveries(warehouse),
        accepted_deliveries(warehouse),
    )


def _in_new_process(people: int, seed: int, work: Path | None, gate: bool) -> QualityRun:
    # The demo's partner side goes beside its home (outside it), in the same temporary folder.
    with tempfile.TemporaryDirectory(prefix="placelink-bench-quality-", dir=work) as folder:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
            return process.submit(_one_run, people, seed, str(Path(folder) / "hub"), gate).result()


def run(
    people: int = 100_000, runs: int = 3, seed: int = 2026, work: Path | None = None, echo=print
) -> tuple[list[QualityRun], list[QualityRun]]:
    """``runs`` pairs of demo runs of ``people`` people, with and without the gate, alternating,
    each in a new process; returns (with the gate, without)."""
    gated, ungated = [], []
    for i in range(runs):
        result = _in_new_process(people, seed, work, gate=True)
        baseline = _in_new_process(people, seed, work, gate=False)
        if baseline.accepted != result.accepted or not result.accepted:
            raise RuntimeError(
                f"the runs with and without the gate accepted different deliveries ({len(result.accepted)} and "
                f"{len(baseline.accepted)}): their times cannot be compared"
            )
        fixed, per_delivery, per_rows = result.split()
        echo(
            f"  run {i + 1}: hub pipeline {result.hub_seconds:.1f} s with the gate, {baseline.hub_seconds:.1f} s "
            f"without; waited {result.waited_seconds:.2f} s ({result.waited_share:.1%}); worker validated for "
            f"{result.validation_seconds:.2f} s: one-off {fixed:.2f} s, {per_delivery:.3f} s per delivery, "
            f"{per_rows:.2f} s per 100k rows"
        )
        gated.append(result)
        ungated.append(baseline)
    return gated, ungated


def summary(people: int, results: tuple[list[QualityRun], list[QualityRun]]) -> str:
    gated, ungated = results
    median = statistics.median
    first = gated[0]
    splits = [r.split() for r in gated]
    with_gate, without = (
        median(r.hub_seconds for r in gated),
        median(r.hub_seconds for r in ungated),
    )
    added = with_gate - without
    return "\n".join(
        [
            f"{people:,} people: {len(first.deliveries)} deliveries, {first.rows:,} rows; medians of {len(gated)} "
            "runs each:",
            f"  hub pipeline      {with_gate:6.1f} s with the gate, {without:.1f} s without (runs: "
            f"{', '.join(f'{r.hub_seconds:.1f}' for r in gated)} / {', '.join(f'{r.hub_seconds:.1f}' for r in ungated)})",
            f"  gate added        {added:6.2f} s = {added / with_gate:.1%} of the pipeline "
            f"({added / first.rows * PER_ROWS:.2f} s per 100k rows)",
            f"  ingest waited     {median(r.waited_seconds for r in gated):6.2f} s = "
            f"{median(r.waited_share for r in gated):.1%} (runs: {', '.join(f'{r.waited_share:.1%}' for r in gated)})",
            f"  worker validating {median(r.validation_seconds for r in gated):6.2f} s "
            f"({median(r.validation_seconds / r.rows * PER_ROWS for r in gated):.2f} s per 100k rows, all in)",
            f"  one-off/process   {median(s[0] for s in splits):6.2f} s   (starting the worker, importing Great "
            "Expectations)",
            f"  per delivery      {median(s[1] for s in splits):6.3f} s",
            f"  per 100k rows     {median(s[2] for s in splits):6.2f} s",
        ]
    )
