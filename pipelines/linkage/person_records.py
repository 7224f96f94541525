"""Person records: the identity part of every landed record, grouped for linkage.

Rows of one partner that carry exactly the same identity tokens (the same patient
registration seen in many A&E attendances, say) are one *identity record*; linkage
then works on identity records, not on every event. Rows with too little identity to
be sure (no NHS-number token and not all of names and date of birth) stay on their own.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from pipelines.core.column_types import duckdb_type
from pipelines.core.stages import stage
from pipelines.core.warehouse import table_exists
from pipelines.governance.contracts import Contract
from pipelines.governance.flows import flows_in_use
from pipelines.linkage.comparisons import COLUMNS_BY_FIELD

# Columns Splink compares (the one list: comparisons.COLUMNS_BY_FIELD); a dataset whose
# contract omits one gets NULL for it.
LINKAGE_FEATURES: dict[str, str] = {
    name: duckdb_type(name) for columns in COLUMNS_BY_FIELD.values() for name in columns
}
# The features that define an identity; the rest are derived from these by the partner kit.
IDENTITY_KEY = (
    "nhs_number_token",
    "given_name_token",
    "family_name_token",
    "date_of_birth_token",
    "postcode_token",
    "sex",
)


class NothingToLink(ValueError):
    """No accepted records to link; the message says where to look."""


def landed_datasets(
    con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract], on: dt.date
) -> list[tuple[Contract, str]]:
    # Only flows whose agreement is in force on the hub's today: a suspended, terminated or
    # expired contract's rows stay landed but are left out of linkage and so of every model.
    return [
        (c, name)
        for c in flows_in_use(contracts, on).values()
        for name in c.datasets
        if table_exists(con, "landing", name)
    ]


@stage("linkage: person records")
def build_person_records(
    con: duckdb.DuckDBPyConnection, sources: list[tuple[Contract, str]]
) -> dict[str, int]:
    """(Re)build ``hub.record_identity`` (one row per landed record: its dataset, partner, record
    token, postcode token and identity id) and ``hub.person_records`` (one row per identity record,
    Splink's input).

    An identity record's features are those of its latest record (received last; then the larger
    dataset name and record token), so a rebuild gives the same features whatever order DuckDB
    reads the rows in. Records of one identity record agree on every identity token but can differ
    in what is derived from the clear values (a Bloom filter, a name part)."""
    selects = []
    for contract, name in sources:
        have = set(contract.datasets[name].columns)
        columns = ", ".join(
            f'"{f}"' if f in have else f"CAST(NULL AS {t}) AS {f}"
            for f, t in LINKAGE_FEATURES.items()
        )
        selects.append(
            f"SELECT '{name}' AS dataset, '{contract.partner_id}' AS partner_id, "
            f"record_token, _received_at, {columns} FROM landing.{name}"
        )
    if not selects:
        raise NothingToLink("no extracts have been accepted yet: nothing to link")
    key_parts = ", ".join(f"coalesce({c}, '')" for c in IDENTITY_KEY)
    identity_id = f"""CASE WHEN nhs_number_token IS NOT NULL
                             OR (given_name_token IS NOT NULL AND family_name_token IS NOT NULL
                                 AND date_of_birth_token IS NOT NULL)
                        THEN md5(concat_ws('|', partner_id, {key_parts}))
                        ELSE md5(concat_ws('|', 'record', dataset, record_token))
                   END"""
    records = " UNION ALL ".join(selects)
    # Narrow: the wide features are written once, per identity record, not once per landed record
    # (writing 24 columns of random hex for every record was most of this stage: docs/benchmarks.md).
    con.execute(f"""
        CREATE OR REPLACE TABLE hub.record_identity AS
        SELECT dataset, partner_id, record_token, postcode_token, {identity_id} AS identity_id
        FROM ({records})
    """)
    features = ", ".join(LINKAGE_FEATURES)
    con.execute(f"""
        CREATE OR REPLACE TABLE hub.person_records AS
        SELECT unique_id, partner_id, latest.*
        FROM (SELECT {identity_id} AS unique_id, any_value(partner_id) AS partner_id,
                     arg_max(struct_pack({features}), (_received_at, dataset, record_token)) AS latest
              FROM ({records}) GROUP BY unique_id)
    """)
    records, identities = con.execute(
        "SELECT (SELECT count(*) FROM hub.record_identity), (SELECT count(*) FROM hub.person_records)"
    ).fetchall()[0]
    return {"records": records, "identity_records": identities}
