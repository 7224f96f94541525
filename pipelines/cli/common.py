"""What every command group shares."""
from __future__ import annotations

import sys

import click


def fail(message: str) -> None:
    """Print a user-facing error and exit 2 (bad input), never a traceback."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)
