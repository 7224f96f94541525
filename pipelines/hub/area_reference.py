"""Public area reference data: LSOA -> ward, and the deprivation decile of each LSOA.

The hub reads it from ``PLACELINK_HOME/reference/lsoa_reference.csv`` into
``hub.lsoa_reference``, which the SQL models join persons' areas to. A hub that holds no LSOA
needs none: the table is then empty, and every person's area is unknown. That is a hub whose
contracts send no LSOA, or whose partners have sent none yet (each may send its LSOAs empty, for
want of a postcode lookup).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from pipelines.governance.contracts import Contract

AREA_REFERENCE_FILE = "lsoa_reference.csv"
AREA_REFERENCE = pl.Schema(
    {"lsoa_code": pl.String, "ward_code": pl.String, "ward_name": pl.String, "imd_decile": pl.Int8}
)


def contracts_sending_areas(contracts: dict[str, Contract]) -> list[str]:
    """The contracts (labels, sorted) with a dataset that sends LSOAs: they need the reference."""
    return sorted(
        {
            c.label
            for c in contracts.values()
            for d in c.datasets.values()
            if "lsoa_code" in d.columns
        }
    )


def landed_lsoa_rows(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> int:
    """How many landed rows, over every dataset whose contract sends LSOAs, hold one."""
    landed = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'landing' AND column_name = 'lsoa_code'"
        ).fetchall()
    }
    datasets = sorted(
        name
        for c in contracts.values()
        for name, d in c.datasets.items()
        if "lsoa_code" in d.columns and name in landed
    )
    if not datasets:
        return 0
    counts = " + ".join(
        f"(SELECT count(lsoa_code) FROM landing.{name})" for name in dict.fromkeys(datasets)
    )
    return int(con.execute(f"SELECT {counts}").fetchall()[0][0])


def load_area_reference(con: duckdb.DuckDBPyConnection, source: Path | None) -> int:
    """Replace ``hub.lsoa_reference`` with the CSV at ``source`` (None: an empty table); returns
    how many LSOAs it holds."""
    table = (
        AREA_REFERENCE.to_frame().to_arrow()
        if source is None
        else pl.read_csv(source, schema_overrides={"imd_decile": pl.Int8}).to_arrow()
    )
    con.register("incoming", table)
    try:
        con.execute("CREATE OR REPLACE TABLE hub.lsoa_reference AS SELECT * FROM incoming")
    finally:
        con.unregister("incoming")
    return table.num_rows
