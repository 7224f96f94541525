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


def read_passphrase(passphrase_file: Path | None, env_var: str) -> bytes | None:
    """A key passphrase from a file (first line) or an environment variable; never a CLI argument,
    which other users of the machine could read in the process list."""
    import os

    if passphrase_file is not None:
        return passphrase_file.read_text(encoding="utf-8").splitlines()[0].encode() or None
    return os.environ.get(env_var, "").encode() or None


@partner.command("keygen")
@click.option("--partner", "partner_id", required=True, help="Partner id as in the contracts (e.g. nhs).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Private key file to create (mode 0600); the public key goes beside it as .pub.")
@click.option("--passphrase-file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Protect the private key with the passphrase in this file "
                   "(or set PLACELINK_SIGNING_KEY_PASSPHRASE).")
def keygen(partner_id: str, out: Path, passphrase_file: Path | None) -> None:
    """Create the partner's Ed25519 signing key pair; send only the .pub file to the hub."""
    from pipelines.keys import KeyFileError, SigningKey

    public_path = out.with_name(out.name.removesuffix(".key") + ".pub")
    if out.exists() or public_path.exists():
        fail(f"{out if out.exists() else public_path} exists; key files are never overwritten")
    passphrase = read_passphrase(passphrase_file, "PLACELINK_SIGNING_KEY_PASSPHRASE")
    key = SigningKey.generate(partner_id)
    try:
        key.save(out, passphrase)
        key.public.save(public_path)
    except KeyFileError as exc:
        fail(str(exc))
    click.echo(f"signing key (private, mode 0600{', passphrase-protected' if passphrase else ''}): {out}")
    click.echo(f"public key for the hub's IG officer: {public_path}")
    click.echo(f"fingerprint: {key.fingerprint}")
    click.echo("The IG officer registers it: `placelink hub register-partner-key --contract CONTRACT.yaml "
               f"--public-key {public_path.name}`")


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
@click.option("--period", help="Reporting period YYYY-MM (default: this month; PLACELINK_AS_OF moves it).")
@click.option("--delivery", "delivery_kind", type=click.Choice(["full", "delta"]),
              help="A full snapshot of your records, or a delta (new and changed records since the last "
                   "delivery); default: what the contract's delivery term says, else full.")
@click.option("--signing-key", "signing_key_path", type=click.Path(path_type=Path, exists=True), required=True,
              help="Your signing key (`placelink partner keygen`).")
@click.option("--passphrase-file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Passphrase of the signing key (or set PLACELINK_SIGNING_KEY_PASSPHRASE).")
@click.option("--hub-key", "hub_key_path", type=click.Path(path_type=Path, exists=True), required=True,
              help="The hub's public key (hub.pub, from `placelink hub keygen`).")
def prepare(contract_path: Path, dataset: str | None, input_path: Path, out: Path, key_path: Path,
            postcode_lookup: Path, opt_outs: Path | None, period: str | None, delivery_kind: str | None,
            signing_key_path: Path, passphrase_file: Path | None, hub_key_path: Path) -> None:
    """Normalise, minimise, apply opt-outs and tokenise a raw extract, then encrypt it for the
    hub and sign it (a .plx envelope)."""
    from pipelines.clock import Clock
    from pipelines.contracts import ContractError, load_contract
    from pipelines.keys import HubPublicKey, KeyFileError, SigningKey
    from pipelines.partner_kit.errors import PartnerKitError
    from pipelines.partner_kit.prepare import prepare_extract
    from pipelines.partner_kit.seal import seal_prepared
    from pipelines.partner_kit.tokens import LinkageKey

    try:
        # Keys first: a wrong passphrase should stop the run before any work is done.
        signing_key = SigningKey.load(signing_key_path,
                                      read_passphrase(passphrase_file, "PLACELINK_SIGNING_KEY_PASSPHRASE"))
        hub_key = HubPublicKey.load(hub_key_path)
        contract = load_contract(contract_path)
        if signing_key.partner_id != contract.partner_id:
            fail(f"{signing_key_path.name} is partner '{signing_key.partner_id}'s signing key, but contract "
                 f"{contract.label} is for partner '{contract.partner_id}'")
        if dataset is None:
            dataset = next(iter(contract.datasets)) if len(contract.datasets) == 1 else input_path.stem
        prepared = prepare_extract(contract, dataset, input_path, out, LinkageKey.load(key_path),
                                   postcode_lookup, opt_outs=opt_outs, period=period,
                                   now=Clock.from_env().now(), delivery_kind=delivery_kind)
        sealed = seal_prepared(prepared, signing_key, hub_key)
    except (ContractError, PartnerKitError, KeyFileError, OSError) as exc:
        fail(str(exc))
    prepared = sealed.prepared
    click.echo(f"envelope for the hub:  {sealed.envelope_path} (encrypted for hub key "
               f"{hub_key.fingerprint[:23]}…, {hub_key.kem}; signed by {signing_key.fingerprint[:23]}…)")
    click.echo(f"partner-only copy:     {prepared.extract_path} (the clear extract inside the envelope)")
    click.echo(f"partner-only lookup:   {prepared.lookup_path} (never send this file)")
    click.echo(f"rows: {prepared.rows_in:,} in, {prepared.rows_out:,} out"
               + (f", {prepared.opted_out_rows:,} removed by the National Data Opt-out" if prepared.opted_out_rows else ""))
    invalid = {k: v for k, v in prepared.header.invalid_counts.items() if v}
    if invalid:
        click.echo("invalid values (sent as empty tokens): " + ", ".join(f"{k} {v:,}" for k, v in sorted(invalid.items())))
