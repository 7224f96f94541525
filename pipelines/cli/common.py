"""What every command group shares."""

from __future__ import annotations

import sys
from pathlib import Path

import click


def fail(message: str) -> None:
    """Print a user-facing error and exit 2 (bad input), never a traceback."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def refuse_busy(
    exc, to_do: str = "let it finish (it shows in the Dagster UI), then try again"
) -> None:
    """Another run holds the hub's run lock: say who and what to do, exit 75 (EX_TEMPFAIL, try later)."""
    from pipelines.core.run_lock import EXIT_LOCKED

    click.echo(
        f"refused: {exc}. What to do: {to_do}. Meanwhile operators' commands (`placelink hub quarantine "
        "list`, `hub deliveries`, `contracts ...`, `audit ...`, `sql`) are safe: they never open the "
        "warehouse.",
        err=True,
    )
    sys.exit(EXIT_LOCKED)


def at_least_option(*names: str, default: int, minimum: int, help: str):
    """A whole-number option of at least ``minimum`` (click refuses less, naming the option), its
    default shown in ``--help``."""
    return click.option(
        *names, default=default, show_default=True, type=click.IntRange(min=minimum), help=help
    )


def existing_path_option(*names: str, help: str, required: bool = False, **path):
    """An option naming a file or folder that must exist (click refuses a missing one, naming the
    option, before the command runs); ``path`` narrows it as :class:`click.Path` does
    (``dir_okay=False``: a file)."""
    return click.option(
        *names,
        type=click.Path(path_type=Path, exists=True, **path),
        required=required,
        help=help,
    )


def new_key_pair_options(passphrase_variable: str):
    """The options of a command that creates a key pair: ``--out`` (the private key file; the public
    key goes beside it) and ``--passphrase-file`` (or ``passphrase_variable``), the same in every
    group that makes keys."""

    def add(command):
        command = existing_path_option(
            "--passphrase-file",
            dir_okay=False,
            help="Protect the private key with the passphrase in this file "
            f"(or set {passphrase_variable}).",
        )(command)
        return click.option(
            "--out",
            type=click.Path(path_type=Path),
            required=True,
            help="Private key file to create (mode 0600); the public key goes beside it as .pub.",
        )(command)

    return add


def write_key_pair(key, out: Path, passphrase: bytes | None, what: str) -> Path:
    """Save a new private ``key`` at ``out`` (mode 0600, passphrase-protected if given) and its public
    half beside it as ``.pub``, never overwriting either; print where, and the fingerprint. Returns
    the public key's path (what goes to the hub's IG officer)."""
    from pipelines.exchange.keys import KeyFileError

    public_path = out.with_name(out.name.removesuffix(".key") + ".pub")
    if out.exists() or public_path.exists():
        fail(f"{out if out.exists() else public_path} exists; key files are never overwritten")
    try:
        key.save(out, passphrase)
        key.public.save(public_path)
    except KeyFileError as exc:
        fail(str(exc))
    click.echo(
        f"{what} (private, mode 0600{', passphrase-protected' if passphrase else ''}): {out}"
    )
    click.echo(f"public key for the hub's IG officer: {public_path}")
    click.echo(f"fingerprint: {key.fingerprint}")
    return public_path
