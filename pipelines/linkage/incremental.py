"""Incremental monthly linkage: score only the pairs that touch an identity record that is new or
changed since the last run, and reuse the kept pairs between the others (issue 24).

A full prediction scores every blocked pair of every identity record, so a monthly run cost what
all history holds. A pair of two identity records that have not changed since the last run is
blocked and compared on the same values as then, so its score is the one kept in
``hub.linkage_pairs`` (up to the term-frequency drift below). What changed is found set-based in
the warehouse: each run keeps a hash of every ``hub.person_records`` row it scored
(``hub.linkage_scored_records``); a record whose row hash differs, or that was not scored, is
*changed*, and one scored but gone is *vanished*.

Exactly the pairs a full prediction gives for the changed records, and each once: every blocking
rule ``R`` becomes two, ``R AND l.changed`` and ``R AND r.changed AND NOT l.changed``, in the
original order. Splink excludes from a rule the pairs of every rule before it (``NOT
coalesce(earlier, false)``); for a pair touching a changed record each earlier pair of rules
excludes exactly what the original earlier rule did, so the pairs are those of a full prediction
that touch a changed record. A one-sided condition is pushed below the join by DuckDB: the
month's records are joined to all records, not all records to all.

Clustering follows what arrived too: the pairs' clusters are kept with them
(``hub.linkage_clusters``), and only the clusters a month touched are clustered again
(:func:`cluster_touched` says why the others are still components, with the same ids).

The kept pairs, their clusters, the row hashes and what they were scored with (:class:`Basis`:
the model, the threshold and the placeholder values masked) are written in one transaction, so
they always describe the same scoring: a run killed before it leaves the last run's, which still
agree.
Any difference in the basis, a missing table or an operator's ``--full-relink`` makes the run a
full relink, and the reason is recorded (``hub.linkage_runs.scoring``, the QA report and the
``linkage_run`` audit event's ``full_relink_reason``).

Term frequencies are not frozen: a new pair is scored with the term frequencies of the whole
population of this run, as a full relink would, while a kept pair keeps those of the run that
scored it. Docs/linkage.md (*Incremental linkage*) says why, and docs/benchmarks.md what it
changed in the person keys against a full relink.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from splink import DuckDBAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold

from pipelines.core.stages import stage
from pipelines.core.warehouse import qualified_table_exists
from pipelines.linkage.model import (
    KEEP_PAIRS_FROM,
    Prediction,
    TrainedModel,
    _scoring_linker,
    match_weights_chart,
)
from pipelines.linkage.placeholders import Placeholders, mask_placeholders, placeholders_digest

KEPT_PAIRS = "hub.linkage_pairs"
SCORED_RECORDS = "hub.linkage_scored_records"  # unique_id, row_hash: the records the pairs are of
BASIS = "hub.linkage_basis"  # one row: what the kept pairs were scored with
CLUSTERS = (
    "hub.linkage_clusters"  # unique_id, cluster_id: the kept pairs' clusters at the threshold
)
CHANGED = "linkage_changed"  # the records' column (and the temp table) of changed identity records
_HASHES = "linkage_row_hashes"  # temp: this run's row hashes
_VANISHED = "linkage_vanished"  # temp: the ids of records scored last time and gone now


@dataclass(frozen=True)
class Basis:
    """What a run's pairs were scored with: digests, never values."""

    model: str  # SHA-256 of the saved model (settings, training date, placeholder handling)
    threshold: float
    placeholders: str  # SHA-256 of the placeholder values treated as missing

    @classmethod
    def of(cls, model: TrainedModel, threshold: float, placeholders: list[Placeholders]) -> Basis:
        # As saved (TrainedModel.save): a model just trained and the same model loaded next month
        # give one digest.
        saved = json.dumps(
            json.loads(
                json.dumps(
                    [
                        model.trained_at.isoformat(timespec="seconds"),
                        model.masks_placeholders,
                        model.splink_settings,
                    ],
                    default=str,
                )
            ),
            sort_keys=True,
        )
        return cls(
            hashlib.sha256(saved.encode()).hexdigest(),
            float(threshold),
            placeholders_digest(placeholders),
        )


def hash_person_records(con: duckdb.DuckDBPyConnection) -> None:
    """This run's row hash of every ``hub.person_records`` row, in a temp table (64-bit
    ``hash`` of the whole row: a changed record that kept its hash is one chance in 2^64)."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_HASHES} AS "
        "SELECT unique_id, hash(p) AS row_hash FROM hub.person_records p"
    )


def full_relink_reason(
    con: duckdb.DuckDBPyConnection,
    basis: Basis | None,
    *,
    retrained: bool,
    requested: bool,
    backend: str,
) -> str | None:
    """Why this run must score every pair (None: it can score only what changed). ``basis`` None:
    the threshold is still to be calibrated on this run's scores."""
    if requested:
        return "asked for (placelink run --full-relink)"
    if retrained:
        return "the model was (re)trained"
    if basis is None:
        return "the threshold is calibrated on this run's scores"
    if basis.threshold < KEEP_PAIRS_FROM:
        return f"the threshold is below {KEEP_PAIRS_FROM}, where pairs are kept from"
    if backend != "duckdb":
        return f"scoring on {backend} (incremental linkage runs on DuckDB)"
    if not all(qualified_table_exists(con, t) for t in (KEPT_PAIRS, SCORED_RECORDS, BASIS)):
        return "no kept pairs from a previous run"
    rows = con.execute(f"SELECT model, threshold, placeholders FROM {BASIS}").fetchall()
    if len(rows) != 1:
        return "no kept pairs from a previous run"
    model, threshold, placeholders = rows[0]
    if model != basis.model:
        return "the saved model changed since the kept pairs were scored"
    if threshold != basis.threshold:
        return "the threshold changed since the kept pairs were scored"
    if placeholders != basis.placeholders:
        return "the placeholder values changed since the kept pairs were scored"
    return None


@dataclass(frozen=True)
class Changes:
    """How the identity records moved since the kept pairs were scored (counts only)."""

    changed: int  # new, or a feature changed
    vanished: int  # scored then, gone now
    kept_pairs: int  # kept pairs reused (neither record changed or vanished)


def find_changes(con: duckdb.DuckDBPyConnection) -> Changes:
    """Leave the ids of the changed identity records in the temp table ``linkage_changed`` and
    the kept pairs between unchanged ones in the temp table ``linkage_kept_pairs``."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {CHANGED} AS
        SELECT h.unique_id FROM {_HASHES} h LEFT JOIN {SCORED_RECORDS} s USING (unique_id)
        WHERE s.row_hash IS DISTINCT FROM h.row_hash""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {_VANISHED} AS
        SELECT s.unique_id FROM {SCORED_RECORDS} s ANTI JOIN {_HASHES} h USING (unique_id)""")
    vanished = con.execute(f"SELECT count(*) FROM {_VANISHED}").fetchall()[0][0]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE linkage_kept_pairs AS
        SELECT p.* FROM {KEPT_PAIRS} p
        SEMI JOIN {_HASHES} hl ON hl.unique_id = p.unique_id_l
        SEMI JOIN {_HASHES} hr ON hr.unique_id = p.unique_id_r
        ANTI JOIN {CHANGED} cl ON cl.unique_id = p.unique_id_l
        ANTI JOIN {CHANGED} cr ON cr.unique_id = p.unique_id_r""")
    changed, kept = con.execute(
        f"SELECT (SELECT count(*) FROM {CHANGED}), (SELECT count(*) FROM linkage_kept_pairs)"
    ).fetchall()[0]
    return Changes(changed, vanished, kept)


def changed_only(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of a saved model whose blocking rules give only the pairs that touch a record whose
    ``linkage_changed`` is true: each rule split in two, one-sided (see the module docstring)."""
    scoring = copy.deepcopy(settings)
    rules = []
    for rule in scoring["blocking_rules_to_generate_predictions"]:
        sql = rule["blocking_rule"] if isinstance(rule, dict) else rule
        extra = (
            {k: v for k, v in rule.items() if k != "blocking_rule"}
            if isinstance(rule, dict)
            else {}
        )
        for side in (f"l.{CHANGED}", f"r.{CHANGED} AND NOT l.{CHANGED}"):
            rules.append({**extra, "blocking_rule": f"({sql}) AND {side}"})
    scoring["blocking_rules_to_generate_predictions"] = rules
    retained = scoring.get("additional_columns_to_retain") or []
    scoring["additional_columns_to_retain"] = [*retained, CHANGED]
    return scoring


def predict_changed(
    con: duckdb.DuckDBPyConnection,
    records: pa.Table,
    model: TrainedModel,
    threshold: float,
    placeholders: list[Placeholders],
    temp_dir: Path | None = None,
    memory_limit: str = "",
) -> tuple[Prediction, Delta]:
    """Score the pairs touching the records in ``linkage_changed`` (:func:`find_changes`), add
    the kept pairs, and cluster at ``threshold``: the clusters a full prediction gives (term
    frequencies aside). Only the clusters the month touched are clustered again
    (:func:`cluster_touched`); the :class:`Delta` says what, for :func:`keep_pairs`."""
    changed = con.sql(f"SELECT unique_id FROM {CHANGED}").to_arrow_table().column(0)
    new = None
    if len(changed):
        # Splink's scratch database is loaded only when there is something to score: a month with
        # nothing new clusters the kept pairs.
        scored = mask_placeholders(records, placeholders) if model.masks_placeholders else records
        flags = pc.is_in(scored.column("unique_id"), value_set=changed)
        scored = scored.append_column(CHANGED, flags)
        scoring = dataclasses.replace(model, splink_settings=changed_only(model.splink_settings))
        with _scoring_linker(scored, scoring, temp_dir, None, memory_limit) as linker:
            with stage("linkage: predict"):
                predictions = linker.inference.predict(threshold_match_probability=KEEP_PAIRS_FROM)
                new = predictions.query_sql(
                    "SELECT unique_id_l, unique_id_r, match_probability FROM {this} "
                    f"WHERE match_probability >= {KEEP_PAIRS_FROM}"
                ).as_pyarrow_table()
    kept = con.sql(
        "SELECT unique_id_l, unique_id_r, match_probability FROM linkage_kept_pairs"
    ).to_arrow_table()
    if new is not None:
        new = new.cast(kept.schema)
    pairs = kept if new is None else pa.concat_tables([kept, new])
    with stage("linkage: cluster"):
        clusters, clustered = cluster_touched(
            con, records.select(["unique_id"]), pairs, new, threshold
        )
    links = pc.sum(pc.greater_equal(pairs.column("match_probability"), threshold)).as_py()
    return (
        Prediction(
            clusters,
            pairs.num_rows,
            int(links or 0),
            match_weights_chart(model, records),
            "duckdb",
            pairs,
            threshold,
            model.threshold_method if model.threshold == threshold else "as configured",
            placeholders,
        ),
        Delta(new, clustered),
    )


@dataclass(frozen=True)
class Delta:
    """What an incremental run adds to what the last run kept."""

    new_pairs: pa.Table | None  # the pairs it scored (None: nothing changed, nothing scored)
    # unique_id, cluster_id of the records it clustered again; None: it clustered every record
    clustered: pa.Table | None

    @property
    def reclustered(self) -> int | None:
        return None if self.clustered is None else self.clustered.num_rows


def cluster_touched(
    con: duckdb.DuckDBPyConnection,
    nodes: pa.Table,
    pairs: pa.Table,
    new: pa.Table | None,
    threshold: float,
) -> tuple[pa.Table, pa.Table | None]:
    """The connected components of ``pairs`` at or above ``threshold`` over ``nodes`` (every
    identity record), as :func:`cluster` gives them, clustering again only the components the
    month touched; the second value is those components' records (unique_id, cluster_id; None:
    all were clustered, because the last run kept no clusters or one of its records is missing
    from them).

    A cluster kept with the pairs (``hub.linkage_clusters``, written with them in one
    transaction, at the same threshold: the basis) is *touched* when it holds a record that
    changed or vanished, or a record of a new pair at or above ``threshold`` (``new``). Any other
    kept cluster holds only unchanged records, so all its pairs are kept pairs and no new pair
    reaches it: it is still a component, and keeps its cluster id (Splink's: the smallest
    ``unique_id`` of the component, so the id a full clustering gives). A pair at or above the
    threshold between a touched and an untouched cluster cannot exist (a kept one would have
    joined them last run, a new one touches both), so the touched clusters' records and the new
    records are clustered on their own pairs."""
    ready = (
        qualified_table_exists(con, CLUSTERS)
        and not con.execute(
            f"SELECT count(*) FROM {_HASHES} h ANTI JOIN {CHANGED} c USING (unique_id) "
            f"ANTI JOIN {CLUSTERS} k USING (unique_id)"
        ).fetchall()[0][0]
    )
    if not ready:
        return cluster(nodes, pairs, threshold), None
    con.register(
        "linkage_new_pairs",
        new if new is not None else pairs.schema.empty_table(),
    )
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE linkage_touched AS
            SELECT cluster_id FROM {CLUSTERS} WHERE unique_id IN (
                SELECT unique_id FROM {CHANGED}
                UNION ALL SELECT unique_id FROM {_VANISHED}
                UNION ALL SELECT unique_id_l FROM linkage_new_pairs WHERE match_probability >= {threshold!r}
                UNION ALL SELECT unique_id_r FROM linkage_new_pairs WHERE match_probability >= {threshold!r})
            GROUP BY cluster_id""")
    finally:
        con.unregister("linkage_new_pairs")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE linkage_untouched AS
        SELECT k.unique_id, k.cluster_id FROM {CLUSTERS} k
        SEMI JOIN {_HASHES} h USING (unique_id)
        ANTI JOIN {CHANGED} c USING (unique_id)
        ANTI JOIN linkage_touched t USING (cluster_id)""")
    con.register("linkage_all_pairs", pairs)
    try:
        again = con.sql(
            f"SELECT h.unique_id FROM {_HASHES} h ANTI JOIN linkage_untouched u USING (unique_id)"
        ).to_arrow_table()
        # Only the pairs that link (the clustering drops the rest), both of whose records are
        # clustered again: the other side of a linking pair never is untouched (above).
        touching = con.sql(
            "SELECT p.* FROM linkage_all_pairs p "
            "ANTI JOIN linkage_untouched u ON u.unique_id = p.unique_id_l "
            "ANTI JOIN linkage_untouched v ON v.unique_id = p.unique_id_r "
            f"WHERE p.match_probability >= {threshold!r}"
        ).to_arrow_table()
    finally:
        con.unregister("linkage_all_pairs")
    untouched = con.sql("SELECT unique_id, cluster_id FROM linkage_untouched").to_arrow_table()
    con.execute("DROP TABLE linkage_untouched")
    con.execute("DROP TABLE linkage_touched")
    if not again.num_rows:
        return untouched, untouched.schema.empty_table()
    clustered = cluster(again, touching, threshold).cast(untouched.schema)
    return pa.concat_tables([untouched, clustered]), clustered


def cluster(nodes: pa.Table, pairs: pa.Table, threshold: float) -> pa.Table:
    """Connected components of ``pairs`` at or above ``threshold`` over every node (Splink's
    clustering, as a full prediction clusters): ``unique_id, cluster_id``."""
    con = duckdb.connect()
    try:
        clusters = cluster_pairwise_predictions_at_threshold(
            nodes,
            pairs,
            DuckDBAPI(connection=con),
            node_id_column_name="unique_id",
            threshold_match_probability=threshold,
        )
        return clusters.query_sql("SELECT unique_id, cluster_id FROM {this}").as_pyarrow_table()
    finally:
        con.close()


def keep_pairs(
    con: duckdb.DuckDBPyConnection,
    pairs: pa.Table,
    clusters: pa.Table,
    basis: Basis | None,
    delta: Delta | None = None,
) -> None:
    """Save this run's pairs, their ``clusters`` (unique_id, cluster_id) at the basis threshold,
    the row hashes of the records they are of and their basis, in one transaction (``basis``
    None: nothing can be reused from this run, so no hashes or clusters are kept).

    With the ``delta`` of an incremental run on the same basis, only what moved is written: the
    kept rows of changed and vanished records are deleted and this run's inserted, which leaves
    the tables a full rewrite would (the other kept rows are this run's: :func:`find_changes`,
    :func:`cluster_touched`) at the cost of what arrived."""
    con.register("scored_pairs", pairs)
    con.register("scored_clusters", clusters)
    con.execute("BEGIN TRANSACTION")
    try:
        if basis is not None and delta is not None:
            _keep_delta(con, delta)
        else:
            _keep_all(con, basis)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("scored_pairs")
        con.unregister("scored_clusters")


def _keep_all(con: duckdb.DuckDBPyConnection, basis: Basis | None) -> None:
    con.execute(f"CREATE OR REPLACE TABLE {KEPT_PAIRS} AS SELECT * FROM scored_pairs")
    con.execute(
        f"CREATE OR REPLACE TABLE {BASIS} (model VARCHAR, threshold DOUBLE, placeholders VARCHAR)"
    )
    if basis is not None:
        con.execute(f"CREATE OR REPLACE TABLE {SCORED_RECORDS} AS SELECT * FROM {_HASHES}")
        con.execute(
            f"CREATE OR REPLACE TABLE {CLUSTERS} AS SELECT unique_id, cluster_id FROM scored_clusters"
        )
        con.execute(
            f"INSERT INTO {BASIS} VALUES (?, ?, ?)",
            [basis.model, basis.threshold, basis.placeholders],
        )
    else:
        con.execute(f"DROP TABLE IF EXISTS {CLUSTERS}")


def _keep_delta(con: duckdb.DuckDBPyConnection, delta: Delta) -> None:
    # Gone from the kept tables: every row of a changed or vanished record, exactly what
    # find_changes left out of the kept pairs this run reused. Nothing else can be stale: every
    # record a kept row names is one the last run hashed (SCORED_RECORDS), as each run keeps its
    # pairs, clusters and hashes together, so a record missing from this run's hashes is vanished.
    # A month with nothing new or gone deletes nothing and reads no kept table (a NOT IN against
    # every row hash, 1.1M at 1M people, was a scan of every kept pair that found nothing).
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE linkage_gone AS
        SELECT unique_id FROM {CHANGED} UNION ALL SELECT unique_id FROM {_VANISHED}""")
    gone = "(SELECT unique_id FROM linkage_gone)"
    anything_gone = con.execute("SELECT count(*) FROM linkage_gone").fetchall()[0][0] > 0
    if anything_gone:
        con.execute(
            f"DELETE FROM {KEPT_PAIRS} WHERE unique_id_l IN {gone} OR unique_id_r IN {gone}"
        )
    if delta.new_pairs is not None and delta.new_pairs.num_rows:
        con.register("new_pairs", delta.new_pairs)
        try:
            con.execute(
                f"INSERT INTO {KEPT_PAIRS} SELECT unique_id_l, unique_id_r, match_probability "
                "FROM new_pairs"
            )
        finally:
            con.unregister("new_pairs")
    if delta.clustered is None:
        con.execute(
            f"CREATE OR REPLACE TABLE {CLUSTERS} AS SELECT unique_id, cluster_id FROM scored_clusters"
        )
    elif delta.clustered.num_rows or anything_gone:
        con.register("clustered_again", delta.clustered)
        try:
            con.execute(
                f"DELETE FROM {CLUSTERS} WHERE unique_id IN (SELECT unique_id FROM clustered_again) "
                f"OR unique_id IN (SELECT unique_id FROM {_VANISHED})"
            )
            con.execute(f"INSERT INTO {CLUSTERS} SELECT unique_id, cluster_id FROM clustered_again")
        finally:
            con.unregister("clustered_again")
    if anything_gone:
        con.execute(f"DELETE FROM {SCORED_RECORDS} WHERE unique_id IN {gone}")
        con.execute(
            f"INSERT INTO {SCORED_RECORDS} SELECT h.* FROM {_HASHES} h SEMI JOIN {CHANGED} USING (unique_id)"
        )
    con.execute("DROP TABLE linkage_gone")
