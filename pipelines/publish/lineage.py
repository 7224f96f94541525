"""What each published table relies on: one row per (published table, extract) in ``_lineage``.

Read from the SQL models' dependencies (:mod:`pipelines.outcomes.sql_models`) and the extracts
landed under the flows in use (:func:`pipelines.governance.flows.flows_in_use`), so an IG officer
can see which agreements a published number rests on.
"""

from __future__ import annotations

import duckdb

from pipelines.core.warehouse import table_exists
from pipelines.governance.contracts import Contract
from pipelines.outcomes.record_attributes import RECORD_ATTRIBUTES
from pipelines.outcomes.sql_models import SqlModel

# Hub tables built by linkage from every flow in use: a model reading one of them relies
# on every agreement whose records took part in matching people.
LINKAGE_TABLES = frozenset(
    {"hub.record_person", "hub.person_keys", "hub.record_identity", "hub.person_records"}
)


def upstream_tables(model: SqlModel, models: dict[str, SqlModel]) -> set[str]:
    """Every table a model reads, directly or through other models."""
    seen: set[str] = set()
    stack = list(model.depends_on)
    while stack:
        table = stack.pop()
        if table in seen:
            continue
        seen.add(table)
        if table in models:
            stack.extend(models[table].depends_on)
    return seen


def table_lineage(
    con: duckdb.DuckDBPyConnection,
    models: dict[str, SqlModel],
    in_use: dict[str, Contract],
    derived: dict[str, set[str]] | None = None,
) -> list[dict]:
    """One row per (published table, extract) the table relies on.

    ``relation`` is ``source`` when the table reads the extract's dataset (through the
    model graph), ``linkage`` when the extract only took part in matching people.
    ``derived`` names published tables computed in Python (effects) with the models they read.
    Extracts are those whose rows are in ``landing`` now (a corrected record replaces
    the earlier one; retention removes old ones); flows not in use are left out.
    """
    by_dataset = {name: c for c in in_use.values() for name in c.datasets}
    extracts: dict[str, list[tuple]] = {}
    for name in by_dataset:
        if not table_exists(con, "landing", name):
            continue
        extracts[name] = (
            con.execute(f"""
            SELECT l._extract_id, any_value(d.contract_version), count(*)
            FROM landing.{name} l
            LEFT JOIN hub.deliveries d ON d.extract_id = l._extract_id AND d.status = 'accepted'
            GROUP BY l._extract_id ORDER BY l._extract_id
        """).fetchall()
            if table_exists(con, "hub", "deliveries")
            else con.execute(
                f"SELECT _extract_id, NULL, count(*) FROM landing.{name} GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
    rows: list[dict] = []
    readers = {m.name: upstream_tables(m, models) for m in models.values() if m.schema == "publish"}
    for name, read in (derived or {}).items():
        readers[name] = set(read).union(
            *(upstream_tables(models[t], models) for t in read if t in models)
        )
    for published, upstream in sorted(readers.items()):
        sources = {t.split(".", 1)[1] for t in upstream if t.startswith("landing.")}
        if RECORD_ATTRIBUTES in upstream:  # a view over every landed dataset in use
            sources |= set(extracts)
        linked = bool(upstream & LINKAGE_TABLES)
        for name in sorted(extracts):
            if name not in sources and not linked:
                continue
            contract = by_dataset[name]
            for extract_id, version, count in extracts[name]:
                rows.append(
                    {
                        "published_table": published,
                        "contract_id": contract.id,
                        "contract_version": version or contract.version,
                        "dataset": name,
                        "extract_id": extract_id,
                        "rows": count,
                        "relation": "source" if name in sources else "linkage",
                    }
                )
    return rows
