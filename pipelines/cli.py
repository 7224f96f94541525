"""The `placelink` command, grouped by who uses it: partners, the hub, IG officers, everyone."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pipelines.settings import Settings


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """placelink: pseudonymise at source, enforce data-sharing agreements, link, publish outcomes."""


@main.command()
@click.option("--people", default=20_000, show_default=True, help="People in the synthetic place.")
@click.option("--seed", default=2026, show_default=True, help="Random seed (same seed, same files).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write the place to.")
def synth(people: int, seed: int, out: Path) -> None:
    """Generate a synthetic place: partner extracts, reference data and ground truth."""
    from pipelines.synth import generate_place

    manifest = generate_place(people=people, seed=seed, out=out)
    click.echo(f"wrote a synthetic place of {people:,} people to {out}")
    click.echo(json.dumps(getattr(manifest, "row_counts", None) or {}, indent=2))


@main.group()
def partner() -> None:
    """The partner kit: runs at the partner, on clear data, before anything is sent."""


@partner.command("linkage-key")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def linkage_key(out: Path) -> None:
    """Create a new linkage key (shared among partners, never with the hub)."""
    from pipelines.partner_kit.tokens import LinkageKey

    if out.exists():
        _fail(f"{out} exists; a linkage key is never overwritten (every token depends on it)")
    LinkageKey.generate().save(out)
    click.echo(f"wrote a new linkage key to {out} (mode 0600). Share it only with partners, never the hub.")


@partner.command()
@click.option("--contract", "contract_path", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--dataset", help="Dataset of the contract (default: the only one, or the input file's stem).")
@click.option("--input", "input_path", type=click.Path(path_type=Path), required=True,
              help="Raw extract (CSV or Parquet) with clear identifiers.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the hub-bound extract.")
@click.option("--linkage-key", "key_path", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--postcode-lookup", type=click.Path(path_type=Path, exists=True), required=True,
              help="postcode -> lsoa_code, ward_code CSV (ONSPD-like).")
@click.option("--opt-outs", type=click.Path(path_type=Path, exists=True),
              help="National Data Opt-out list (NHS numbers); required when the contract says it applies.")
@click.option("--period", help="Reporting period YYYY-MM (default: this month).")
def prepare(contract_path: Path, dataset: str | None, input_path: Path, out: Path, key_path: Path,
            postcode_lookup: Path, opt_outs: Path | None, period: str | None) -> None:
    """Normalise, minimise, apply opt-outs and tokenise a raw extract for the hub."""
    from pipelines.contracts import ContractError, load_contract
    from pipelines.partner_kit.prepare import prepare_extract
    from pipelines.partner_kit.readers import RawExtractError
    from pipelines.partner_kit.tokens import LinkageKey

    try:
        contract = load_contract(contract_path)
        if dataset is None:
            dataset = next(iter(contract.datasets)) if len(contract.datasets) == 1 else input_path.stem
        prepared = prepare_extract(contract, dataset, input_path, out, LinkageKey.load(key_path),
                                   postcode_lookup, opt_outs=opt_outs, period=period)
    except (ContractError, RawExtractError, ValueError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"extract for the hub:   {prepared.extract_path}")
    click.echo(f"partner-only lookup:   {prepared.lookup_path} (never send this file)")
    click.echo(f"rows: {prepared.rows_in:,} in, {prepared.rows_out:,} out"
               + (f", {prepared.opted_out_rows:,} removed by the National Data Opt-out" if prepared.opted_out_rows else ""))
    invalid = {k: v for k, v in prepared.invalid_counts.items() if v}
    if invalid:
        click.echo("invalid values (sent as empty tokens): " + ", ".join(f"{k} {v:,}" for k, v in sorted(invalid.items())))


@main.group()
def hub() -> None:
    """Hub operations."""


@hub.group()
def quarantine() -> None:
    """Extracts held at arrival, with the reason."""


@quarantine.command("list")
def quarantine_list() -> None:
    from pipelines.hub.quarantine import held_files

    held = held_files(Settings.from_env().quarantine)
    if not held:
        click.echo("no extracts are held in quarantine")
    for item in held:
        click.echo(f"{item['held_as']}\t{item['received_at']}\t{item['check']}\t{item.get('contract') or '-'}")


@quarantine.command("show")
@click.argument("name")
def quarantine_show(name: str) -> None:
    from pipelines.hub.quarantine import held_files

    for item in held_files(Settings.from_env().quarantine):
        if item["held_as"] == name:
            click.echo(item["message"])
            return
    _fail(f"no held extract named {name}; see `placelink hub quarantine list`")


@main.group()
def contracts() -> None:
    """Data-sharing agreements (for IG officers)."""


@contracts.command("check")
@click.option("--dir", "folder", type=click.Path(path_type=Path), help="Contracts folder (default: contracts/).")
def contracts_check(folder: Path | None) -> None:
    """Validate every contract; exit 1 on any error (for CI)."""
    from pipelines.contracts import load_contracts

    valid, problems = load_contracts(folder or Settings.from_env().contracts_dir)
    for contract in valid.values():
        click.echo(f"ok     {contract.path.name}: {contract.label}, {contract.terms.approval_status}")
    for path, error in problems.items():
        click.echo(f"ERROR  {error}")
    sys.exit(1 if problems else 0)


@contracts.command("list")
def contracts_list() -> None:
    from pipelines.contracts import load_contracts

    valid, problems = load_contracts(Settings.from_env().contracts_dir)
    for c in valid.values():
        click.echo(f"{c.id}\t{c.version}\t{c.terms.approval_status}\t{c.partner_id}\texpires {c.terms.expires}")
    for path in problems:
        click.echo(f"{path.stem}\t-\tINVALID (see `placelink contracts check`)")


@main.group()
def audit() -> None:
    """The append-only audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Exit 0 if the hash chain is intact; otherwise name the first bad line."""
    from pipelines.audit import AuditLog

    log = AuditLog(Settings.from_env().audit_dir)
    problem = log.verify()
    if problem:
        click.echo(f"audit log {log.path} is NOT intact: line {problem.line}: {problem.reason}", err=True)
        sys.exit(1)
    click.echo(f"audit log {log.path} is intact ({sum(1 for _ in log.events())} events)")


@main.command()
@click.option("--retrain", is_flag=True, help="Retrain the linkage model instead of reusing the saved one.")
def run(retrain: bool) -> None:
    """Materialise every asset headless (inbox -> published file)."""
    from pipelines.run import failure_messages, run_pipeline

    result = run_pipeline(Settings.from_env(), retrain=retrain)
    if not result.success:
        for message in failure_messages(result):
            click.echo(f"failed: {message}", err=True)
        sys.exit(1)
    click.echo(f"pipeline run {result.run_id} succeeded; published {Settings.from_env().published}")


@main.command()
@click.option("--people", default=20_000, show_default=True)
@click.option("--seed", default=2026, show_default=True)
def demo(people: int, seed: int) -> None:
    """Generate a place, run every partner's kit and the hub pipeline, and print a summary."""
    from pipelines.demo import DemoRefused, format_summary, run_demo

    try:
        report = run_demo(Settings.from_env(), people=people, seed=seed, echo=click.echo)
    except DemoRefused as exc:
        _fail(str(exc))
    click.echo(format_summary(report))
    if report.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
