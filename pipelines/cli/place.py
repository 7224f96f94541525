"""`placelink synth`, `run` and `demo`: a synthetic place, the pipeline headless, the main job."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli.common import at_least_option, fail, refuse_busy
from pipelines.core.settings import Settings


@click.command()
@click.option("--people", default=20_000, show_default=True, help="People in the synthetic place.")
@click.option(
    "--seed", default=2026, show_default=True, help="Random seed (same seed, same files)."
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Folder to write the place to."
)
@at_least_option(
    "--month",
    default=1,
    minimum=1,
    help="Also write the place's later months up to this one (2 = the month after the first "
    "delivery) under OUT/months/<period>/: new events, births and people moving in, moves "
    "and name changes. Month 1 is generated first if OUT has none.",
)
def synth(people: int, seed: int, out: Path, month: int) -> None:
    """Generate a synthetic place: partner extracts, reference data and ground truth."""
    from pipelines.tooling.synth import generate_place

    if month > 1 and (out / "manifest.json").exists():
        _later_months(out, month)
        return
    manifest = generate_place(people=people, seed=seed, out=out)
    click.echo(
        f"wrote a synthetic place of {people:,} people in {manifest.households:,} households "
        f"({manifest.wards} wards, {manifest.lsoas} LSOAs) to {out}"
    )
    for summary in manifest.datasets:
        click.echo(f"  {summary.partner:8} {summary.dataset:28} {summary.rows:>10,} records")
    click.echo(
        f"ground truth: {out / 'truth' / 'ground_truth.csv'}; planted effect: "
        f"{out / 'truth' / 'planted_effect.json'}"
    )
    if month > 1:
        _later_months(out, month)


def _later_months(out: Path, month: int) -> None:
    from pipelines.tooling.synth.months import generate_months

    for later in generate_months(out, month):
        click.echo(
            f"month {later.month} ({later.period}): {later.records:,} new records, {later.born} born, "
            f"{later.moved_in} moved in, {later.households_moved} households moved, "
            f"{later.names_changed} names changed -> {later.out}"
        )


def _waiting(holder) -> None:
    click.echo(
        f"waiting: {holder.describe() if holder else 'another run'} holds the hub's run lock; "
        "this run starts when it ends",
        err=True,
    )


@click.command()
@click.option(
    "--retrain", is_flag=True, help="Retrain the linkage model instead of reusing the saved one."
)
@click.option(
    "--full-relink",
    is_flag=True,
    help="Score every pair of identity records, not only those touching records new or changed "
    "since the last run (a retrain always does).",
)
@click.option(
    "--wait",
    "wait",
    type=click.FloatRange(min=0),
    is_flag=False,
    flag_value=float("inf"),
    default=None,
    metavar="[SECONDS]",
    help="If another run holds the hub's run lock, wait for it (at most SECONDS if given) instead of "
    "refusing at once with exit code 75.",
)
@click.option(
    "--month",
    "months",
    multiple=True,
    metavar="YYYY-MM",
    help="Backfill a reporting month (repeatable): re-materialise its landing partitions from the "
    "deliveries the hub holds for it, then link, model and publish again.",
)
def run(retrain: bool, full_relink: bool, wait: float | None, months: tuple[str, ...]) -> None:
    """Materialise every asset headless (inbox -> published file).

    A run with an empty inbox and nothing else new since the last publication skips linkage and
    publication and says so; the published file stays as it is.

    One run at a time writes the warehouse: if another holds the hub's run lock, this exits 75
    at once naming it (or waits, with --wait). Exit codes (README: exit codes): 0 succeeded;
    1 failed; 3 completed with deliveries held; 4 publication blocked (it would have lost a
    source); 5 a pre-flight check failed; 75 another run holds the hub."""
    from pipelines.core.preflight import PreflightFailed, preflight
    from pipelines.core.run_lock import RunLockBusy, run_lock
    from pipelines.hub.delivery_months import parse_month

    # Nothing here imports Dagster (seconds on a busy machine) before the run lock is taken, so a
    # run refused because another holds the hub answers at once.
    try:
        months = tuple(parse_month(m) for m in months)
    except ValueError as exc:
        fail(str(exc))
    settings = Settings.from_env()
    patience = (
        0 if wait is None else (None if wait == float("inf") else wait)
    )  # None: as long as it takes
    try:
        preflight(
            settings
        )  # reads only: a run that cannot start leaves no file behind, not even the lock's
    except PreflightFailed as exc:
        from pipelines.orchestration.run_outcome import PREFLIGHT_FAILED

        click.echo(f"error: {exc}", err=True)
        click.echo(
            f"pipeline run not started (exit {PREFLIGHT_FAILED}): pre-flight check failed", err=True
        )
        sys.exit(PREFLIGHT_FAILED)
    try:
        # Taken before Dagster is imported (seconds on a busy machine), so a refusal comes at once;
        # run_pipeline takes it again (same process) and names its run in it.
        with run_lock(settings.home, "placelink run", wait=patience, on_wait=_waiting):
            from pipelines.core import progress
            from pipelines.orchestration.run import (
                failure_messages,
                nothing_new,
                partner_months,
                run_pipeline,
            )
            from pipelines.orchestration.run_outcome import run_outcome
            from pipelines.outcomes.sql_models import model_plan

            with (
                progress.showing()
            ):  # bars on a terminal, a line every 30 s otherwise; on standard error
                result = run_pipeline(
                    settings,
                    retrain=retrain,
                    full_relink=full_relink,
                    months=months,
                    on_alert=lambda sent: click.echo(sent.describe(), err=bool(sent.failed)),
                )
    except RunLockBusy as exc:
        refuse_busy(
            exc,
            "let it finish (it shows in the Dagster UI), then run again, or `placelink run --wait` "
            "to start as soon as it ends",
        )
    for message in model_plan(Settings.from_env()).messages():
        click.echo(f"note: {message}")
    outcome = run_outcome(result, str(settings.published))
    if not result.success:
        for message in failure_messages(result):
            click.echo(f"failed: {message}", err=True)
    landed = partner_months(result)
    if landed:
        click.echo(f"partner-months materialised: {', '.join(landed)}")
    elif months and result.success:
        click.echo(
            f"no delivery held for {', '.join(months)}: no landing partition to re-materialise"
        )
    for line in outcome.details:
        click.echo(line, err=not outcome.success)
    skipped = nothing_new(result) if outcome.success else None
    click.echo(
        f"pipeline run {result.run_id} succeeded: {skipped}" if skipped else outcome.summary,
        err=not outcome.success,
    )
    if outcome.code:
        sys.exit(outcome.code)


@click.command()
@click.option(
    "--people", default=20_000, show_default=True, help="People in the demo's synthetic place."
)
@click.option(
    "--seed",
    default=2026,
    show_default=True,
    help="Random seed of the synthetic place (same seed, same place).",
)
@at_least_option(
    "--months",
    default=1,
    minimum=1,
    help="Run the hub month after month: 2 also delivers and runs the place's next month "
    "(NHS deltas, council snapshots) as of its delivery day.",
)
def demo(people: int, seed: int, months: int) -> None:
    """Generate a place, run every partner's kit and the hub pipeline, and print a summary."""
    from pipelines.core.preflight import PreflightFailed, preflight
    from pipelines.core.run_lock import RunLockBusy
    from pipelines.orchestration.run_outcome import PREFLIGHT_FAILED
    from pipelines.tooling.demo import DemoRefused, format_summary, run_demo

    try:
        preflight(Settings.from_env())
    except PreflightFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(PREFLIGHT_FAILED)
    try:
        report = run_demo(
            Settings.from_env(), people=people, seed=seed, echo=click.echo, months=months
        )
    except DemoRefused as exc:
        fail(str(exc))
    except RunLockBusy as exc:
        refuse_busy(exc)
    click.echo(format_summary(report))
    if report.exit_code:
        click.echo(report.outcome, err=True)
        sys.exit(report.exit_code)
    if report.failures:
        sys.exit(1)
