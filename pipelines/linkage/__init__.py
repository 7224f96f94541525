"""Linkage of person records across partners into ``person_key``s (Splink on DuckDB)."""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines.linkage.model import TrainedModel, predict_clusters, train
from pipelines.settings import Settings


@dataclass(frozen=True)
class LinkageResult:
    identity_records: int
    persons: int
    scored_pairs: int
    links: int
    model_trained_at: str
    model_retrained: bool


def link_person_records(con: duckdb.DuckDBPyConnection, settings: Settings,
                        retrain: bool = False) -> LinkageResult:
    """Link ``hub.person_records`` and write ``hub.person_keys`` and ``hub.record_person``.

    The saved model is reused unless ``retrain`` is set or none exists yet.
    """
    records = con.sql("SELECT * FROM hub.person_records ORDER BY unique_id").to_arrow_table()
    model = None if retrain else TrainedModel.load(settings.models)
    retrained = model is None
    if model is None:
        model = train(records, settings.duckdb_temp)
        model.save(settings.models)
    clusters, counts = predict_clusters(records, model, settings.linkage_threshold, settings.duckdb_temp)
    con.register("clusters_arrow", clusters)
    try:
        # A person's key is derived from the smallest identity id in their cluster, so
        # re-running on unchanged inputs gives every person the same key.
        con.execute("""
            CREATE OR REPLACE TABLE hub.person_keys AS
            SELECT unique_id AS identity_id,
                   'PK' || upper(substr(sha256(min(unique_id) OVER (PARTITION BY cluster_id)), 1, 14)) AS person_key
            FROM clusters_arrow
        """)
    finally:
        con.unregister("clusters_arrow")
    con.execute("""
        CREATE OR REPLACE TABLE hub.record_person AS
        SELECT r.dataset, r.partner_id, r.record_token, k.person_key
        FROM hub.record_identity r JOIN hub.person_keys k USING (identity_id)
    """)
    persons = con.execute("SELECT count(DISTINCT person_key) FROM hub.person_keys").fetchone()[0]
    return LinkageResult(records.num_rows, persons, counts["scored_pairs"], counts["links_above_threshold"],
                         model.trained_at.isoformat(timespec="seconds"), retrained)
