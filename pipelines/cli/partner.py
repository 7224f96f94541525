"""`placelink partner ...`: the partner kit, run at the partner on clear data before anything is sent."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.common import existing_path_option, fail, new_key_pair_options, write_key_pair


def sealing_keys(command):
    """The options of a command that seals an envelope for the hub: the partner's signing key,
    its passphrase file, and the hub's public key (``signing_key_path``, ``passphrase_file``,
    ``hub_key_path``); the same in ``prepare`` and ``withdraw``."""
    options = [
        existing_path_option(
            "--signing-key",
            "signing_key_path",
            required=True,
            help="Your signing key (from `placelink partner keygen`).",
        ),
        existing_path_option(
            "--passphrase-file",
            dir_okay=False,
            help="Passphrase of the signing key (or set PLACELINK_SIGNING_KEY_PASSPHRASE).",
        ),
        existing_path_option(
            "--hub-key",
            "hub_key_path",
            required=True,
            help="The hub's public key (hub.pub, from `placelink hub keygen`: the hub's IG officer "
            "sends it).",
        ),
    ]
    for option in reversed(options):  # click lists options in the order they are written
        command = option(command)
    return command


@click.group()
def partner() -> None:
    """The partner kit: runs at the partner, on clear data, before anything is sent."""


@partner.command("linkage-key")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="File to write the new linkage key to (keep it among the partners; never send it to the hub).",
)
def linkage_key(out: Path) -> None:
    """Create a new linkage key (shared among partners, never with the hub)."""
    from pipelines.partner_kit.tokens import LinkageKey

    if out.exists():
        fail(f"{out} exists; a linkage key is never overwritten (every token depends on it)")
    LinkageKey.generate().save(out)
    click.echo(
        f"wrote a new linkage key to {out} (mode 0600). Share it only with partners, never the hub."
    )


def read_passphrase(passphrase_file: Path | None, env_var: str) -> bytes | None:
    """A key passphrase from a file (first line) or an environment variable; never a CLI argument,
    which other users of the machine could read in the process list."""
    import os

    if passphrase_file is not None:
        return passphrase_file.read_text(encoding="utf-8").splitlines()[0].encode() or None
    return os.environ.get(env_var, "").encode() or None


@partner.command("keygen")
@click.option(
    "--partner", "partner_id", required=True, help="Partner id as in the contracts (e.g. nhs)."
)
@new_key_pair_options("PLACELINK_SIGNING_KEY_PASSPHRASE")
def keygen(partner_id: str, out: Path, passphrase_file: Path | None) -> None:
    """Create the partner's Ed25519 signing key pair; send only the .pub file to the hub."""
    from pipelines.exchange.keys import SigningKey

    passphrase = read_passphrase(passphrase_file, "PLACELINK_SIGNING_KEY_PASSPHRASE")
    public_path = write_key_pair(SigningKey.generate(partner_id), out, passphrase, "signing key")
    click.echo(
        "The IG officer registers it: `placelink hub register-partner-key --contract CONTRACT.yaml "
        f"--public-key {public_path.name}`"
    )


def value_counts_summary(
    invalid: dict[str, int],
    blank: dict[str, int],
    rows: int,
    date_formats: tuple = (),
    absent: tuple[str, ...] = (),
    postcode_format: str = "uk",
) -> list[str]:
    """The lines of `partner prepare`'s summary about values sent empty: invalid ones with what
    the kit expects of each field, blank ones (empty or only spaces), and a warning for a field
    with no usable value at all (a wrong column mapped, or a format the kit does not read).
    Counts only, never values."""
    from pipelines.partner_kit.normalise import EARLIEST_DATE_OF_BIRTH

    formats = " or ".join(["yyyy-mm-dd", *(f.declared for f in date_formats)])
    expected = {
        "nhs_number": "not 10 digits with a valid check digit",
        "given_name": "no letters",
        "family_name": "no letters",
        "date_of_birth": f"not a date written {formats} from {EARLIEST_DATE_OF_BIRTH} to today",
        "postcode": (
            "not a postal code: 2-10 letters and digits"
            if postcode_format == "any"
            else "not a UK postcode (AB1 2CD); another country's are read with the contract's "
            "postcodeFormat: any"
        ),
        "sex": "not M, F, U or an NHS sex code",
        "uprn": "not 1-12 digits",
    }
    lines = []
    bad = {k: v for k, v in invalid.items() if v}
    if bad:
        lines.append(
            "invalid values (sent as empty tokens): "
            + "; ".join(
                f"{k} {v:,}" + (f" ({expected[k]})" if k in expected else "")
                for k, v in sorted(bad.items())
            )
        )
    empty = {k: v for k, v in blank.items() if v and k not in absent}
    if empty:
        lines.append(
            "blank values (sent empty): "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(empty.items()))
        )
    unusable = sorted(k for k, v in bad.items() if rows and v + blank.get(k, 0) >= rows)
    if unusable:
        lines.append(
            f"warning: no usable value in {', '.join(unusable)}: every value is invalid or blank, "
            "so the hub gets nothing to link on there; check which column your mapping names and "
            "the format above"
        )
    return lines


@partner.command()
@existing_path_option(
    "--contract",
    "contract_path",
    required=True,
    help="The data-sharing agreement (contracts/<id>.yaml) the extract is sent under.",
)
@click.option(
    "--dataset", help="Dataset of the contract (default: the only one, or the input file's stem)."
)
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Raw extract (CSV, Parquet or an Excel .xlsx workbook) with clear identifiers.",
)
@click.option(
    "--sheet",
    help="The sheet of an .xlsx workbook that holds the extract (needed when it has several).",
)
@existing_path_option(
    "--mapping",
    "mapping_path",
    dir_okay=False,
    help="YAML file naming which of your columns holds what (README: your own column names).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Folder for the hub-bound extract.",
)
@existing_path_option(
    "--linkage-key",
    "key_path",
    required=True,
    help="The partners' shared linkage key (from `placelink partner linkage-key`).",
)
@existing_path_option(
    "--postcode-lookup",
    help="Postcode -> LSOA (and ward) lookup: ONS's, as downloaded, or a CSV of postcode, "
    "lsoa_code, ward_code. Without it, area columns are sent empty.",
)
@existing_path_option(
    "--opt-outs",
    help="National Data Opt-out list (NHS numbers); required when the contract says it applies.",
)
@click.option(
    "--period", help="Reporting period YYYY-MM (default: this month; PLACELINK_AS_OF moves it)."
)
@click.option(
    "--delivery",
    "delivery_kind",
    type=click.Choice(["full", "delta"]),
    help="A full snapshot of your records, or a delta (new and changed records since the last "
    "delivery); default: what the contract's delivery term says, else full.",
)
@sealing_keys
def prepare(
    contract_path: Path,
    dataset: str | None,
    input_path: Path,
    sheet: str | None,
    mapping_path: Path | None,
    out: Path,
    key_path: Path,
    postcode_lookup: Path | None,
    opt_outs: Path | None,
    period: str | None,
    delivery_kind: str | None,
    signing_key_path: Path,
    passphrase_file: Path | None,
    hub_key_path: Path,
) -> None:
    """Normalise, minimise, apply opt-outs and tokenise a raw extract, then encrypt it for the
    hub and sign it (a .plx envelope)."""
    from pipelines.core import progress
    from pipelines.core.clock import Clock
    from pipelines.core.stages import stage
    from pipelines.exchange.keys import HubPublicKey, KeyFileError, SigningKey
    from pipelines.governance.contracts import ContractError, load_contract
    from pipelines.partner_kit.errors import PartnerKitError
    from pipelines.partner_kit.prepare import prepare_extract
    from pipelines.partner_kit.seal import seal_prepared
    from pipelines.partner_kit.tokens import LinkageKey

    try:
        # Keys first: a wrong passphrase should stop the run before any work is done.
        signing_key = SigningKey.load(
            signing_key_path, read_passphrase(passphrase_file, "PLACELINK_SIGNING_KEY_PASSPHRASE")
        )
        hub_key = HubPublicKey.load(hub_key_path)
        contract = load_contract(contract_path)
        if signing_key.partner_id != contract.partner_id:
            fail(
                f"{signing_key_path.name} is partner '{signing_key.partner_id}'s signing key, but contract "
                f"{contract.label} is for partner '{contract.partner_id}'"
            )
        if dataset is None:
            dataset = (
                next(iter(contract.datasets)) if len(contract.datasets) == 1 else input_path.stem
            )
        with progress.showing():  # each step of the kit, on standard error
            prepared = prepare_extract(
                contract,
                dataset,
                input_path,
                out,
                LinkageKey.load(key_path),
                postcode_lookup,
                opt_outs=opt_outs,
                period=period,
                now=Clock.from_env().now(),
                mapping=mapping_path,
                sheet=sheet,
                delivery_kind=delivery_kind,
            )
            with stage("envelope: encrypt and sign"):
                sealed = seal_prepared(prepared, signing_key, hub_key)
    except (ContractError, PartnerKitError, KeyFileError, OSError) as exc:
        fail(str(exc))
    prepared = sealed.prepared
    click.echo(
        f"envelope for the hub:  {sealed.envelope_path} (encrypted for hub key "
        f"{hub_key.fingerprint[:23]}…, {hub_key.kem}; signed by {signing_key.fingerprint[:23]}…)"
    )
    click.echo(
        f"partner-only copy:     {prepared.extract_path} (the clear extract inside the envelope)"
    )
    click.echo(f"partner-only lookup:   {prepared.lookup_path} (never send this file)")
    click.echo(
        f"rows: {prepared.rows_in:,} in, {prepared.rows_out:,} out"
        + (
            f", {prepared.opted_out_rows:,} removed by the National Data Opt-out"
            if prepared.opted_out_rows
            else ""
        )
    )
    report = prepared.report
    for line in value_counts_summary(
        prepared.header.invalid_counts,
        report["missing_values"],
        prepared.rows_out,
        contract.dataset(dataset).date_formats,
        tuple(report["absent_identity_columns"]),
        report.get("postcode_format", {}).get("format", "uk"),
    ):
        click.echo(line)
    for column, formats in report.get("date_format_suggestions", {}).items():
        click.echo(
            f"dates: most {column} values are not yyyy-mm-dd but read as {' or '.join(formats)}"
            + (" (every day is 12 or less: only you know which)" if len(formats) > 1 else "")
            + ": declare the one your system writes as the dataset's dateFormats in the "
            "contract (README: Your own export)"
        )
    if report.get("postcode_district_only_rows"):
        click.echo(
            f"postcodes: {report['postcode_district_only_rows']:,} are a district alone (LS6), "
            "sent as the district (no postcode, sector or area)"
        )
    if "postcode_format" in report:
        read = report["postcode_format"]
        click.echo(
            f"postcodes: {read['other_country_rows']:,} not UK postcodes, sent as postal codes "
            "of another country (the hub links on them; no sector, district or area)"
            + (
                ""
                if read["declared"]
                else "; read so because most postcodes are; declare postcodeFormat: uk "
                "in the contract to send only UK postcodes"
            )
        )
    if report["absent_identity_columns"]:
        click.echo(
            "not in your extract (sent empty): " + ", ".join(report["absent_identity_columns"])
        )
    if report.get("areas_not_looked_up"):
        click.echo(
            f"no postcode lookup given: {', '.join(report['areas_not_looked_up'])} sent empty "
            "(the hub shows these people under 'unknown area'); README: where to get ONS's lookup"
        )
    unsplit = report.get("mapping_unusable_values", {})
    if any(unsplit.values()):
        click.echo(
            "values your mapping could not use (sent empty): "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(unsplit.items()) if v)
        )


@partner.command()
@existing_path_option(
    "--contract",
    "contract_path",
    required=True,
    help="The data-sharing agreement (contracts/<id>.yaml) the records were sent under.",
)
@click.option("--dataset", required=True, help="The contract dataset the records were sent in.")
@existing_path_option(
    "--record-ids",
    required=True,
    dir_okay=False,
    help="CSV with a record_id column (or one id per line): the records to withdraw.",
)
@existing_path_option(
    "--lookups",
    "lookup_dir",
    required=True,
    file_okay=False,
    help="The outbox (or its partner-only folder) where `partner prepare` kept the "
    "record_id -> record_token lookups of this dataset's extracts.",
)
@click.option(
    "--reason",
    type=click.Choice(["opt_out", "erasure"]),
    required=True,
    help="opt_out: the person opted out after delivery; erasure: the record must be erased.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Folder for the envelope to send."
)
@sealing_keys
def withdraw(
    contract_path: Path,
    dataset: str,
    record_ids: Path,
    lookup_dir: Path,
    reason: str,
    out: Path,
    signing_key_path: Path,
    passphrase_file: Path | None,
    hub_key_path: Path,
) -> None:
    """Withdraw records already sent: a signed, encrypted list of their record tokens (found in
    your own lookups) for the hub, which deletes them and everything derived from them."""
    from pipelines.core.clock import Clock
    from pipelines.exchange.keys import HubPublicKey, KeyFileError, SigningKey
    from pipelines.governance.contracts import ContractError, load_contract
    from pipelines.partner_kit.errors import PartnerKitError
    from pipelines.partner_kit.withdraw import partner_lookups, prepare_withdrawal

    try:
        signing_key = SigningKey.load(
            signing_key_path, read_passphrase(passphrase_file, "PLACELINK_SIGNING_KEY_PASSPHRASE")
        )
        contract = load_contract(contract_path)
        prepared = prepare_withdrawal(
            contract,
            dataset,
            record_ids,
            partner_lookups(lookup_dir, contract, dataset),
            out,
            signing_key,
            HubPublicKey.load(hub_key_path),
            reason,
            Clock.from_env().now(),
        )
    except (ContractError, PartnerKitError, KeyFileError, OSError) as exc:
        fail(str(exc))
    click.echo(
        f"withdrawal list for the hub: {prepared.envelope_path} ({prepared.withdrawn:,} record(s), "
        f"reason {reason}; encrypted for the hub and signed)"
    )
    if prepared.not_found:
        click.echo(
            f"{prepared.not_found:,} record id(s) were in none of your lookups for {contract.id}/{dataset} "
            "(never sent to the hub under this dataset): nothing to withdraw for them"
        )
    click.echo(f"partner-only copy and counts: {prepared.list_path.parent}")
