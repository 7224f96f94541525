"""The `placelink` command, grouped by who uses it; each module registers its own group."""

from __future__ import annotations

import click

from pipelines.cli import analyst, audit, bench, contracts, hub, linkage, partner, place


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="placelink", prog_name="placelink", message="%(prog)s %(version)s"
)
def main() -> None:
    """placelink: pseudonymise at source, enforce data-sharing agreements, link, publish outcomes."""


main.add_command(place.synth)
main.add_command(partner.partner)
main.add_command(hub.hub)
main.add_command(linkage.linkage)
main.add_command(contracts.contracts)
main.add_command(audit.audit)
main.add_command(place.run)
main.add_command(place.demo)
main.add_command(bench.bench)
main.add_command(analyst.sql)
