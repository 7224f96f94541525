"""Build the analysts' DuckDB file apart and swap it in atomically.

Only models in the ``publish`` folder are published, and only after disclosure control.
A publish model must declare what each column is (dimension, count; rates are derived)
and describe every column; a model that declares no counts, has an undeclared or
identifier-like column, or looks row-level is refused before anything is written. The
file carries ``_about`` (build time, rule, model versions, the contracts and extracts
that fed it), ``_definitions`` (cohort, outcome and model definitions) and a
``COMMENT ON`` for every table and column.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from pipelines.core.clock import Clock
from pipelines.core.stages import stage
from pipelines.governance.audit import AuditLog
from pipelines.outcomes.margins import declared_margins
from pipelines.outcomes.sql_models import SqlModel
from pipelines.publish.disclosure import (
    DisclosureRule,
    Rate,
    TableSpec,
    control_table,
    differencing_attack,
    unsafe_cells,
)


class PublishRefused(ValueError):
    pass


@dataclass(frozen=True)
class PublishedTable:
    name: str
    rows: int
    redacted_cells: int


@dataclass(frozen=True)
class DerivedTable:
    """A table computed in the hub from unrounded data (effect estimates, matching balance), not by a
    publish model: the caller applies its disclosure control, the publisher writes and describes it.

    ``counts`` are its count columns (checked again: none may be 1..threshold or off the base);
    ``redacted`` is how many of its cells the caller's control hid; ``about`` adds ``_about`` keys
    and ``definitions`` adds ``_definitions`` rows (name, definition) of kind 'method'.
    """

    name: str
    frame: pl.DataFrame
    description: str
    columns: dict[str, str]
    counts: tuple[str, ...] = ()
    redacted: int = 0
    about: dict[str, str] = field(default_factory=dict)
    definitions: list[tuple[str, str]] = field(default_factory=list)


# _definitions.kind of each model folder; outcomes and methods are their own kinds.
DEFINITION_KINDS = {"cohorts": "cohort", "publish": "table"}


@stage("publish")
def publish(
    warehouse: duckdb.DuckDBPyConnection,
    models: dict[str, SqlModel],
    target: Path,
    definitions: list[SqlModel],
    lineage: list[dict],
    rule: DisclosureRule = DisclosureRule(),
    now: dt.datetime | None = None,
    table_lineage: list[dict] | None = None,
    excluded_flows: list[dict] | None = None,
    audit_head: dict | None = None,
    models_left_out: dict[str, str] | None = None,
    derived: Callable[[dict[str, pl.DataFrame]], list[DerivedTable]] | None = None,
    guard: Callable[[list[PublishedTable]], None] | None = None,
) -> list[PublishedTable]:
    """Write every ``publish.*`` model, disclosure-controlled, to ``target`` atomically.

    ``table_lineage`` (one row per published table and extract it relies on) becomes the
    ``_lineage`` table; ``excluded_flows`` (agreements not in force, whose data was left
    out) and ``models_left_out`` (models whose datasets no contract provides, with why) go into
    ``_about``, and so does ``audit_head``: the audit log's signed head when the file was built,
    so any copy of the file can later show the log was not cut back
    (``placelink audit verify --published``). ``derived`` is handed the controlled publish tables
    by name and returns further tables to publish beside them (:class:`DerivedTable`), e.g. effect
    estimates that may only show where the cells they rest on are visible. ``guard`` sees the
    tables built, before the file is swapped in; if it raises, the published file is left as it
    was (pipelines.publish.publication_guard).
    """
    now = now or Clock.from_env().now()
    controlled: list[tuple[SqlModel, pl.DataFrame, int]] = []
    for model in sorted(
        (m for m in models.values() if m.schema == "publish"), key=lambda m: m.name
    ):
        controlled.append(_controlled_table(warehouse, model, rule))
    extra = derived({m.name: table for m, table, _ in controlled}) if derived else []
    for table in extra:
        if unsafe_cells(table.frame, list(table.counts), rule):
            raise PublishRefused(
                f"{table.name}: disclosure check failed (a count in 1-{rule.threshold} or not a "
                f"multiple of {rule.rounding_base})"
            )

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
            _comment(out, model)
            results.append(PublishedTable(model.name, table.height, redacted))
        for table in extra:
            out.register("incoming", table.frame.to_arrow())
            out.execute(f'CREATE TABLE "{table.name}" AS SELECT * FROM incoming')
            out.unregister("incoming")
            out.execute(f'COMMENT ON TABLE "{table.name}" IS {_quote(table.description)}')
            for column, text in table.columns.items():
                out.execute(f'COMMENT ON COLUMN "{table.name}"."{column}" IS {_quote(text)}')
            results.append(PublishedTable(table.name, table.frame.height, table.redacted))
        out.execute("CREATE TABLE _about (key VARCHAR, value VARCHAR)")
        about = {
            "built_at": now.isoformat(timespec="seconds"),
            "disclosure_rule": rule.describe(),
            "disclosure_parameters": json.dumps(
                {"threshold": rule.threshold, "rounding_base": rule.rounding_base}
            ),
            "lineage": json.dumps(lineage),
            "tables": json.dumps([r.name for r in results]),
            "excluded_flows": json.dumps(excluded_flows or []),
            "models_left_out": json.dumps(models_left_out or {}),
            "model_versions": json.dumps(model_versions(models)),
            "disclosure_margins": json.dumps(disclosure_margins([m for m, _, _ in controlled])),
            # One definition, the one the pipeline reports too: count cells published as NULL.
            "redacted_cells": json.dumps({r.name: r.redacted_cells for r in results}),
        }
        if audit_head is not None:
            about["audit_head"] = json.dumps(audit_head)
        for table in extra:
            about.update(table.about)
        out.executemany("INSERT INTO _about VALUES (?, ?)", list(about.items()))
        out.execute(
            "CREATE TABLE _definitions (model VARCHAR, kind VARCHAR, definition VARCHAR, "
            "name VARCHAR, model_version VARCHAR, label VARCHAR)"
        )
        described = (
            [
                (
                    m.table,
                    DEFINITION_KINDS.get(m.schema, "model"),
                    m.description,
                    m.name,
                    m.version,
                    m.name.replace("_", " "),
                )
                for m in definitions
            ]
            + outcome_definitions(models)
            + [
                (
                    f"pipelines.outcomes.effects ({t.name})",
                    "method",
                    text,
                    name,
                    None,
                    name.replace("_", " "),
                )
                for t in extra
                for name, text in t.definitions
            ]
        )
        if described:  # a hub whose contracts leave every model out publishes none
            out.executemany("INSERT INTO _definitions VALUES (?, ?, ?, ?, ?, ?)", described)
        _write_lineage(out, table_lineage or [])
        _comment_metadata(out)
        out.execute("CHECKPOINT")
    finally:
        out.close()
    if guard is not None:
        try:
            guard(results)
        except BaseException:
            building.unlink(missing_ok=True)
            raise
    # An analyst holding the old file open keeps reading it; new readers get the new one.
    os.replace(building, target)
    return results


LINEAGE_COLUMNS = (
    "published_table",
    "contract_id",
    "contract_version",
    "dataset",
    "extract_id",
    "rows",
    "relation",
)


def _write_lineage(out: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    """``_lineage``: which agreements (id, version) and extracts each published table relies on."""
    out.execute(
        "CREATE TABLE _lineage (published_table VARCHAR, contract_id VARCHAR, "
        "contract_version VARCHAR, dataset VARCHAR, extract_id VARCHAR, rows BIGINT, "
        "relation VARCHAR)"
    )
    if rows:
        out.executemany(
            "INSERT INTO _lineage VALUES (?, ?, ?, ?, ?, ?, ?)",
            [tuple(r[c] for c in LINEAGE_COLUMNS) for r in rows],
        )


# Column names that only a row-level (person-level) table has.
IDENTIFIER_COLUMNS = re.compile(
    r"person_key|token|record_id|nhs_number|date_of_birth|postcode|given_name"
    r"|family_name|^name$|family_id",
    re.IGNORECASE,
)
# A dimension with a distinct value on every row of a table this long is an identifier.
ROW_LEVEL_MIN_ROWS = 20


def table_spec(model: SqlModel) -> TableSpec:
    """The disclosure-control declaration in a publish model's header."""
    try:
        totals, subtotals = declared_margins(model)  # the message names the file
    except ValueError as exc:
        raise PublishRefused(str(exc)) from None
    try:
        rates = tuple(Rate.parse(r) for r in model.list_option("rates"))
    except ValueError as exc:
        raise PublishRefused(f"{model.path}: {exc}") from None
    return TableSpec(
        dimensions=tuple(model.list_option("dimensions")),
        counts=tuple(model.list_option("counts")),
        rates=rates,
        population=model.header.get("population") or None,
        totals=totals,
        subtotals=subtotals,
    )


def check_publishable(model: SqlModel, raw: pl.DataFrame, spec: TableSpec) -> None:
    """Raise PublishRefused unless the model's output is an aggregate table that declares every column."""
    where = f"{model.path}"
    if not spec.counts:
        raise PublishRefused(
            f"{where}: a published model must declare its count columns (counts: [...]) "
            "so disclosure control can be applied"
        )
    identifiers = [c for c in raw.columns if IDENTIFIER_COLUMNS.search(c)]
    if identifiers:
        raise PublishRefused(
            f"{where}: refused: column(s) {', '.join(identifiers)} identify people or records; "
            "published tables hold aggregates only - group by dimensions and count instead"
        )
    declared = set(spec.dimensions) | set(spec.counts)
    undeclared = [c for c in raw.columns if c not in declared]
    if undeclared:
        raise PublishRefused(
            f"{where}: refused: column(s) {', '.join(undeclared)} are neither a declared "
            "dimension nor a declared count; declare them in the header (dimensions: [...], "
            "counts: [...]; rates are derived by the publisher)"
        )
    unknown = sorted(
        {d for d, _, _ in spec.margins()} - set(spec.dimensions)
        | ({spec.population} - set(spec.counts) if spec.population else set())
    )
    if unknown:
        raise PublishRefused(
            f"{where}: totals/population name(s) {', '.join(unknown)} are not declared "
            "dimensions/counts"
        )
    if raw.height >= ROW_LEVEL_MIN_ROWS:
        for dim in spec.dimensions:
            if raw.get_column(dim).n_unique() == raw.height:
                raise PublishRefused(
                    f"{where}: refused: dimension '{dim}' has a different value on every one "
                    f"of the {raw.height} rows, so the table is row-level, not an aggregate"
                )
    if spec.population and raw.height and raw.get_column(spec.population).max() == 1:
        raise PublishRefused(
            f"{where}: refused: every row counts at most one person ({spec.population}), "
            "so the table is person-level"
        )
    described = model.columns
    columns = list(raw.columns) + [r.name for r in spec.rates]
    undescribed = [c for c in columns if not described.get(c)]
    if not model.description or undescribed:
        what = "the table" if not model.description else "column(s) " + ", ".join(undescribed)
        raise PublishRefused(
            f"{where}: {what} has no description; analysts read them as COMMENT ON - add "
            "'description:' and 'columns:' to the model's header"
        )


def _controlled_table(
    warehouse: duckdb.DuckDBPyConnection, model: SqlModel, rule: DisclosureRule
) -> tuple[SqlModel, pl.DataFrame, int]:
    """The model's rows after disclosure control, and how many cells were redacted."""
    spec = table_spec(model)
    raw = pl.from_arrow(warehouse.sql(f"SELECT * FROM {model.table}").to_arrow_table())
    check_publishable(model, raw, spec)
    safe = control_table(raw, spec, rule)
    if unsafe_cells(safe, list(spec.counts), rule):
        raise PublishRefused(
            f"{model.path}: disclosure check failed after control (a count in 1-"
            f"{rule.threshold} or not a multiple of {rule.rounding_base})"
        )
    if differencing_attack(safe, spec, rule):
        raise PublishRefused(
            f"{model.path}: disclosure check failed: a redacted cell can be recovered "
            "from a total by subtraction"
        )
    redacted = sum(int(safe.get_column(c).is_null().sum()) for c in spec.counts)
    return model, safe, redacted


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _comment(out: duckdb.DuckDBPyConnection, model: SqlModel) -> None:
    """COMMENT ON the published table and each of its columns (the model's header descriptions)."""
    out.execute(f'COMMENT ON TABLE "{model.name}" IS {_quote(model.description)}')
    for column, text in model.columns.items():
        exists = out.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = ? "
            "AND column_name = ?",
            [model.name, column],
        ).fetchall()[0][0]
        if exists:
            out.execute(f'COMMENT ON COLUMN "{model.name}"."{column}" IS {_quote(text)}')


METADATA_COMMENTS = {
    "_about": (
        "How and when this file was built: key/value pairs.",
        {
            "key": "What the value is: built_at, disclosure_rule, disclosure_parameters, disclosure_margins, lineage "
            "(contracts and extracts that fed the file), tables, model_versions, redacted_cells (per table: "
            "count cells published as NULL by disclosure control; for effects tables, estimates hidden), "
            "effects_method, effects_parameters, linkage_sensitivity_thresholds, excluded_flows, models_left_out "
            "(models whose datasets no contract provides, with why), audit_head (the audit log's signed head "
            "when the file was built).",
            "value": "The value; JSON for lineage, tables, model_versions, disclosure_parameters, disclosure_margins, "
            "redacted_cells, effects_parameters and linkage_sensitivity_thresholds.",
        },
    ),
    "_definitions": (
        "Definitions of the cohorts, outcomes, methods and models behind the published tables.",
        {
            "model": "The model (dbt_like_sql/<schema>/<name>.sql) or code that holds the definition.",
            "kind": "cohort (a cohort model), outcome (one outcome), table (a published table's model), method (how "
            "effects or balance are computed) or model (an intermediate model).",
            "definition": "The definition, as written in the model's header or the code.",
            "name": "The name: of the model, the outcome (as in the tables' outcome column) or the method.",
            "model_version": "First 16 hex digits of the SHA-256 of the model's SQL file (NULL for a method).",
            "label": "A readable name for reports, e.g. 'A&E attendances' for ae_attendance.",
        },
    ),
    "_lineage": (
        "Which data-sharing agreements (id, version) and which extracts each published table relies on; "
        "relation = source (the table reads the dataset) or linkage (the records only took part in "
        "matching people)",
        {
            "published_table": "The published table (a table of this file).",
            "contract_id": "The data-sharing agreement (contract id in contracts/) the extract came under.",
            "contract_version": "The agreement's version the extract was accepted under.",
            "dataset": "The dataset of the agreement (a landed table).",
            "extract_id": "The extract (one delivery) whose rows are in the table.",
            "rows": "Rows the extract delivered (the whole delivery, not rows of this table).",
            "relation": "source: the table reads the dataset; linkage: the extract's records only took part in "
            "matching people across partners.",
        },
    ),
}


def _comment_metadata(out: duckdb.DuckDBPyConnection) -> None:
    for table, (text, columns) in METADATA_COMMENTS.items():
        out.execute(f"COMMENT ON TABLE {table} IS {_quote(text)}")
        for column, description in columns.items():
            out.execute(f"COMMENT ON COLUMN {table}.{column} IS {_quote(description)}")


def model_versions(models: dict[str, SqlModel]) -> dict[str, str]:
    """``schema.name`` -> SHA-256 prefix of the model's SQL file, for every model."""
    return {name: models[name].version for name in sorted(models)}


def outcome_definitions(models: dict[str, SqlModel]) -> list[tuple[str, str, str, str, str, str]]:
    """Rows for _definitions from every model's ``outcomes:`` header mapping: ``name: definition``,
    or ``name: {label: ..., definition: ...}`` to give the outcome a readable name."""
    rows = []
    for model in sorted(models.values(), key=lambda m: m.table):
        outcomes = model.header.get("outcomes")
        if isinstance(outcomes, dict):
            for name, entry in outcomes.items():
                text, label = (
                    (entry.get("definition", ""), entry.get("label"))
                    if isinstance(entry, dict)
                    else (entry, None)
                )
                rows.append(
                    (
                        model.table,
                        "outcome",
                        " ".join(str(text).split()),
                        str(name),
                        model.version,
                        str(label or str(name).replace("_", " ")),
                    )
                )
    return rows


def disclosure_margins(published: list[SqlModel]) -> dict[str, dict]:
    """Per published table: the margins that secondary suppression protects, and the population count."""
    margins = {}
    for model in published:
        spec = table_spec(model)
        margins[model.name] = {
            "totals": {dim: label for dim, label in spec.totals},
            "subtotals": {
                label: {"dimension": dim, "of": list(members)}
                for dim, label, members in spec.subtotals
            },
            "population": spec.population,
        }
    return margins


def audit_published(
    audit: AuditLog,
    published: Path,
    tables: list[PublishedTable],
    head_events: int | None,
    lineage: list[dict],
    excluded: list[dict],
    models_left_out,
    known_losses: list[str],
    accepted: list[dict],
) -> dict:
    """The ``published`` audit event: the file, its tables, the audit head it carries, the
    contracts it was built from and the flows left out, how many cells were redacted, and what
    it lost from the last publication with the operators' acceptances it used up."""
    return audit.append(
        "published",
        file=str(published),
        tables=[t.name for t in tables],
        audit_head_events=head_events,
        contracts=sorted({f"{x['contract_id']} v{x['contract_version']}" for x in lineage}),
        excluded_flows=[f"{x['contract_id']} ({x['status']})" for x in excluded],
        redacted_cells=sum(t.redacted_cells for t in tables),
        models_left_out=sorted(models_left_out),
        known_losses=known_losses,
        accepted_changes=[e["change_id"] for e in accepted],
    )
