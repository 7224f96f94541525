"""`placelink bench ...`: benchmarks on synthetic places (figures, not pass/fail tests)."""
from __future__ import annotations

from pathlib import Path

import click


@click.group()
def bench() -> None:
    """Benchmarks on synthetic places."""


@bench.command("linkage")
@click.option("--people", "sizes", multiple=True, type=int, default=(10_000, 100_000), show_default=True,
              help="People in each synthetic place (repeat for several sizes).")
@click.option("--seed", default=2026, show_default=True, help="Random seed of the synthetic places.")
@click.option("--work", type=click.Path(path_type=Path), default=None,
              help="Keep each place, extracts and warehouse under this folder (default: a temp folder, removed).")
@click.option("--json", "out", type=click.Path(path_type=Path), default=None,
              help="Also write the figures as JSON to this file.")
def linkage(sizes: tuple[int, ...], seed: int, work: Path | None, out: Path | None) -> None:
    """Linkage accuracy on tokens vs NHS-number-only matching vs clear-text Splink, against ground truth."""
    from pipelines.bench.linkage import run_benchmarks

    run_benchmarks(list(sizes), seed, work, out, echo=click.echo)
