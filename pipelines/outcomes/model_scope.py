"""Which SQL models are per person: read from each model's SQL, never from a list of names.

A model is **per person** when every row it makes belongs to one ``person_key`` and depends only
on that person's rows of its per-person inputs (``hub.record_person`` and other per-person
models) and on tables that do not depend on who is linked to whom (landing tables, hub tables
other than the keys, models built only from those: **static**). Anything else is **population**:
a comparison group drawn across persons, a count over everyone, a model that reads a population
model. The effects' linkage sensitivity (:mod:`pipelines.outcomes.effects.sensitivity`) re-runs a
per-person model only for the persons whose clusters change between thresholds, and every
population model in full.

The proof is syntactic and conservative: a query is per person only if it passes every rule
below, so a model written another way (or a new model nobody looked at) is population and is
re-run in full, which is always right, only slower. A SELECT is per person when

- it reads at least one per-person relation and no population one, and its per-person relations
  are joined to each other on equal ``person_key`` (``ON a.person_key = b.person_key`` or
  ``USING (person_key)``);
- the first per-person relation is the FROM or inner-joined (a row of a static table that no
  person matched is nobody's), a later one is inner- or LEFT-joined; RIGHT, FULL, NATURAL, ASOF,
  POSITIONAL and LATERAL joins, PIVOTs and samples are not accepted;
- it outputs a column named ``person_key`` that is the key of a relation not on the null side of
  a LEFT JOIN (or of the only relation, through ``*``);
- GROUP BY (if any, or any aggregate) groups by that key (``GROUP BY ALL`` does), with no
  ROLLUP, CUBE or GROUPING SETS; every window function is partitioned by it; DISTINCT ON
  includes it; there is no LIMIT or OFFSET;
- a subquery in its expressions is static;

and a UNION [ALL] is per person when both sides are, with ``person_key`` in the same place.
INTERSECT and EXCEPT are population unless both sides are static. CTEs and subqueries in FROM
are judged by the same rules.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterator

import sqlglot
from sqlglot import exp

from pipelines.outcomes.sql_models import SqlModel

STATIC = "static"
PER_PERSON = "per person"
POPULATION = "population"
KEY = "person_key"


def model_scopes(
    models: dict[str, SqlModel], per_person_sources: set[str], static_sources: set[str]
) -> dict[str, str]:
    """Each model's scope (``STATIC``, ``PER_PERSON`` or ``POPULATION``), given which source
    tables are per person (keyed by ``person_key``) and which are static; a table in neither
    makes the model that reads it population."""
    order = graphlib.TopologicalSorter(
        {name: {d for d in m.depends_on if d in models} for name, m in models.items()}
    ).static_order()
    scopes: dict[str, str] = {}
    for name in order:
        known = (
            dict.fromkeys(static_sources, STATIC)
            | dict.fromkeys(per_person_sources, PER_PERSON)
            | scopes
        )
        tree = sqlglot.parse_one(models[name].sql, read="duckdb")
        scopes[name] = query_scope(tree, known)[0]
    return scopes


def query_scope(node: exp.Expression, known: dict[str, str]) -> tuple[str, int | None]:
    """The scope of a query, and for a per-person one the position of its ``person_key`` column
    (None when it comes through ``*``). ``known``: table name -> scope (CTEs are added here)."""
    if isinstance(node, exp.Subquery):
        return query_scope(node.this, known)
    known = _with_ctes(node, known)
    if known is None:
        return POPULATION, None
    if isinstance(node, exp.SetOperation):
        return _set_scope(node, known)
    if isinstance(node, exp.Select):
        return _select_scope(node, known)
    return POPULATION, None


def _with_ctes(node: exp.Expression, known: dict[str, str]) -> dict[str, str] | None:
    with_ = node.args.get("with_") or node.args.get("with")
    if with_ is None:
        return known
    if with_.args.get("recursive"):
        return None
    known = dict(known)
    for cte in with_.expressions:
        known[cte.alias_or_name] = query_scope(cte.this, known)[0]
    return known


def _set_scope(node: exp.SetOperation, known: dict[str, str]) -> tuple[str, int | None]:
    if node.args.get("limit") or node.args.get("offset"):
        return POPULATION, None
    (left, at), (right, at_right) = query_scope(node.left, known), query_scope(node.right, known)
    if left == right == STATIC:
        return STATIC, None
    if isinstance(node, exp.Union) and left == right == PER_PERSON:
        if node.args.get("by_name"):
            return PER_PERSON, None  # both sides output person_key as their key
        if at is not None and at == at_right:
            return PER_PERSON, at
    return POPULATION, None


def _sources(select: exp.Select) -> Iterator[tuple[exp.Expression, exp.Join | None]]:
    from_ = select.args.get("from_") or select.args.get("from")
    if from_ is not None:
        yield from_.this, None
    for join in select.args.get("joins") or []:
        yield join.this, join


def _source_scope(source: exp.Expression, known: dict[str, str]) -> str:
    if source.args.get("sample") or source.args.get("pivots"):
        return POPULATION
    if isinstance(source, exp.Table):
        if not isinstance(source.this, exp.Identifier):
            return POPULATION  # a table function: not looked into
        name = f"{source.db}.{source.name}" if source.db else source.name
        return known.get(name, POPULATION)
    if isinstance(source, exp.Subquery):
        return query_scope(source.this, known)[0]
    if isinstance(source, exp.Values):
        return STATIC
    return POPULATION


def _own_nodes(node: exp.Expression) -> Iterator[exp.Expression]:
    """The nodes of an expression, without descending into subqueries (judged on their own)."""
    yield node
    for child in node.iter_expressions():
        if isinstance(child, exp.Query):
            continue
        yield from _own_nodes(child)


def _nested_queries(node: exp.Expression) -> Iterator[exp.Query]:
    for child in node.iter_expressions():
        if isinstance(child, exp.Query):
            yield child
        else:
            yield from _nested_queries(child)


_EXPRESSION_ARGS = ("where", "group", "having", "qualify", "order", "distinct")


def _select_scope(select: exp.Select, known: dict[str, str]) -> tuple[str, int | None]:
    if select.args.get("laterals") or select.args.get("limit") or select.args.get("offset"):
        return POPULATION, None
    parts = [select.args[a] for a in _EXPRESSION_ARGS if select.args.get(a) is not None]
    parts += [e for e in select.expressions]
    parts += [j.args["on"] for _, j in _sources(select) if j is not None and j.args.get("on")]
    for part in parts:
        for query in _nested_queries(part):
            if query_scope(query, known)[0] != STATIC:
                return POPULATION, None
    sources = [(s, j, _source_scope(s, known)) for s, j in _sources(select)]
    scopes = {scope for _, _, scope in sources}
    if POPULATION in scopes:
        return POPULATION, None
    if PER_PERSON not in scopes:
        return STATIC, None
    keyed, nullable = _keyed_aliases(sources)
    if keyed is None:
        return POPULATION, None
    owners = keyed - nullable

    def is_key(e: exp.Expression) -> bool:
        # Unqualified: DuckDB resolves it only if one relation has it or USING merged it, and every
        # per-person relation has a person_key, so it is theirs (the left one's for a LEFT JOIN).
        return (
            isinstance(e, exp.Column)
            and e.name == KEY
            and (not e.table or e.table in owners)
            and not isinstance(e.this, exp.Star)
        )

    position = _key_position(select, sources, owners, is_key)
    if position is False:
        return POPULATION, None
    distinct = select.args.get("distinct")
    if distinct is not None and distinct.args.get("on") is not None:
        if not any(is_key(e) for e in distinct.args["on"].expressions):
            return POPULATION, None
    own = [n for part in parts for n in _own_nodes(part)]
    for window in (n for n in own if isinstance(n, exp.Window)):
        if not any(is_key(e) for e in window.args.get("partition_by") or []):
            return POPULATION, None
    group = select.args.get("group")
    if group is not None:
        if any(group.args.get(a) for a in ("rollup", "cube", "grouping_sets")):
            return POPULATION, None
        if not group.args.get("all") and not any(
            is_key(e) or _refers_to(e, select, position) for e in group.expressions
        ):
            return POPULATION, None
    elif any(isinstance(n, exp.AggFunc) and not isinstance(n.parent, exp.Window) for n in own):
        return POPULATION, None
    return PER_PERSON, position


def _keyed_aliases(sources) -> tuple[set[str] | None, set[str]]:
    """The aliases of the per-person relations, all joined on person_key (None if they are not),
    and those of them on the null side of a LEFT JOIN."""
    keyed: set[str] = set()
    nullable: set[str] = set()
    for source, join, scope in sources:
        alias = source.alias_or_name
        if join is None:
            if scope == PER_PERSON:
                keyed.add(alias)
            continue
        side, kind = (join.side or "").upper(), (join.kind or "").upper()
        if join.args.get("method") or side in ("RIGHT", "FULL"):
            return None, nullable
        if kind in ("SEMI", "ANTI"):
            if scope != STATIC:
                return None, nullable
            continue
        if kind not in ("", "INNER", "OUTER", "CROSS"):
            return None, nullable
        if scope == STATIC:
            continue
        if not keyed:
            if side == "LEFT":
                return None, nullable  # static rows no person matched would be nobody's
            keyed.add(alias)
            continue
        if not _joined_on_key(join, alias, keyed):
            return None, nullable
        keyed.add(alias)
        if side == "LEFT":
            nullable.add(alias)
    return keyed, nullable


def _joined_on_key(join: exp.Join, alias: str, keyed: set[str]) -> bool:
    if any(u.name == KEY for u in join.args.get("using") or []):
        return True
    on = join.args.get("on")
    if on is None:
        return False
    for conjunct in on.flatten() if isinstance(on, exp.And) else [on]:
        if not isinstance(conjunct, exp.EQ):
            continue
        a, b = conjunct.this, conjunct.expression
        if not (isinstance(a, exp.Column) and isinstance(b, exp.Column)):
            continue
        tables = {a.table, b.table}
        if a.name == b.name == KEY and alias in tables and tables - {alias} <= keyed:
            return True
    return False


def _key_position(select, sources, owners, is_key) -> int | None | bool:
    """Where the output's person_key is (None: through ``*``), or False when it has none."""
    found = [
        i
        for i, e in enumerate(select.expressions)
        if e.alias_or_name == KEY and is_key(e.unalias())
    ]
    named = [e for e in select.expressions if e.alias_or_name == KEY]
    if len(found) == 1 and len(named) == 1:
        return found[0]
    if named:
        return False
    for e in select.expressions:
        if isinstance(e, exp.Star) and len(sources) == 1 and sources[0][2] == PER_PERSON:
            return None
        if isinstance(e, exp.Column) and isinstance(e.this, exp.Star) and e.table in owners:
            return None
    return False


def _refers_to(e: exp.Expression, select: exp.Select, position) -> bool:
    """A GROUP BY ordinal naming the key's output column (GROUP BY 1)."""
    return (
        isinstance(position, int)
        and isinstance(e, exp.Literal)
        and e.is_int
        and int(e.this) == position + 1
    )
