"""`placelink synth`, `run` and `demo`: a synthetic place, the pipeline headless, the main job."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from pipelines.cli.common import fail
from pipelines.settings import Settings


@click.command()
@click.option("--people", default=20_000, show_default=True, help="People in the synthetic place.")
@click.option("--seed", default=2026, show_default=True, help="Random seed (same seed, same files).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the place to.")
@click.option("--month", default=1, show_default=True, type=click.IntRange(min=1),
              help="Also write the place's later months up to this one (2 = the month after the first "
                   "delivery) under OUT/months/<period>/: new events, births and people moving in, moves "
                   "and name changes. Month 1 is generated first if OUT has none.")
def synth(people: int, seed: int, out: Path, month: int) -> None:
    """Generate a synthetic place: partner extracts, reference data and ground truth."""
    from pipelines.synth import generate_place

    if month > 1 and (out / "manifest.json").exists():
        _later_months(out, month)
        return
    manifest = generate_place(people=people, seed=seed, out=out)
    click.echo(f"wrote a synthetic place of {people:,} people in {manifest.households:,} households "
               f"({manifest.wards} wards, {manifest.lsoas} LSOAs) to {out}")
    for summary in manifest.datasets:
        click.echo(f"  {summary.partner:8} {summary.dataset:28} {summary.rows:>10,} records")
    click.echo(f"ground truth: {out / 'truth' / 'ground_truth.csv'}; planted effect: "
               f"{out / 'truth' / 'planted_effect.json'}")
    if month > 1:
        _later_months(out, month)


def _later_months(out: Path, month: int) -> None:
    from pipelines.synth.months import generate_months

    for later in generate_months(out, month):
        click.echo(f"month {later.month} ({later.period}): {later.records:,} new records, {later.born} born, "
                   f"{later.moved_in} moved in, {later.households_moved} households moved, "
                   f"{later.names_changed} names changed -> {later.out}")


@click.command()
@click.option("--retrain", is_flag=True, help="Retrain the linkage model instead of reusing the saved one.")
@click.option("--month", "months", multiple=True, metavar="YYYY-MM",
              help="Backfill a reporting month (repeatable): re-materialise its landing partitions from the "
                   "deliveries the hub holds for it, then link, model and publish again.")
def run(retrain: bool, months: tuple[str, ...]) -> None:
    """Materialise every asset headless (inbox -> published file).

    A run with an empty inbox and nothing else new since the last publication skips linkage and
    publication and says so; the published file stays as it is."""
    from assets.sql_models import model_plan
    from pipelines.delivery_months import parse_month
    from pipelines.run import failure_messages, nothing_new, partner_months, run_pipeline

    try:
        months = tuple(parse_month(m) for m in months)
    except ValueError as exc:
        fail(str(exc))
    result = run_pipeline(Settings.from_env(), retrain=retrain, months=months,
                          on_alert=lambda sent: click.echo(sent.describe(), err=bool(sent.failed)))
    for message in model_plan(Settings.from_env()).messages():
        click.echo(f"note: {message}")
    if not result.success:
        for message in failure_messages(result):
            click.echo(f"failed: {message}", err=True)
        sys.exit(1)
    landed = partner_months(result)
    if landed:
        click.echo(f"partner-months materialised: {', '.join(landed)}")
    elif months:
        click.echo(f"no delivery held for {', '.join(months)}: no landing partition to re-materialise")
    skipped = nothing_new(result)
    if skipped:
        click.echo(f"pipeline run {result.run_id} succeeded: {skipped}")
        return
    click.echo(f"pipeline run {result.run_id} succeeded; published {Settings.from_env().published}")


@click.command()
@click.option("--people", default=20_000, show_default=True, help="People in the demo's synthetic place.")
@click.option("--seed", default=2026, show_default=True, help="Random seed of the synthetic place (same seed, same place).")
@click.option("--months", default=1, show_default=True, type=click.IntRange(min=1),
              help="Run the hub month after month: 2 also delivers and runs the place's next month "
                   "(NHS deltas, council snapshots) as of its delivery day.")
def demo(people: int, seed: int, months: int) -> None:
    """Generate a place, run every partner's kit and the hub pipeline, and print a summary."""
    from pipelines.demo import DemoRefused, format_summary, run_demo

    try:
        report = run_demo(Settings.from_env(), people=people, seed=seed, echo=click.echo, months=months)
    except DemoRefused as exc:
        fail(str(exc))
    click.echo(format_summary(report))
    if report.failures:
        sys.exit(1)
