"""`placelink sql`: query the published file read-only, for analysts without a DuckDB CLI.

PyPI's ``duckdb-cli`` (1.5.6 at the time of writing) cannot open files written by DuckDB 2.0
("version number 69, but we can only read versions between 64 and 68"), so the project ships
this command, which uses the project's own DuckDB.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.cli.common import at_least_option, fail
from pipelines.core.settings import Settings


@click.command("sql")
@click.argument("query")
@click.option(
    "--db",
    "database",
    type=click.Path(path_type=Path, dir_okay=False),
    help="DuckDB file to query (default: PLACELINK_HOME/published/shared_outcomes.duckdb).",
)
@click.option(
    "--csv", "as_csv", is_flag=True, help="Print CSV (a header line, then rows) instead of a table."
)
@at_least_option(
    "--max-rows", default=200, minimum=1, help="Rows to show in the table (all rows with --csv)."
)
def sql(query: str, database: Path | None, as_csv: bool, max_rows: int) -> None:
    """Run QUERY (SQL) on the published shared-outcomes file, opened read-only.

    Example: placelink sql "SELECT * FROM effects WHERE age_band = '0-17'"
    """
    import duckdb

    path = database or Settings.from_env().published
    if not path.exists():
        fail(
            f"{path} does not exist: run `make demo` (or `placelink run`) first, or pass --db FILE"
        )
    con = duckdb.connect(str(path), read_only=True)
    try:
        try:
            relation = con.sql(query)
        except duckdb.Error as exc:
            fail(f"query failed: {str(exc).splitlines()[0]}")
        if relation is None:
            return
        if as_csv:
            frame = relation.pl()
            click.echo(frame.write_csv(), nl=False)
        else:
            relation.show(max_rows=max_rows, max_width=10_000)
    finally:
        con.close()
