"""What each landed record says about its person: year of birth, sex and area.

A contract may list any subset of identifiers, so a landed dataset may have no ``sex``, no
``year_of_birth`` or no area columns. ``hub.record_attributes`` is a view over every landed
dataset in use with one row per record and NULL where the dataset has no such column, made
from the landing tables' own columns. The SQL models (``staging/persons.sql``) read it
instead of naming every dataset and column, so they run whichever partners a hub has.
"""

from __future__ import annotations

import duckdb

from pipelines.governance.contracts import Contract

RECORD_ATTRIBUTES = "hub.record_attributes"
# Attribute -> its type in the view (as the landing tables hold it).
ATTRIBUTES: dict[str, str] = {
    "year_of_birth": "SMALLINT",
    "sex": "VARCHAR",
    "lsoa_code": "VARCHAR",
    "ward_code": "VARCHAR",
}


def landing_columns(con: duckdb.DuckDBPyConnection, dataset: str) -> set[str]:
    return {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'landing' AND table_name = ?",
            [dataset],
        ).fetchall()
    }


def build_record_attributes(
    con: duckdb.DuckDBPyConnection, datasets: list[tuple[Contract, str]]
) -> dict[str, list[str]]:
    """(Re)create the view ``hub.record_attributes`` (``dataset, partner_id, record_token`` and
    :data:`ATTRIBUTES`) over the landing tables of ``datasets``; returns, per dataset, the
    attributes it lacks (their values are NULL for its records)."""
    selects, lacking = [], {}
    for contract, name in datasets:
        have = landing_columns(con, name)
        lacking[name] = [a for a in ATTRIBUTES if a not in have]
        columns = ", ".join(
            f'CAST("{a}" AS {t}) AS {a}' if a in have else f"CAST(NULL AS {t}) AS {a}"
            for a, t in ATTRIBUTES.items()
        )
        selects.append(
            f"SELECT '{name}' AS dataset, '{contract.partner_id}' AS partner_id, "
            f'record_token, {columns} FROM landing."{name}"'
        )
    if not selects:  # nothing landed yet: an empty view of the same shape
        columns = ", ".join(f"CAST(NULL AS {t}) AS {a}" for a, t in ATTRIBUTES.items())
        selects.append(
            f"SELECT CAST(NULL AS VARCHAR) AS dataset, CAST(NULL AS VARCHAR) AS partner_id, "
            f"CAST(NULL AS VARCHAR) AS record_token, {columns} WHERE false"
        )
    con.execute(f"CREATE OR REPLACE VIEW {RECORD_ATTRIBUTES} AS {' UNION ALL '.join(selects)}")
    return lacking
