"""`placelink partner ...`: the partner kit, run at the partner on clear data before anything is sent."""
from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.common import fail


@click.group()
def partner() -> None:
    """The partner kit: runs at the partner, on clear data, before anything is sent."""


@partner.command("linkage-key")
@click.option("--out", type=click.Path(path_type=Path), required=True)
def linkage_key(out: Path) -> None:
    """Create a new linkage key (shared among partners, never with the hub)."""
    from pipelines.partner_kit.tokens import LinkageKey

    if out.exists():
        fail(f"{out} exists; a linkage key is never overwritten (every token depends on it)")
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
    from pipelines.partner_kit.errors import PartnerKitError
    from pipelines.partner_kit.tokens import LinkageKey

    try:
        contract = load_contract(contract_path)
        if dataset is None:
            dataset = next(iter(contract.datasets)) if len(contract.datasets) == 1 else input_path.stem
        prepared = prepare_extract(contract, dataset, input_path, out, LinkageKey.load(key_path),
                                   postcode_lookup, opt_outs=opt_outs, period=period)
    except (ContractError, PartnerKitError, OSError) as exc:
        fail(str(exc))
    click.echo(f"extract for the hub:   {prepared.extract_path}")
    click.echo(f"partner-only lookup:   {prepared.lookup_path} (never send this file)")
    click.echo(f"rows: {prepared.rows_in:,} in, {prepared.rows_out:,} out"
               + (f", {prepared.opted_out_rows:,} removed by the National Data Opt-out" if prepared.opted_out_rows else ""))
    invalid = {k: v for k, v in prepared.header.invalid_counts.items() if v}
    if invalid:
        click.echo("invalid values (sent as empty tokens): " + ", ".join(f"{k} {v:,}" for k, v in sorted(invalid.items())))
