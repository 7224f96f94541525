"""How much the headline effects move with the linkage threshold.

Linkage keeps every scored pair at or above 0.5 (``hub.linkage_pairs``). Re-clustering those
pairs at another threshold (Splink's connected components) gives the persons a looser or a
stricter linkage would have made, without scoring again. The cohort and outcome models are
then re-run on those persons (keeping each person's main-run key where the clusters overlap,
as linkage carries keys from month to month) in a scratch database attached to the warehouse connection
(the landed extracts and hub tables are read through views; nothing in the warehouse changes),
and the effects are estimated exactly as for the main run.
"""

from __future__ import annotations

import duckdb
import polars as pl
import pyarrow as pa
from splink import DuckDBAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold

from pipelines.core.stages import stage
from pipelines.linkage.person_keys import carry_forward
from pipelines.outcomes.effects.estimate import Band, analysis_frame, estimate_effects
from pipelines.outcomes.sql_models import SqlModel, check_graph, run_model

SCRATCH = "linkage_sensitivity"
# The models re-run for another threshold: everything downstream of the person keys except publish.
RERUN_SCHEMAS = ("staging", "cohorts", "outcomes")


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


@stage("effects: linkage sensitivity")
def estimates_at_threshold(
    con: duckdb.DuckDBPyConnection,
    models: dict[str, SqlModel],
    hub_sources: set[str],
    threshold: float,
    bands: list[Band],
) -> tuple[pl.DataFrame, int]:
    """The effects if persons had been linked at ``threshold``, and how many persons that makes.

    ``con`` is the warehouse connection; ``hub_sources`` the hub tables the models may read.
    """
    nodes = con.sql("SELECT unique_id FROM hub.person_records").to_arrow_table()
    pairs = con.sql(
        "SELECT unique_id_l, unique_id_r, match_probability FROM hub.linkage_pairs"
    ).to_arrow_table()
    clusters = pl.from_arrow(recluster(nodes, pairs, threshold)).rename(
        {"unique_id": "identity_id"}
    )
    # Persons keep their main-run key wherever the clusters overlap (as from one month to the next),
    # so the comparison group's hash-ordered draws change only where linkage changed who is who.
    main_keys = con.sql("SELECT identity_id, person_key FROM hub.person_keys").pl()
    keys, _ = carry_forward(clusters, main_keys, issued=set())
    home = con.execute("SELECT current_database()").fetchall()[0][0]
    sources = hub_sources | set(_landing(con))
    con.execute(f"ATTACH ':memory:' AS {SCRATCH}")
    try:
        con.execute(f"USE {SCRATCH}")
        for schema in ("landing", "hub", *RERUN_SCHEMAS):
            con.execute(f"CREATE SCHEMA {schema}")
        _views(con, home, hub_sources - {"hub.record_person", "hub.person_keys"})
        con.register("reclustered", keys.to_arrow())
        con.execute(f"""
            CREATE TABLE hub.record_person AS
            SELECT r.dataset, r.partner_id, r.record_token, c.person_key
            FROM "{home}".hub.record_identity r JOIN reclustered c ON c.identity_id = r.identity_id""")
        con.unregister("reclustered")
        persons = con.execute(
            "SELECT count(DISTINCT person_key) FROM hub.record_person"
        ).fetchall()[0][0]
        wanted = {name: m for name, m in models.items() if m.schema in RERUN_SCHEMAS}
        for name in check_graph(wanted, sources):
            run_model(con, wanted[name])
        estimates = estimate_effects(analysis_frame(con), bands)
    finally:
        con.execute(f'USE "{home}"')
        con.execute(f"DETACH {SCRATCH}")
    return estimates, persons


def _landing(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        f"landing.{t}"
        for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'landing'"
        ).fetchall()
    ]
