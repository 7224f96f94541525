"""dbt-like SQL models: one ``.sql`` file per table or view, dependencies read from the SQL.

``dbt_like_sql/<schema>/<name>.sql`` is the model ``<schema>.<name>``. An optional
header at the top sets ``materialized`` (``table`` or ``view``) and ``description``:
either ``-- key: value`` comment lines, or a small YAML block in a leading
``/* ... */`` comment (which can also describe each column under ``columns:``).
Publish models also declare ``dimensions``, ``counts`` (count columns), ``rates``
(``rate = numerator / denominator [* scale]``), ``population`` (the count of people
behind a row) and ``totals`` (dimensions to add margins over) for disclosure control.
Dependencies are the tables the SQL reads, found with sqlglot's scope-aware traversal,
so CTEs and table functions are never mistaken for tables.
"""

from __future__ import annotations

import graphlib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
import yaml
from sqlglot import exp
from sqlglot.errors import ParseError
from sqlglot.optimizer.scope import traverse_scope

from pipelines.core.settings import Settings
from pipelines.core.stages import stage
from pipelines.governance.contracts import declared_datasets, load_contracts
from pipelines.outcomes.record_attributes import RECORD_ATTRIBUTES


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
    header: dict = field(default_factory=dict)

    @property
    def table(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def version(self) -> str:
        """First 16 hex digits of the SHA-256 of the model's SQL file: changes whenever the file does."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    @property
    def columns(self) -> dict[str, str]:
        """Column descriptions from the header's ``columns:`` mapping (may be empty)."""
        columns = self.header.get("columns") or {}
        return (
            {str(k): " ".join(str(v).split()) for k, v in columns.items()}
            if isinstance(columns, dict)
            else {}
        )

    def list_option(self, key: str) -> list[str]:
        value = self.header.get(key, "")
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return [v.strip() for v in str(value or "").split(",") if v.strip()]


_YAML_BLOCK = re.compile(r"\A\s*/\*(.*?)\*/", re.DOTALL)


def _yaml_header(sql: str, source: str) -> dict | None:
    """The mapping in a leading ``/* ... */`` YAML block, or None when there is no such block."""
    match = _YAML_BLOCK.match(sql)
    if not match:
        return None
    try:
        document = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1 + sql[: match.start(1)].count(chr(10))}" if mark else ""
        raise ModelError(
            f"{source}: the YAML header block is not valid YAML{where}: "
            f"{getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(document, dict):
        raise ModelError(
            f"{source}: the /* ... */ header block must be a YAML mapping "
            "(description: ..., materialized: ..., columns: {...})"
        )
    return {
        str(k).lower(): (" ".join(v.split()) if isinstance(v, str) else v)
        for k, v in document.items()
    }


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
        raise ModelError(
            f"{source}: SQL error at line {first.get('line', '?')}, column "
            f"{first.get('col', '?')}: {first.get('description', exc)}"
        ) from None
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
        header = _yaml_header(sql, str(path))
        if header is None:
            header = _header(sql)
        materialized = header.get("materialized", "table")
        if materialized not in ("table", "view"):
            raise ModelError(f"{path}: 'materialized: {materialized}' must be 'table' or 'view'")
        # Keep leading lines so line numbers in DuckDB's errors are the file's line numbers.
        model = SqlModel(
            schema=path.parent.name,
            name=path.stem,
            path=path,
            sql=sql.rstrip().rstrip(";"),
            materialized=materialized,
            description=header.get("description", ""),
            depends_on=frozenset(referenced_tables(sql, str(path))),
            header=header,
        )
        models[model.table] = model
    return models


@dataclass(frozen=True)
class ModelPlan:
    """Which models a hub runs: ``models`` (those whose inputs all exist) and, for each model
    left out, why (``left_out``: table -> a sentence naming the missing landing tables;
    ``missing``: table -> those tables)."""

    models: dict[str, SqlModel]
    left_out: dict[str, str]
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def messages(self) -> list[str]:
        """What an operator reads in the run's log and summary: the left-out models grouped by
        the datasets they lack, one line per group, then what to do."""
        if not self.left_out:
            return []
        groups: dict[tuple[str, ...], list[str]] = {}
        for table in sorted(self.left_out):
            groups.setdefault(self.missing.get(table, ()), []).append(table)
        lines = [
            f"model{'s' if len(tables) > 1 else ''} {', '.join(tables)} left out: no contract provides "
            f"{', '.join(needed)}"
            for needed, tables in sorted(groups.items(), key=lambda g: (len(g[0]), g))
        ]
        lines.append(
            "to run them, add the partners' contracts to contracts/; if this partnership does not "
            "need them, remove their .sql files (the published file's _about.models_left_out says why "
            "each was left out)"
        )
        return lines


def plan_models(models: dict[str, SqlModel], sources: set[str]) -> ModelPlan:
    """The models to run when the hub's sources are ``sources``.

    A model that reads a landing table no contract provides (a partnership without the
    family-support partner has no ``landing.family_support_enrolments``) is left out, and so
    is every model that reads a left-out model: each reason names the landing tables it
    needed. Any other unknown table is an error in the SQL and raises :class:`ModelError`, as
    :func:`check_graph` does for a cycle among the models that run.
    """
    for model in models.values():
        not_landing = sorted(
            d
            for d in model.depends_on
            if d not in models and d not in sources and not d.startswith("landing.")
        )
        if not_landing:
            raise ModelError(
                f"{model.path}: reads unknown table(s) {', '.join(not_landing)} "
                f"(neither a model nor a hub source table)"
            )
    needs: dict[str, frozenset[str]] = {}

    def missing_landing(table: str, visiting: frozenset[str] = frozenset()) -> frozenset[str]:
        """The landing tables without a contract that ``table`` reads, directly or through models."""
        if table not in needs:
            if table in visiting:
                return frozenset()  # a cycle: check_graph names it
            model = models[table]
            found = {d for d in model.depends_on if d not in models and d not in sources}
            for dep in model.depends_on & models.keys():
                found |= missing_landing(dep, visiting | {table})
            needs[table] = frozenset(found)
        return needs[table]

    left_out, missing = {}, {}
    for table, model in models.items():
        if missing_landing(table):
            missing[table] = tuple(sorted(needs[table]))
            through = sorted(d for d in model.depends_on & models.keys() if missing_landing(d))
            via = f" (through {', '.join(through)})" if through else ""
            what = "that dataset" if len(needs[table]) == 1 else "those datasets"
            left_out[table] = (
                f"it needs {', '.join(sorted(needs[table]))}{via}, and no contract in "
                f"contracts/ provides {what} (add the partner's contract, or remove "
                f"{model.path.name} if the partnership does not need it)"
            )
    return ModelPlan({t: m for t, m in models.items() if t not in left_out}, left_out, missing)


def check_graph(models: dict[str, SqlModel], sources: set[str]) -> list[str]:
    """Models in run order; raises ModelError for unknown tables and cycles, naming the files."""
    for model in models.values():
        unknown = sorted(d for d in model.depends_on if d not in models and d not in sources)
        if unknown:
            raise ModelError(
                f"{model.path}: reads unknown table(s) {', '.join(unknown)} "
                f"(neither a model nor a hub source table)"
            )
    sorter = graphlib.TopologicalSorter(
        {name: {d for d in m.depends_on if d in models} for name, m in models.items()}
    )
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise ModelError(
            "models form a cycle: " + " -> ".join(str(models[n].path) for n in cycle)
        ) from None


@stage("SQL models")
def run_model(con, model: SqlModel) -> int | None:
    """Create or replace the model's table or view; returns the row count for tables."""
    kind = "TABLE" if model.materialized == "table" else "VIEW"
    try:
        # The model's SQL starts on the statement's first line, so DuckDB's LINE n is the file's.
        con.execute(f"CREATE OR REPLACE {kind} {model.table} AS {model.sql}")
    except Exception as exc:  # noqa: BLE001 - any DuckDB error becomes the model's own, with its line
        raise ModelError(_runtime_error(model, exc)) from None
    if model.description:
        escaped = model.description.replace("'", "''")
        con.execute(f"COMMENT ON {kind} {model.table} IS '{escaped}'")
    if kind == "TABLE":
        return con.execute(f"SELECT count(*) FROM {model.table}").fetchall()[0][0]
    return None


_DUCKDB_LINE = re.compile(r"^LINE (\d+):", re.MULTILINE)


def _runtime_error(model: SqlModel, exc: Exception) -> str:
    """``file:line: error`` from a DuckDB error (which reports lines of the statement run)."""
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    line = _DUCKDB_LINE.search(text)
    where = f"{model.path}:{line.group(1)}" if line else str(model.path)
    return f"{where}: {type(exc).__name__}: {first} (fix the SQL in {model.path.name} and re-run)"


# Tables written by Python assets that models may read.
HUB_SOURCES = {
    "hub.record_person",
    "hub.person_keys",
    "hub.record_identity",
    "hub.person_records",
    "hub.lsoa_reference",
    "hub.deliveries",
    RECORD_ATTRIBUTES,
}


def model_sources(contracts_dir: Path) -> set[str]:
    """Every table the models may read: the hub's own, and a landing table per dataset of every
    contract in ``contracts_dir`` (of an invalid one too: its flow is held, but the models that
    read its table stay in the graph, so one bad agreement never takes the pipeline down)."""
    contracts, problems = load_contracts(contracts_dir)
    landing = {f"landing.{name}" for c in contracts.values() for name in c.datasets}
    held = {f"landing.{name}" for path in problems for name in declared_datasets(path)}
    return HUB_SOURCES | landing | held


def model_plan(settings: Settings) -> ModelPlan:
    """The models this hub runs with its contracts, and those left out with the reason."""
    return plan_models(discover(settings.sql_dir), model_sources(settings.contracts_dir))
