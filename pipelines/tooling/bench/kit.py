"""Partner-kit throughput: ``prepare_extract`` on every dataset of a synthetic place.

Each repeat prepares every contract's datasets exactly as the demo does (same raw
files, opt-out list and postcode lookup), with a linkage key made for the run and never
saved. Per dataset and in total it reports records, wall seconds, records per second,
records per second per core, CPU seconds and peak resident memory, as medians over the
repeats, and where the time went by step (:mod:`pipelines.partner_kit.steps`).

"Per core": the kit runs in one process, so cores = 1 and records/s per core is the
wall-clock rate. Polars may still use more than one thread inside a step; the CPU
seconds (user + system, all threads) show how much, and records per CPU-second is
the rate per core actually busy. Run with ``POLARS_MAX_THREADS=1`` to pin it to one.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import load_contracts
from pipelines.partner_kit.steps import STEPS, recording
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.partner_side import contract_datasets, prepare_place_dataset
from pipelines.tooling.synth import generate_place

CORES = 1  # prepare_extract runs in one process


@dataclass
class DatasetRuns:
    """One dataset's measurements, one entry per repeat."""

    dataset: str
    partner: str
    records: int
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    peak_rss_mb: list[float] = field(default_factory=list)
    steps_s: list[dict[str, float]] = field(default_factory=list)
    steps_cpu_s: list[dict[str, float]] = field(default_factory=list)

    def summary(self) -> dict:
        wall = statistics.median(self.wall_s)
        cpu = statistics.median(self.cpu_s)
        return {
            "dataset": self.dataset,
            "partner": self.partner,
            "records": self.records,
            "wall_s": wall,
            "wall_s_runs": self.wall_s,
            "records_per_s": self.records / wall,
            "records_per_s_per_core": self.records / wall / CORES,
            "cpu_s": cpu,
            "records_per_cpu_s": self.records / cpu,
            "peak_rss_mb": max(self.peak_rss_mb),
            "steps_s": {s: statistics.median(r[s] for r in self.steps_s) for s in STEPS},
            "steps_cpu_s": {s: statistics.median(r[s] for r in self.steps_cpu_s) for s in STEPS},
        }


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux), so each dataset's own
    peak is seen; False where that is not possible and the peak is the process's so far."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ensure_place(people: int, seed: int, work: Path, echo=print) -> Path:
    """The place for ``people`` and ``seed`` under ``work``, generated unless already there."""
    place = Path(work) / f"place-{people}-seed{seed}"
    manifest = place / "manifest.json"
    if manifest.exists():
        made = json.loads(manifest.read_text())
        if made.get("people") == people and made.get("seed") == seed:
            echo(f"Reusing the synthetic place in {place}")
            return place
    echo(f"Generating a synthetic place of {people:,} people (seed {seed}) in {place} ...")
    generate_place(people=people, seed=seed, out=place)
    return place


def measure(place: Path, repeats: int, scratch: Path, echo=print) -> list[DatasetRuns]:
    """Prepare every contract dataset of ``place`` ``repeats`` times; outputs go to ``scratch``
    and are removed after each repeat."""
    contracts, problems = load_contracts(REPO_ROOT / "contracts")
    if problems:
        raise RuntimeError("invalid contracts: " + "; ".join(str(e) for e in problems.values()))
    key = LinkageKey.generate()  # in memory only, for this run
    runs: dict[tuple[str, str], DatasetRuns] = {}
    for repeat in range(repeats):
        out = scratch / f"repeat-{repeat}"
        for contract, dataset in contract_datasets(contracts.values()):
            _reset_peak_rss()
            cpu, started = _cpu_s(), time.perf_counter()
            with recording() as steps:
                prepared = prepare_place_dataset(contract, dataset, place, out, key)
            wall = time.perf_counter() - started
            entry = runs.setdefault(
                (contract.partner_id, dataset),
                DatasetRuns(dataset, contract.partner_id, prepared.rows_in),
            )
            entry.wall_s.append(wall)
            entry.cpu_s.append(_cpu_s() - cpu)
            entry.peak_rss_mb.append(_peak_rss_mb())
            entry.steps_s.append(steps.wall)
            entry.steps_cpu_s.append(steps.cpu)
        shutil.rmtree(out, ignore_errors=True)
        total = sum(r.wall_s[-1] for r in runs.values())
        echo(f"  repeat {repeat + 1} of {repeats}: {total:.2f} s")
    return list(runs.values())


def totals(runs: list[DatasetRuns]) -> dict:
    """Whole-place figures: per repeat the sums over datasets, then medians over repeats."""
    repeats = len(runs[0].wall_s)
    records = sum(r.records for r in runs)
    wall = [sum(r.wall_s[i] for r in runs) for i in range(repeats)]
    cpu = [sum(r.cpu_s[i] for r in runs) for i in range(repeats)]
    steps = [{s: sum(r.steps_s[i][s] for r in runs) for s in STEPS} for i in range(repeats)]
    steps_cpu = [{s: sum(r.steps_cpu_s[i][s] for r in runs) for s in STEPS} for i in range(repeats)]
    median_wall, median_cpu = statistics.median(wall), statistics.median(cpu)
    return {
        "records": records,
        "wall_s": median_wall,
        "wall_s_runs": wall,
        "records_per_s": records / median_wall,
        "records_per_s_per_core": records / median_wall / CORES,
        "cpu_s": median_cpu,
        "records_per_cpu_s": records / median_cpu,
        "peak_rss_mb": max(max(r.peak_rss_mb) for r in runs),
        "steps_s": {s: statistics.median(x[s] for x in steps) for s in STEPS},
        "steps_cpu_s": {s: statistics.median(x[s] for x in steps_cpu) for s in STEPS},
    }


def format_report(result: dict) -> list[str]:
    lines = [
        f"partner kit, {result['people']:,} people, {result['total']['records']:,} records, "
        f"median of {result['repeats']} runs "
        f"(1 process; Polars threads: {result['polars_threads']}):",
        f"  {'dataset':28} {'records':>10} {'wall s':>8} {'records/s':>10} "
        f"{'/s/core':>10} {'/CPU-s':>10} {'peak RSS':>9}",
    ]

    def row(name: str, m: dict) -> str:
        return (
            f"  {name:28} {m['records']:>10,} {m['wall_s']:>8.2f} {m['records_per_s']:>10,.0f} "
            f"{m['records_per_s_per_core']:>10,.0f} {m['records_per_cpu_s']:>10,.0f} "
            f"{m['peak_rss_mb']:>6.0f} MB"
        )

    lines += [row(d["dataset"], d) for d in result["datasets"]]
    lines.append(row("total", result["total"]))
    wall, cpu = result["total"]["steps_s"], result["total"]["steps_cpu_s"]
    whole_wall, whole_cpu = sum(wall.values()) or 1.0, sum(cpu.values()) or 1.0
    lines.append("  where the time goes (all datasets, median seconds per run):")
    lines.append(f"    {'step':12} {'wall s':>8} {'share':>6} {'CPU s':>8} {'share':>6}")
    lines += [
        f"    {name:12} {wall[name]:8.2f} {wall[name] / whole_wall:6.1%} "
        f"{cpu[name]:8.2f} {cpu[name] / whole_cpu:6.1%}"
        for name in STEPS
    ]
    return lines


def run_benchmark(
    people: int = 100_000,
    seed: int = 2026,
    repeats: int = 3,
    work: Path | None = None,
    out: Path | None = None,
    echo=print,
) -> dict:
    """Measure the kit on a place of ``people``; the place is kept under ``work`` if given."""
    with tempfile.TemporaryDirectory(prefix="placelink-bench-kit-") as tmp:
        base = Path(work) if work else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        place = ensure_place(people, seed, base, echo)
        scratch = Path(tempfile.mkdtemp(prefix="prepared-", dir=base))
        try:
            runs = measure(place, repeats, scratch, echo)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    result = {
        "people": people,
        "seed": seed,
        "repeats": repeats,
        "cores": CORES,
        "polars_threads": pl.thread_pool_size(),
        "cpu_count": os.cpu_count(),
        "datasets": [r.summary() for r in runs],
        "total": totals(runs),
    }
    for line in format_report(result):
        echo(line)
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        echo(f"Figures written to {out}")
    return result
