"""The main job on embedded defaults: a synthetic place, every partner's kit, the hub, a summary.

The demo plays every party on one machine. It keeps the parties' files apart the way
they would be in real life: partner-only files (raw extracts, lookups, the linkage
key) under ``demo/``, and only pseudonymised extracts in the hub's inbox.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.contracts import load_contracts
from pipelines.evaluation import LinkageAccuracy, linkage_accuracy
from pipelines.partner_kit.prepare import prepare_extract
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.run import failure_messages, run_pipeline
from pipelines.settings import Settings
from pipelines.synth import generate_place

DEMO_MARKER = ".placelink-demo"


class DemoRefused(RuntimeError):
    pass


@dataclass
class DemoReport:
    home: Path
    timings: dict[str, float] = field(default_factory=dict)
    prepared: list = field(default_factory=list)
    deliveries: list[tuple] = field(default_factory=list)
    persons: int = 0
    identity_records: int = 0
    accuracy: LinkageAccuracy | None = None
    published: list[tuple[str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def reset_home(settings: Settings) -> None:
    """Start from an empty home, but never wipe a folder that is not a demo home."""
    home = settings.home
    if home.exists() and any(home.iterdir()) and not (home / DEMO_MARKER).exists():
        raise DemoRefused(f"PLACELINK_HOME={home} already holds files that are not from a demo; "
                          "the demo starts from scratch, so point PLACELINK_HOME at an empty folder")
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / DEMO_MARKER).write_text("This folder was created by `placelink demo` and is rebuilt by it.\n")


def run_demo(settings: Settings, people: int = 20_000, seed: int = 2026, period: str = "2026-10",
             echo=print) -> DemoReport:
    reset_home(settings)
    settings.ensure_dirs()
    report = DemoReport(settings.home)
    place = settings.home / "demo" / "place"
    outbox = settings.home / "demo" / "outbox"

    started = time.perf_counter()
    echo(f"Generating a synthetic place of {people:,} people (seed {seed}) ...")
    generate_place(people=people, seed=seed, out=place)
    report.timings["synthetic place"] = time.perf_counter() - started

    started = time.perf_counter()
    key_path = settings.keys / "demo-linkage.key"
    LinkageKey.generate().save(key_path)
    contracts, problems = load_contracts(settings.contracts_dir)
    if problems:
        raise DemoRefused("invalid contracts: " + "; ".join(str(e) for e in problems.values()))
    key = LinkageKey.load(key_path)
    echo("Partners prepare their extracts with the partner kit ...")
    for contract in contracts.values():
        for dataset in contract.datasets:
            raw = place / "raw" / contract.partner_id / f"{dataset}.csv"
            opt_outs = (place / "reference" / "national_data_opt_outs.csv"
                        if contract.terms.national_data_opt_out_applies else None)
            prepared = prepare_extract(contract, dataset, raw, outbox / contract.partner_id, key,
                                       place / "reference" / "postcode_lookup.csv",
                                       opt_outs=opt_outs, period=period)
            report.prepared.append(prepared)
            shutil.copy2(prepared.extract_path, settings.inbox / prepared.extract_path.name)
    shutil.copy2(place / "reference" / "lsoa_reference.csv", settings.reference / "lsoa_reference.csv")
    report.timings["partner kit"] = time.perf_counter() - started

    started = time.perf_counter()
    echo("The hub runs the pipeline (Dagster, headless) ...")
    result = run_pipeline(settings, log_level="WARNING")
    report.timings["hub pipeline"] = time.perf_counter() - started
    report.failures = failure_messages(result)
    if not result.success:
        return report

    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        report.deliveries = con.execute("""
            SELECT file_name, status, dataset, row_count, coalesce(failed_check, '')
            FROM hub.deliveries ORDER BY dataset
        """).fetchall()
        report.identity_records, report.persons = con.execute(
            "SELECT count(*), count(DISTINCT person_key) FROM hub.person_keys").fetchone()
    finally:
        con.close()
    published = duckdb.connect(str(settings.published), read_only=True)
    try:
        for (name,) in published.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name NOT LIKE '\\_%' ESCAPE '\\' "
                "ORDER BY 1").fetchall():
            report.published.append((name, published.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]))
    finally:
        published.close()

    started = time.perf_counter()
    report.accuracy = linkage_accuracy(settings.warehouse, place / "truth" / "ground_truth.csv",
                                    [(p.header.dataset, p.lookup_path) for p in report.prepared])
    report.timings["evaluation"] = time.perf_counter() - started
    return report


def format_summary(report: DemoReport) -> str:
    lines = ["", "placelink demo: summary", "=" * 23]
    if report.failures:
        lines.append("The pipeline FAILED:")
        lines += [f"  - {m}" for m in report.failures]
        return "\n".join(lines)
    accepted = [d for d in report.deliveries if d[1] == "accepted"]
    lines.append(f"Extracts accepted: {len(accepted)} of {len(report.deliveries)} "
                 f"(quarantined: {len(report.deliveries) - len(accepted)})")
    lines.append("Records per partner extract (rows sent; invalid identifier values became empty tokens):")
    for p in report.prepared:
        h = p.header
        invalid = ", ".join(f"{k} {v}" for k, v in sorted(h.invalid_counts.items()) if v) or "none"
        opted = f", {p.opted_out_rows} opted out" if p.opted_out_rows else ""
        lines.append(f"  {h.partner_id:8} {h.dataset:26} {p.rows_out:>8,} rows{opted}; invalid values: {invalid}")
    lines.append(f"Persons linked: {report.persons:,} from {report.identity_records:,} identity records")
    if report.accuracy:
        lines.append("Linkage vs ground truth (pairwise, from person_keys and the partners' record lookups):")
        for label, s in (("records", report.accuracy.records),
                         ("identity records", report.accuracy.identity_records)):
            lines.append(f"  {label:17} {s.records:>8,}: precision {s.precision:.4f}, recall {s.recall:.4f}, "
                         f"F1 {s.f1:.4f}")
    lines.append("Published tables (disclosure-controlled):")
    for name, rows in report.published:
        lines.append(f"  {name}: {rows} rows")
    home = report.home
    lines += [
        f"Published file:   {home / 'published' / 'shared_outcomes.duckdb'}",
        f"Hub warehouse:    {home / 'warehouse.duckdb'}",
        f"Audit log:        {home / 'audit' / 'audit.jsonl'}",
        f"Quarantine:       {home / 'quarantine'}",
        f"Linkage QA:       {home / 'reports' / 'linkage_qa.html'}",
        "Timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items()),
        "Open the Dagster UI with `make ui` (http://127.0.0.1:3000) to see the assets and this run.",
    ]
    return "\n".join(lines)
