"""dbt-like SQL models: one ``.sql`` file per table or view, dependencies read from the SQL.

``dbt_like_sql/<schema>/<name>.sql`` is the model ``<schema>.<name>``. An optional
header of ``-- key: value`` comment lines at the top sets ``materialized`` (``table``
or ``view``) and ``description``; publish models may also declare ``counts`` (count
columns) and ``rates`` (``rate = numerator / denominator``) for disclosure control.
Dependencies are the tables the SQL reads, found with sqlglot's scope-aware traversal,
so CTEs and table functions are never mistaken for tables.
"""
from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.optimizer.scope import traverse_scope


class ModelError(ValueError):
    """A model that cannot be run; the message names the file."""


@dataclass(frozen=True)
class SqlModel:
    schema: str
    name: str
    path: Path
    sql: str
    materialized: str
    description: str
    depends_on: frozenset[str]
    header: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return f"{self.schema}.{self.name}"

    def list_option(self, key: str) -> list[str]:
        return [v.strip() for v in self.header.get(key, "").split(",") if v.strip()]


def _header(sql: str) -> dict[str, str]:
    header: dict[str, str] = {}
    key = None
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        text = stripped[2:].strip()
        name, sep, value = text.partition(":")
        if sep and name.strip().isidentifier():
            key = name.strip().lower()
            header[key] = value.strip()
        elif key is not None and text:
            header[key] = f"{header[key]} {text}".strip()  # continuation of a long value
    return header


def referenced_tables(sql: str, source: str = "<sql>") -> set[str]:
    """Tables (``schema.name`` or ``name``) a query reads; CTEs and table functions excluded."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise ModelError(f"{source}: SQL error at line {first.get('line', '?')}, column "
                         f"{first.get('col', '?')}: {first.get('description', exc)}") from None
    tables: set[str] = set()
    for scope in traverse_scope(tree):
        for source_node in scope.sources.values():
            if not isinstance(source_node, exp.Table):
                continue  # a CTE or subquery scope
            if not isinstance(source_node.this, exp.Identifier):
                continue  # a table function such as read_parquet(...)
            name = source_node.name
            tables.add(f"{source_node.db}.{name}" if source_node.db else name)
    return tables


def discover(folder: Path) -> dict[str, SqlModel]:
    """Every model under ``folder``, keyed by ``schema.name``."""
    models: dict[str, SqlModel] = {}
    for path in sorted(Path(folder).glob("*/*.sql")):
        sql = path.read_text(encoding="utf-8")
        header = _header(sql)
        materialized = header.get("materialized", "table")
        if materialized not in ("table", "view"):
            raise ModelError(f"{path}: 'materialized: {materialized}' must be 'table' or 'view'")
        model = SqlModel(schema=path.parent.name, name=path.stem, path=path, sql=sql.strip().rstrip(";"),
                         materialized=materialized, description=header.get("description", ""),
                         depends_on=frozenset(referenced_tables(sql, str(path))), header=header)
        models[model.table] = model
    return models


def check_graph(models: dict[str, SqlModel], sources: set[str]) -> list[str]:
    """Models in run order; raises ModelError for unknown tables and cycles, naming the files."""
    for model in models.values():
        unknown = sorted(d for d in model.depends_on if d not in models and d not in sources)
        if unknown:
            raise ModelError(f"{model.path}: reads unknown table(s) {', '.join(unknown)} "
                             f"(neither a model nor a hub source table)")
    sorter = graphlib.TopologicalSorter(
        {name: {d for d in m.depends_on if d in models} for name, m in models.items()})
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise ModelError("models form a cycle: " + " -> ".join(str(models[n].path) for n in cycle)) from None


def run_model(con, model: SqlModel) -> int | None:
    """Create or replace the model's table or view; returns the row count for tables."""
    kind = "TABLE" if model.materialized == "table" else "VIEW"
    try:
        con.execute(f"CREATE OR REPLACE {kind} {model.table} AS {model.sql}")
    except Exception as exc:
        raise ModelError(f"{model.path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if model.description:
        escaped = model.description.replace("'", "''")
        con.execute(f"COMMENT ON {kind} {model.table} IS '{escaped}'")
    if kind == "TABLE":
        return con.execute(f"SELECT count(*) FROM {model.table}").fetchone()[0]
    return None
