"""`placelink bench stages`: wall time and peak memory of every stage, 10k to 1M people.

Each run is a real run of the whole job in a fresh Python process (so one run's memory
does not flatter or burden the next): a synthetic place is generated, every partner
runs its kit and seals its extracts, the hub runs the Dagster job (ingest and
verification, quality checks, linkage, SQL models, disclosure control, publish), and
then, in the same process, **bare Splink on clear text** links the same identity
records (the comparisons of the hub's model as far as clear text allows, Jaro-Winkler
where the hub compares Bloom filters, the same blocking rules and training steps) as
the reference the issue measures against.

Stage times come from :mod:`pipelines.core.stages` marks in the library code, each stage's
time excluding the stages nested in it; what no mark claims inside the hub's run
(Dagster's own work, the reports) is shown as its own line, so the stages add up to
the measured wall time. Several runs give medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from pipelines.core.stages import StageClock, stage
from pipelines.core.warehouse import WAREHOUSE_CLOSE
from pipelines.governance.contracts import load_contracts
from pipelines.tooling.bench import empty_work_folder

# Stages in the order the data flows, as the library's marks name them.
PARTNER_STAGES = ("synth", "partner kit", "envelope: encrypt and sign")
HUB_STAGES = (
    "Dagster: load definitions",
    "ingest and verification",
    "quality checks",
    "governance: contract status and retention",
    "linkage: person records",
    "linkage: train",
    "linkage: predict",
    "linkage: cluster",
    "linkage: person keys and QA",
    "SQL models",
    # The effects (pipelines/outcomes/effects): the estimates, then the headline estimates again
    # at a looser and a stricter linkage threshold (its SQL models re-run count under "SQL models",
    # its estimates under "effects: estimate"; this row is the re-clustering and the rest).
    "effects: estimate",
    "effects: linkage sensitivity",
    "disclosure control",
    "publish",
    "reports",
    # assets/resources.py: DuckDB checkpoints what each step wrote as the step closes the warehouse.
    WAREHOUSE_CLOSE,
)
HUB_REST = "Dagster: run and step overhead (rest of the hub run)"
REFERENCE_STAGES = ("reference: train", "reference: predict", "reference: cluster")
LINKAGE_CORE = ("linkage: train", "linkage: predict", "linkage: cluster")
STEPS = ("synth", "kit", "envelope", "hub", "reference")  # what --stage can pick
BENCH_MARKER = ".placelink-bench-stages"


@dataclass
class StageFigures:
    seconds: float
    peak_mb: float


@dataclass
class StageRun:
    """One run at one size, as measured in its own process."""

    people: int
    seed: int
    records: int = 0
    identity_records: int = 0
    persons: int = 0
    comparisons_scored: int = 0
    stages: dict[str, StageFigures] = field(default_factory=dict)
    hub_seconds: float = 0.0
    # The highest sample of the process and its children together (the stage clock's).
    peak_mb: float = 0.0
    process_peak_mb: float = 0.0
    # The quality worker process (pipelines/quality/worker.py) holds each delivery as it is
    # validated, beside the hub's process: its own peak, measured when it has stopped.
    worker_peak_mb: float = 0.0
    identity_f1: float | None = None
    reference_f1: float | None = None


def _clock_if(on: bool) -> StageClock | None:
    return StageClock() if on else None


class _Maybe:
    """``with _Maybe(clock):`` runs the clock only if there is one."""

    def __init__(self, clock: StageClock | None) -> None:
        self.clock = clock

    def __enter__(self):
        return self.clock.__enter__() if self.clock else None

    def __exit__(self, *exc):
        if self.clock:
            self.clock.__exit__(*exc)


def _collect(run: StageRun, clock: StageClock | None, names: tuple[str, ...]) -> None:
    if clock is None:
        return
    run.peak_mb = max(run.peak_mb, clock.peak_mb)
    for name in names:
        if name in clock.stages:
            s = clock.stages[name]
            run.stages[name] = StageFigures(s.seconds, s.peak_mb)


def run_once(people: int, seed: int, work: Path, steps: tuple[str, ...] = STEPS) -> StageRun:
    """One measured run in this process; ``steps`` are timed, the others run unmeasured
    when a timed step needs their output."""
    from pipelines.core.settings import REPO_ROOT, Settings
    from pipelines.linkage.evaluation import linkage_accuracy
    from pipelines.orchestration.run import failure_messages, run_pipeline
    from pipelines.partner_kit.tokens import LinkageKey
    from pipelines.tooling.bench.linkage import _clear_records, clear_reference
    from pipelines.tooling.demo import on_delivery_day, partner_deliveries, register_demo_keys
    from pipelines.tooling.synth import generate_place

    empty_work_folder(work, BENCH_MARKER, "stages")
    run = StageRun(people, seed)
    last = max(STEPS.index(s) for s in steps)
    place, outbox = work / "place", work / "partners" / "outbox"
    home = work / "hub"

    clock = _clock_if("synth" in steps)
    with _Maybe(clock), stage("synth"):
        generate_place(people=people, seed=seed, out=place)
    _collect(run, clock, ("synth",))
    if last < STEPS.index("kit"):
        return _finish(run)

    # The environment's settings (memory limit, linkage backend) apply; the home is the run's own.
    settings = on_delivery_day(
        dataclasses.replace(
            Settings.from_env(home=home),
            contracts_dir=REPO_ROOT / "contracts",
        )
    )
    settings.ensure_dirs()
    settings, signing_keys, hub_public = register_demo_keys(
        settings, echo=lambda *_: None, partner_keys=work / "partners" / "signing-keys"
    )
    contracts, problems = load_contracts(settings.contracts_dir)
    if problems:
        raise RuntimeError("invalid contracts: " + "; ".join(str(e) for e in problems.values()))
    key = LinkageKey.generate()
    clock = _clock_if("kit" in steps or "envelope" in steps)
    with _Maybe(clock):
        sealed = partner_deliveries(
            contracts, place, outbox, key, signing_keys, hub_public, settings.now()
        )
    _collect(
        run,
        clock,
        ("partner kit",) * ("kit" in steps)
        + ("envelope: encrypt and sign",) * ("envelope" in steps),
    )
    run.records = sum(s.prepared.rows_out for s in sealed)
    if last < STEPS.index("hub"):
        return _finish(run)

    for s in sealed:
        shutil.copy2(s.envelope_path, settings.inbox / s.envelope_path.name)
    shutil.copy2(
        place / "reference" / "lsoa_reference.csv", settings.reference / "lsoa_reference.csv"
    )
    clock = _clock_if("hub" in steps)
    with _Maybe(clock):
        started = time.perf_counter()
        result = run_pipeline(settings, retrain=True, log_level="WARNING")
        run.hub_seconds = time.perf_counter() - started
    if not result.success:
        raise RuntimeError("the hub pipeline failed: " + "; ".join(failure_messages(result)))
    _collect(run, clock, HUB_STAGES)
    if clock:
        rest = run.hub_seconds - sum(run.stages[n].seconds for n in HUB_STAGES if n in run.stages)
        run.stages[HUB_REST] = StageFigures(rest, clock.peak_mb)
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        run.identity_records, run.persons = con.execute(
            "SELECT count(*), count(DISTINCT person_key) FROM hub.person_keys"
        ).fetchone()
    finally:
        con.close()
    accuracy = linkage_accuracy(
        settings.warehouse,
        place / "truth" / "ground_truth.csv",
        [(s.prepared.header.dataset, s.prepared.lookup_path) for s in sealed],
    )
    run.identity_f1 = accuracy.identity_records.f1
    if last < STEPS.index("reference"):
        return _finish(run)

    # The reference: bare Splink on the same identity records in clear text.
    con = duckdb.connect(str(settings.warehouse))
    try:
        clear = _clear_records(con, place, contracts, [s.prepared for s in sealed])
    finally:
        con.close()
    with StageClock() as clock:
        prediction = clear_reference(clear, settings)
    run.peak_mb = max(run.peak_mb, clock.peak_mb)
    for step in ("train", "predict", "cluster"):
        measured = clock.stages[f"linkage: {step}"]
        run.stages[f"reference: {step}"] = StageFigures(measured.seconds, measured.peak_mb)
    run.comparisons_scored = prediction.scored_pairs
    run.reference_f1 = _reference_f1(prediction, settings, place, sealed)
    return _finish(run)


def _reference_f1(prediction, settings, place: Path, sealed) -> float:
    """Identity-record F1 of the clear-text clusters, scored like the hub's."""
    from pipelines.linkage.evaluation import linkage_accuracy

    scratch = settings.home / "reference-scored.duckdb"
    shutil.copy2(settings.warehouse, scratch)
    con = duckdb.connect(str(scratch))
    try:
        con.register("clear_clusters", prediction.clusters)
        con.execute(
            "CREATE OR REPLACE TABLE hub.person_keys AS SELECT unique_id AS identity_id, "
            "CAST(cluster_id AS VARCHAR) AS person_key FROM clear_clusters"
        )
        con.unregister("clear_clusters")
        con.execute("""CREATE OR REPLACE TABLE hub.record_person AS
                       SELECT r.dataset, r.partner_id, r.record_token, k.person_key
                       FROM hub.record_identity r JOIN hub.person_keys k USING (identity_id)""")
    finally:
        con.close()
    try:
        return linkage_accuracy(
            scratch,
            place / "truth" / "ground_truth.csv",
            [(s.prepared.header.dataset, s.prepared.lookup_path) for s in sealed],
        ).identity_records.f1
    finally:
        scratch.unlink(missing_ok=True)


def _finish(run: StageRun) -> StageRun:
    import resource

    from pipelines.quality import worker

    worker.stop()  # so its peak is known: RUSAGE_CHILDREN counts children that have exited
    run.process_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    run.worker_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return run


# --- several runs, each in its own process -------------------------------------------


def run_in_subprocess(people: int, seed: int, work: Path, steps: tuple[str, ...]) -> StageRun:
    out = work.with_name(work.name + ".json")
    command = [
        sys.executable,
        "-m",
        "pipelines.tooling.bench.stages",
        "--people",
        str(people),
        "--seed",
        str(seed),
        "--work",
        str(work),
        "--json",
        str(out),
        "--steps",
        ",".join(steps),
    ]
    subprocess.run(command, check=True)
    data = json.loads(out.read_text())
    out.unlink()
    data["stages"] = {k: StageFigures(**v) for k, v in data["stages"].items()}
    return StageRun(**data)


@dataclass
class SizeSummary:
    """Medians over the runs at one size."""

    people: int
    runs: int
    records: int
    identity_records: int
    persons: int
    comparisons_scored: int
    seconds: dict[str, float]
    peak_mb: dict[str, float]
    seconds_by_run: dict[str, list[float]]
    run_peak_mb: float
    process_peak_mb: float
    worker_peak_mb: float
    identity_f1: float | None
    reference_f1: float | None

    def total(self, names) -> float:
        return sum(self.seconds.get(n, 0.0) for n in names)

    @property
    def pipeline_seconds(self) -> float:
        """What a partnership runs: partner kits, envelopes and the hub (not the synthetic place)."""
        return self.total(PARTNER_STAGES[1:] + HUB_STAGES + (HUB_REST,))

    @property
    def reference_seconds(self) -> float:
        return self.total(REFERENCE_STAGES)


def summarise(runs: list[StageRun]) -> SizeSummary:
    names = list(dict.fromkeys(n for r in runs for n in r.stages))
    by_run = {n: [r.stages[n].seconds for r in runs if n in r.stages] for n in names}
    first = runs[0]
    return SizeSummary(
        people=first.people,
        runs=len(runs),
        records=first.records,
        identity_records=first.identity_records,
        persons=int(statistics.median(r.persons for r in runs)),
        comparisons_scored=int(statistics.median(r.comparisons_scored for r in runs)),
        seconds={n: statistics.median(v) for n, v in by_run.items()},
        peak_mb={
            n: statistics.median(r.stages[n].peak_mb for r in runs if n in r.stages) for n in names
        },
        seconds_by_run=by_run,
        run_peak_mb=statistics.median(r.peak_mb for r in runs),
        process_peak_mb=statistics.median(r.process_peak_mb for r in runs),
        worker_peak_mb=statistics.median(r.worker_peak_mb for r in runs),
        identity_f1=None
        if first.identity_f1 is None
        else statistics.median(r.identity_f1 for r in runs),
        reference_f1=None
        if first.reference_f1 is None
        else statistics.median(r.reference_f1 for r in runs),
    )


def nlogn_ratio(small: int, large: int) -> float:
    """How much an n·log n cost grows from ``small`` to ``large`` items."""
    return large * math.log(large) / (small * math.log(small))


def format_table(summaries: list[SizeSummary]) -> str:
    """The benchmark as Markdown: one column per size, a row per stage, then ratios."""
    sizes = [s for s in summaries]
    head = "| stage | " + " | ".join(f"{s.people:,} people: s (peak MB)" for s in sizes) + " |"
    lines = [head, "|---|" + "---:|" * len(sizes)]
    names = [
        n
        for n in (*PARTNER_STAGES, *HUB_STAGES, HUB_REST, *REFERENCE_STAGES)
        if any(n in s.seconds for s in sizes)
    ]
    for name in names:
        cells = [
            f"{s.seconds[name]:.2f} ({s.peak_mb[name]:,.0f})" if name in s.seconds else "–"
            for s in sizes
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    rows = [
        ("records (all partners)", lambda s: f"{s.records:,}"),
        ("identity records linked / persons", lambda s: f"{s.identity_records:,} / {s.persons:,}"),
        ("pipeline: kit + envelope + hub, s", lambda s: f"**{s.pipeline_seconds:.1f}**"),
        ("hub linkage (train + predict + cluster), s", lambda s: f"{s.total(LINKAGE_CORE):.1f}"),
        (
            "bare Splink on clear text (train + predict + cluster), s",
            lambda s: f"{s.reference_seconds:.1f}" if s.reference_seconds else "–",
        ),
        ("pipeline ÷ bare Splink", lambda s: _ratio(s.pipeline_seconds, s.reference_seconds)),
        ("hub linkage ÷ bare Splink", lambda s: _ratio(s.total(LINKAGE_CORE), s.reference_seconds)),
        (
            "partner kit, records/s per core",
            lambda s: (
                f"{s.records / s.seconds['partner kit']:,.0f}"
                if s.seconds.get("partner kit")
                else "–"
            ),
        ),
        (
            "peak resident memory of the run, with the quality worker's, MB",
            lambda s: f"**{s.run_peak_mb:,.0f}**",
        ),
        # ru_maxrss: it also covers the bench's own steps no stage samples (scoring the linkage
        # against the truth, building the reference's clear-text records), so it can exceed the
        # run's peak above.
        (
            "peak of the main process alone, with the bench's scoring and reference set-up, MB",
            lambda s: f"{s.process_peak_mb:,.0f}",
        ),
        ("peak of the quality worker process alone, MB", lambda s: f"{s.worker_peak_mb:,.0f}"),
        (
            "identity-record F1: tokens / clear text",
            lambda s: f"{_f(s.identity_f1)} / {_f(s.reference_f1)}",
        ),
        ("runs (medians of)", lambda s: str(s.runs)),
    ]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(s) for s in sizes) + " |")
    if len(sizes) > 1:
        lines += [
            "",
            "Growth of each stage's time from one size to the next, against n·log n of the records:",
            "",
        ]
        pairs = list(zip(sizes, sizes[1:]))
        lines.append(
            "| stage | " + " | ".join(f"{a.people:,} → {b.people:,}" for a, b in pairs) + " |"
        )
        lines.append("|---|" + "---:|" * len(pairs))
        lines.append(
            "| n·log n of records | "
            + " | ".join(f"{nlogn_ratio(a.records, b.records):.1f}×" for a, b in pairs)
            + " |"
        )
        for name in names:
            cells = []
            for a, b in pairs:
                if name in a.seconds and name in b.seconds and a.seconds[name] > 0:
                    ratio = b.seconds[name] / a.seconds[name]
                    over = ratio > nlogn_ratio(a.records, b.records)
                    cells.append(f"{ratio:.1f}×" + (" (above)" if over else ""))
                else:
                    cells.append("–")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "–"


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def run_benchmark(
    sizes: list[int],
    seed: int,
    repeats: int,
    steps: tuple[str, ...],
    work: Path | None,
    reports: Path,
    echo=print,
) -> list[SizeSummary]:
    summaries = []
    root = work or Path(tempfile.mkdtemp(prefix="placelink-bench-stages-"))
    try:
        for people in sizes:
            runs = []
            for i in range(repeats):
                echo(f"[{people:,} people] run {i + 1} of {repeats} ...")
                started = time.perf_counter()
                runs.append(run_in_subprocess(people, seed, root / f"people-{people}", steps))
                echo(f"[{people:,} people] run {i + 1} took {time.perf_counter() - started:.0f} s")
            summaries.append(summarise(runs))
            _write(summaries, seed, reports)
    finally:
        if work is None:
            shutil.rmtree(root, ignore_errors=True)
    echo(format_table(summaries))
    return summaries


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "duckdb": duckdb.__version__,
    }


def _write(summaries: list[SizeSummary], seed: int, reports: Path) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    data = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "machine": machine(),
        "sizes": [
            asdict(s)
            | {"pipeline_seconds": s.pipeline_seconds, "reference_seconds": s.reference_seconds}
            for s in summaries
        ],
    }
    (reports / "benchmark_stages.json").write_text(json.dumps(data, indent=2))
    (reports / "benchmark_stages.md").write_text(format_table(summaries) + "\n")


def _main(argv: list[str] | None = None) -> None:
    """One run in this process (what :func:`run_in_subprocess` starts)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--steps", default=",".join(STEPS))
    args = parser.parse_args(argv)
    from pipelines.core import progress

    with progress.showing():  # each stage as it runs, on standard error (bars on a terminal)
        run = run_once(args.people, args.seed, args.work, tuple(args.steps.split(",")))
    args.json.write_text(json.dumps(asdict(run)))


if __name__ == "__main__":
    _main()
