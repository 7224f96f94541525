"""Build the analysts' DuckDB file apart and swap it in atomically.

Only models in the ``publish`` folder are published, and only after disclosure control;
a model that declares no counts is refused. The file carries ``_about`` (build time,
rule, the contracts and extracts that fed it) and ``_definitions`` (model descriptions).
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipelines.disclosure import DisclosureRule, Rate, suppress_small_counts, unsafe_cells
from pipelines.sql_models import SqlModel


class PublishRefused(ValueError):
    pass


@dataclass(frozen=True)
class PublishedTable:
    name: str
    rows: int
    redacted_cells: int


def publish(warehouse: duckdb.DuckDBPyConnection, models: dict[str, SqlModel], target: Path,
            definitions: list[SqlModel], lineage: list[dict], rule: DisclosureRule = DisclosureRule(),
            now: dt.datetime | None = None, table_lineage: list[dict] | None = None,
            excluded_flows: list[dict] | None = None) -> list[PublishedTable]:
    """Write every ``publish.*`` model, disclosure-controlled, to ``target`` atomically.

    ``table_lineage`` (one row per published table and extract it relies on) becomes the
    ``_lineage`` table; ``excluded_flows`` (agreements not in force, whose data was left
    out) goes into ``_about``.
    """
    now = now or dt.datetime.now(dt.UTC)
    controlled: list[tuple[SqlModel, pl.DataFrame, int]] = []
    for model in sorted((m for m in models.values() if m.schema == "publish"), key=lambda m: m.name):
        counts = model.list_option("counts")
        if not counts:
            raise PublishRefused(f"{model.path}: a published model must declare its count columns "
                                 "('-- counts: ...') so disclosure control can be applied")
        rates = [Rate.parse(r) for r in model.list_option("rates")]
        raw = pl.from_arrow(warehouse.sql(f"SELECT * FROM {model.table}").to_arrow_table())
        safe = suppress_small_counts(raw, counts, rates, rule)
        if unsafe_cells(safe, counts, rule):
            raise PublishRefused(f"{model.path}: disclosure check failed after control")
        redacted = sum(int(safe.get_column(c).is_null().sum() - raw.get_column(c).is_null().sum()) for c in counts)
        controlled.append((model, safe, redacted))

    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.building")
    building.unlink(missing_ok=True)
    out = duckdb.connect(str(building))
    try:
        results = []
        for model, table, redacted in controlled:
            out.register("incoming", table.to_arrow())
            out.execute(f'CREATE TABLE "{model.name}" AS SELECT * FROM incoming')
            out.unregister("incoming")
            if model.description:
                out.execute(f"COMMENT ON TABLE \"{model.name}\" IS '{model.description.replace(chr(39), chr(39) * 2)}'")
            results.append(PublishedTable(model.name, table.height, redacted))
        out.execute("CREATE TABLE _about (key VARCHAR, value VARCHAR)")
        about = {
            "built_at": now.isoformat(timespec="seconds"),
            "disclosure_rule": rule.describe(),
            "disclosure_parameters": json.dumps({"threshold": rule.threshold, "rounding_base": rule.rounding_base}),
            "lineage": json.dumps(lineage),
            "tables": json.dumps([r.name for r in results]),
            "excluded_flows": json.dumps(excluded_flows or []),
        }
        out.executemany("INSERT INTO _about VALUES (?, ?)", list(about.items()))
        out.execute("CREATE TABLE _definitions (model VARCHAR, kind VARCHAR, definition VARCHAR)")
        out.executemany("INSERT INTO _definitions VALUES (?, ?, ?)",
                        [(m.table, m.schema, m.description) for m in definitions])
        _write_lineage(out, table_lineage or [])
        out.execute("CHECKPOINT")
    finally:
        out.close()
    # An analyst holding the old file open keeps reading it; new readers get the new one.
    os.replace(building, target)
    return results


LINEAGE_COLUMNS = ("published_table", "contract_id", "contract_version", "dataset", "extract_id",
                   "rows", "relation")


def _write_lineage(out: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    """``_lineage``: which agreements (id, version) and extracts each published table relies on."""
    out.execute("CREATE TABLE _lineage (published_table VARCHAR, contract_id VARCHAR, "
                "contract_version VARCHAR, dataset VARCHAR, extract_id VARCHAR, rows BIGINT, "
                "relation VARCHAR)")
    out.execute("COMMENT ON TABLE _lineage IS 'Which data-sharing agreements (id, version) and which "
                "extracts each published table relies on; relation = source (the table reads the "
                "dataset) or linkage (the records only took part in matching people)'")
    if rows:
        out.executemany("INSERT INTO _lineage VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [tuple(r[c] for c in LINEAGE_COLUMNS) for r in rows])
