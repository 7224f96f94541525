"""How much the headline effects move with the linkage threshold.

Linkage keeps every scored pair at or above 0.5 (``hub.linkage_pairs``). Re-clustering those
pairs at another threshold (Splink's connected components) gives the persons a looser or a
stricter linkage would have made, without scoring again. The cohort and outcome models are
then re-run on those persons (keeping each person's main-run key where the clusters overlap,
as linkage carries keys from month to month) in a scratch database attached to the warehouse connection
(the landed extracts and hub tables are read through views; nothing in the warehouse changes),
and the effects are estimated exactly as for the main run.

Most persons are the same at every threshold, so only what changes is re-run (issues 17, 24):

- clustering: a main-run person with no pair at the threshold to anyone else, and whose own
  pairs at the threshold certainly connect its records (:func:`recluster_changed`), is its own
  cluster; only the other records are clustered with Splink. This gives exactly the clusters of
  re-clustering everything (tested);
- a cluster whose identity records are exactly those of one main-run person keeps that person's
  key (as :func:`~pipelines.linkage.person_keys.carry_forward` would give it); only the other
  clusters go through ``carry_forward``, against the main-run persons their records belong to
  (all of each one's records). That gives them the keys a run over every cluster gives: an
  unchanged cluster and its key overlap only each other, so they never compete with a changed one
  for a key; and should a new key repeat an unchanged person's, it is run again against every
  key, as a full run numbers a new key past the keys in use. The **changed persons** are the main-run
  keys of those clusters' records and the keys those clusters get;
- a **per-person** model (:mod:`pipelines.outcomes.model_scope` proves it from the SQL: each row
  depends only on one person's records) is run on the changed persons' records only, in a
  second scratch database, and its table for the threshold is the main run's rows of every other
  person plus those rows; if the warehouse has no table of the model with the same columns, it
  is run in full instead;
- every other model (population: the comparison group is drawn across persons, age bands and
  such are static) is run in full on those tables, as is any model the SQL does not prove to be
  per person (a new model is population until its SQL passes the rules).

This assumes the warehouse's per-person tables were made by the current SQL from the current
records and keys (the asset runs after the models in the same job), and that
``hub.record_person`` is ``hub.record_identity`` joined to ``hub.person_keys`` (linkage writes
both in one transaction). ``incremental=False`` re-runs
every model in full, as before; tests/outcomes/test_linkage_sensitivity.py checks that both give
the same estimates and persons.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import polars as pl
import pyarrow as pa
from splink import DuckDBAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold

from pipelines.core.stages import stage
from pipelines.linkage.person_keys import carry_forward
from pipelines.outcomes.effects.estimate import Band, analysis_frame, estimate_effects
from pipelines.outcomes.model_scope import KEY, PER_PERSON, STATIC, model_scopes
from pipelines.outcomes.sql_models import SqlModel, check_graph, run_model

SCRATCH = "linkage_sensitivity"
# The per-person models run for the changed persons only, before their rows join the others'.
CHANGED = "linkage_sensitivity_changed"
# The models re-run for another threshold: everything downstream of the person keys except publish.
RERUN_SCHEMAS = ("staging", "cohorts", "outcomes")
# The hub tables keyed by person: the rest of the hub's tables are the same at any threshold.
PER_PERSON_SOURCES = {"hub.record_person", "hub.person_keys"}


def recluster(nodes: pa.Table, pairs: pa.Table, threshold: float) -> pa.Table:
    """(unique_id, cluster_id) of every identity record, clustering the pairs at or above ``threshold``."""
    con = duckdb.connect()
    try:
        clusters = cluster_pairwise_predictions_at_threshold(
            nodes,
            pairs,
            db_api=DuckDBAPI(connection=con),
            node_id_column_name="unique_id",
            threshold_match_probability=threshold,
        )
        return clusters.as_duckdbpyrelation().select("unique_id", "cluster_id").to_arrow_table()
    finally:
        con.close()


def recluster_changed(con: duckdb.DuckDBPyConnection, home: str, threshold: float) -> None:
    """The table ``clusters`` in the current (scratch) database: every identity record's
    ``identity_id`` and ``cluster_id``, the rows :func:`recluster` gives at ``threshold``, with its
    main-run key ``main_key`` and whether its cluster was ``kept`` as the main run's person
    without clustering. Reads the warehouse ``home``; clusters only where the main run's persons
    may not be the clusters at ``threshold``.

    A main-run person whose records are all nodes, with no pair at or above ``threshold`` to a
    record of anyone else, is a cluster as it stands if its records are connected by its own pairs
    at or above ``threshold``: certain for one record, for two with a pair, for three with two pairs
    (any two of the three possible pairs join all three). Its cluster id is then its smallest
    identity id, as Splink names a connected component. Every other record (of a larger person, a
    person with a pair to someone else, or with no main-run key) is clustered with Splink, with
    the pairs among those records: no pair at the threshold joins them to a person kept as it was.
    """
    con.execute(f"""
        CREATE TABLE node_keys AS
        SELECT n.unique_id AS identity_id, k.person_key AS main_key
        FROM "{home}".hub.person_records n LEFT JOIN "{home}".hub.person_keys k ON k.identity_id = n.unique_id""")
    con.execute(
        f"""
        CREATE TABLE threshold_pairs AS
        SELECT p.unique_id_l, p.unique_id_r, p.match_probability, l.main_key AS key_l, r.main_key AS key_r,
               l.identity_id IS NULL OR r.identity_id IS NULL AS not_a_node
        FROM "{home}".hub.linkage_pairs p
        LEFT JOIN node_keys l ON l.identity_id = p.unique_id_l
        LEFT JOIN node_keys r ON r.identity_id = p.unique_id_r
        WHERE p.match_probability >= $threshold""",
        {"threshold": threshold},
    )
    strays = con.execute("SELECT count(*) FROM threshold_pairs WHERE not_a_node").fetchall()[0][0]
    if strays:
        # A pair naming a record that is not a node: keep no person as it was, Splink takes all.
        con.execute("CREATE TABLE kept_persons AS SELECT main_key FROM node_keys WHERE false")
    else:
        con.execute(f"""
            CREATE TABLE kept_persons AS
            WITH sizes AS (SELECT main_key, count(*) AS n FROM node_keys WHERE main_key IS NOT NULL GROUP BY main_key),
                 key_sizes AS (SELECT person_key, count(*) AS n FROM "{home}".hub.person_keys GROUP BY person_key),
                 crossing AS (SELECT key_l AS main_key FROM threshold_pairs WHERE key_l IS DISTINCT FROM key_r
                              UNION SELECT key_r FROM threshold_pairs WHERE key_l IS DISTINCT FROM key_r),
                 own AS (SELECT key_l AS main_key,
                                count(DISTINCT (least(unique_id_l, unique_id_r), greatest(unique_id_l, unique_id_r))) AS pairs
                         FROM threshold_pairs WHERE key_l = key_r AND unique_id_l <> unique_id_r GROUP BY key_l)
            SELECT s.main_key FROM sizes s
            JOIN key_sizes z ON z.person_key = s.main_key
            LEFT JOIN own o USING (main_key)
            ANTI JOIN crossing c ON c.main_key = s.main_key
            WHERE s.n = z.n AND (s.n = 1 OR (s.n = 2 AND o.pairs >= 1) OR (s.n = 3 AND o.pairs >= 2))""")
    con.execute("""
        CREATE TABLE recluster_nodes AS
        SELECT identity_id AS unique_id FROM node_keys ANTI JOIN kept_persons USING (main_key)""")
    # No pair at the threshold joins a kept person's record to another record (it would cross).
    rest = recluster(
        con.sql("SELECT unique_id FROM recluster_nodes").to_arrow_table(),
        con.sql(
            "SELECT unique_id_l, unique_id_r, match_probability FROM threshold_pairs"
            + ("" if strays else " SEMI JOIN recluster_nodes ON unique_id = unique_id_l")
        ).to_arrow_table(),
        threshold,
    )
    con.register("reclustered_rest", rest)
    try:
        con.execute("""
            CREATE TABLE clusters AS
            SELECT identity_id, min(identity_id) OVER (PARTITION BY main_key) AS cluster_id, main_key,
                   TRUE AS kept
            FROM node_keys SEMI JOIN kept_persons USING (main_key)
            UNION ALL
            SELECT CAST(r.unique_id AS VARCHAR), CAST(r.cluster_id AS VARCHAR), n.main_key, FALSE
            FROM reclustered_rest r LEFT JOIN node_keys n ON n.identity_id = CAST(r.unique_id AS VARCHAR)""")
    finally:
        con.unregister("reclustered_rest")


def _views(con: duckdb.DuckDBPyConnection, home: str, hub_sources: set[str]) -> None:
    # Tables and views (hub.record_attributes is a view over the landing tables).
    for schema, name in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = $home "
        "AND (schema_name = 'landing' OR schema_name || '.' || table_name IN (SELECT unnest($hub))) "
        "UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = $home "
        "AND NOT internal AND schema_name || '.' || view_name IN (SELECT unnest($hub))",
        {"home": home, "hub": sorted(hub_sources)},
    ).fetchall():
        con.execute(f'CREATE VIEW {schema}."{name}" AS SELECT * FROM "{home}".{schema}."{name}"')


def _scratch(con: duckdb.DuckDBPyConnection, name: str, home: str, hub_sources: set[str]) -> None:
    """Attach an empty database ``name`` and make it current, with views of the landing tables
    and of the hub tables other than the keys."""
    con.execute(f"ATTACH ':memory:' AS {name}")
    con.execute(f"USE {name}")
    for schema in ("landing", "hub", *RERUN_SCHEMAS):
        con.execute(f"CREATE SCHEMA {schema}")
    _views(con, home, hub_sources - PER_PERSON_SOURCES)


@stage("effects: linkage sensitivity")
def estimates_at_threshold(
    con: duckdb.DuckDBPyConnection,
    models: dict[str, SqlModel],
    hub_sources: set[str],
    threshold: float,
    bands: list[Band],
    *,
    incremental: bool = True,
) -> tuple[pl.DataFrame, int]:
    """The effects if persons had been linked at ``threshold``, and how many persons that makes.

    ``con`` is the warehouse connection; ``hub_sources`` the hub tables the models may read.
    ``incremental`` re-runs only the persons whose clusters change (see the module's docstring);
    False re-runs every model in full. Both give the same estimates and persons.
    """
    # Persons keep their main-run key wherever the clusters overlap (as from one month to the next),
    # so the comparison group's hash-ordered draws change only where linkage changed who is who.
    home = con.execute("SELECT current_database()").fetchall()[0][0]

    def main_keys() -> pl.DataFrame:
        return con.sql(f'SELECT identity_id, person_key FROM "{home}".hub.person_keys').pl()

    sources = hub_sources | set(_landing(con))
    wanted = {name: m for name, m in models.items() if m.schema in RERUN_SCHEMAS}
    order = check_graph(wanted, sources)
    attached = [SCRATCH]
    try:
        _scratch(con, SCRATCH, home, hub_sources)
        if incremental:
            recluster_changed(con, home, threshold)
            _changed_persons(con, home, main_keys)
            attached.append(CHANGED)
            _scratch(con, CHANGED, home, hub_sources)
            con.execute(f"""
                CREATE TABLE hub.record_person AS SELECT * FROM {SCRATCH}.hub.record_person
                SEMI JOIN {SCRATCH}.changed_persons USING ({KEY})""")
            con.execute(f"USE {SCRATCH}")
            scopes = model_scopes(wanted, PER_PERSON_SOURCES, sources - PER_PERSON_SOURCES)
            for name in order:
                _run_for_threshold(con, home, wanted[name], scopes[name])
        else:
            clusters = recluster(
                con.sql(f'SELECT unique_id FROM "{home}".hub.person_records').to_arrow_table(),
                con.sql(
                    "SELECT unique_id_l, unique_id_r, match_probability "
                    f'FROM "{home}".hub.linkage_pairs'
                ).to_arrow_table(),
                threshold,
            )
            keys, _ = carry_forward(
                pl.from_arrow(clusters).rename({"unique_id": "identity_id"}), main_keys(), set()
            )
            con.register("reclustered", keys.to_arrow())
            con.execute(f"""
                CREATE TABLE hub.record_person AS
                SELECT r.dataset, r.partner_id, r.record_token, c.person_key
                FROM "{home}".hub.record_identity r JOIN reclustered c ON c.identity_id = r.identity_id""")
            con.unregister("reclustered")
            for name in order:
                run_model(con, wanted[name])
        persons = con.execute(
            "SELECT count(DISTINCT person_key) FROM hub.record_person"
        ).fetchall()[0][0]
        estimates = estimate_effects(analysis_frame(con, per_cluster=True), bands)
    finally:
        con.execute(f'USE "{home}"')
        for name in attached:
            con.execute(f"DETACH DATABASE IF EXISTS {name}")
    return estimates, persons


def _changed_persons(
    con: duckdb.DuckDBPyConnection, home: str, main_keys: Callable[[], pl.DataFrame]
) -> None:
    """In the scratch database, from ``clusters`` (:func:`recluster_changed`): ``hub.record_person``
    at the threshold, and ``changed_persons``, the keys whose records differ from the main run's
    (main-run keys and the keys they become)."""
    # A cluster is unchanged when its records are all of one main-run person, and all of them
    # (as every kept cluster is).
    con.execute(f"""
        CREATE TABLE changed_clusters AS
        WITH sizes AS (SELECT person_key, count(*) AS n FROM "{home}".hub.person_keys GROUP BY person_key),
             reclustered AS (SELECT cluster_id, count(*) AS n, count(main_key) AS keyed,
                                    min(main_key) AS lo, max(main_key) AS hi
                             FROM clusters WHERE NOT kept GROUP BY cluster_id)
        SELECT c.cluster_id FROM reclustered c LEFT JOIN sizes s ON s.person_key = c.lo
        WHERE (c.keyed = c.n AND c.lo = c.hi AND s.n = c.n) IS NOT TRUE""")
    changed = con.sql(
        "SELECT identity_id, cluster_id FROM clusters SEMI JOIN changed_clusters USING (cluster_id)"
    ).pl()
    con.execute("""
        CREATE TABLE changed_main_keys AS
        SELECT DISTINCT main_key AS person_key FROM clusters SEMI JOIN changed_clusters USING (cluster_id)
        WHERE main_key IS NOT NULL""")
    # The main-run keys of the changed clusters' records, each with all its records: what
    # carry_forward weighs them by, as in a run over every cluster (no unchanged cluster holds them).
    previous = con.sql(f"""
        SELECT identity_id, person_key FROM "{home}".hub.person_keys
        SEMI JOIN changed_main_keys USING (person_key)""").pl()
    for against in (previous, None):
        keys, _ = carry_forward(changed, main_keys() if against is None else against, set())
        con.register("changed_keys", keys.to_arrow())
        try:
            con.execute(
                "CREATE OR REPLACE TABLE changed_identities AS SELECT CAST(identity_id AS VARCHAR) "
                "AS identity_id, CAST(person_key AS VARCHAR) AS person_key FROM changed_keys"
            )
        finally:
            con.unregister("changed_keys")
        # A new key that an unchanged person holds would have been numbered past it in a run
        # against every key: then run against every key.
        clash = con.execute(f"""
            SELECT count(*) FROM changed_identities
            SEMI JOIN "{home}".hub.person_keys USING (person_key)
            ANTI JOIN changed_main_keys USING (person_key)""").fetchall()[0][0]
        if not clash:
            break
    con.execute(f"""
        CREATE TABLE changed_persons AS
        SELECT {KEY} FROM changed_identities UNION SELECT {KEY} FROM changed_main_keys""")
    # The unchanged persons' rows are the main run's: linkage writes hub.record_person as
    # hub.record_identity joined to hub.person_keys, in the keys' transaction, and a withdrawal
    # deletes the same records from both.
    con.execute(f"""
        CREATE TABLE hub.record_person AS
        SELECT * FROM "{home}".hub.record_person ANTI JOIN changed_main_keys USING ({KEY})
        UNION ALL
        SELECT r.dataset, r.partner_id, r.record_token, k.person_key
        FROM "{home}".hub.record_identity r JOIN changed_identities k USING (identity_id)""")


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[tuple[str, str]]:
    schema, name = table.split(".")
    return con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? "
        "AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [database, schema, name],
    ).fetchall()


def _run_for_threshold(
    con: duckdb.DuckDBPyConnection, home: str, model: SqlModel, scope: str
) -> None:
    """``model``'s table at the threshold in the scratch database, and what the per-person models
    after it read of it in the changed persons' database."""
    table = f'{model.schema}."{model.name}"'
    if scope == PER_PERSON:
        con.execute(f"USE {CHANGED}")
        try:
            run_model(con, model)
        finally:
            con.execute(f"USE {SCRATCH}")
        if _columns(con, home, model.table) == _columns(con, CHANGED, model.table):
            con.execute(f"""
                CREATE TABLE {table} AS
                SELECT * FROM "{home}".{table} ANTI JOIN changed_persons USING ({KEY})
                UNION ALL
                SELECT * FROM {CHANGED}.{table}""")
            return
        # No main-run table like it in the warehouse: run in full, and read the changed persons' rows.
        con.execute(f"DROP {'VIEW' if model.materialized == 'view' else 'TABLE'} {CHANGED}.{table}")
        run_model(con, model)
        con.execute(
            f"CREATE VIEW {CHANGED}.{table} AS SELECT * FROM {SCRATCH}.{table} "
            f"SEMI JOIN {SCRATCH}.changed_persons USING ({KEY})"
        )
        return
    run_model(con, model)
    if scope == STATIC:
        con.execute(f"CREATE VIEW {CHANGED}.{table} AS SELECT * FROM {SCRATCH}.{table}")


def _landing(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        f"landing.{t}"
        for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'landing'"
        ).fetchall()
    ]
