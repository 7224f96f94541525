"""`placelink hub ...`: hub operations."""
from __future__ import annotations


import click

from pipelines.cli.common import fail
from pipelines.settings import Settings


@click.group()
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
    fail(f"no held extract named {name}; see `placelink hub quarantine list`")
