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

The kept pairs, the row hashes and what they were scored with (:class:`Basis`: the model, the
threshold and the placeholder values masked) are written in one transaction, so they always
describe the same scoring: a run killed before it leaves the last run's three, which still agree.
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
from pipelines.core.warehouse import table_exists
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
CHANGED = "linkage_changed"  # the records' column (and the temp table) of changed identity records
_HASHES = "linkage_row_hashes"  # temp: this run's row hashes


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
    if not all(
        table_exists(con, "hub", t.split(".")[1]) for t in (KEPT_PAIRS, SCORED_RECORDS, BASIS)
    ):
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
    vanished = con.execute(
        f"SELECT count(*) FROM {SCORED_RECORDS} s ANTI JOIN {_HASHES} h USING (unique_id)"
    ).fetchall()[0][0]
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
) -> Prediction:
    """Score the pairs touching the records in ``linkage_changed`` (:func:`find_changes`), add
    the kept pairs, and cluster every record at ``threshold``: the clusters a full prediction
    gives (term frequencies aside)."""
    if model.masks_placeholders:
        records = mask_placeholders(records, placeholders)
    changed = con.sql(f"SELECT unique_id FROM {CHANGED}").to_arrow_table().column(0)
    flags = pc.is_in(records.column("unique_id"), value_set=changed)
    records = records.append_column(CHANGED, flags)
    scoring = dataclasses.replace(model, splink_settings=changed_only(model.splink_settings))
    with _scoring_linker(records, scoring, temp_dir, None, memory_limit) as linker:
        with stage("linkage: predict"):
            if len(changed):
                predictions = linker.inference.predict(threshold_match_probability=KEEP_PAIRS_FROM)
                new = predictions.query_sql(
                    "SELECT unique_id_l, unique_id_r, match_probability FROM {this} "
                    f"WHERE match_probability >= {KEEP_PAIRS_FROM}"
                ).as_pyarrow_table()
            else:
                new = None
    kept = con.sql(
        "SELECT unique_id_l, unique_id_r, match_probability FROM linkage_kept_pairs"
    ).to_arrow_table()
    pairs = kept if new is None else pa.concat_tables([kept, new.cast(kept.schema)])
    with stage("linkage: cluster"):
        clusters = cluster(records.select(["unique_id"]), pairs, threshold)
    links = pc.sum(pc.greater_equal(pairs.column("match_probability"), threshold)).as_py()
    return Prediction(
        clusters,
        pairs.num_rows,
        int(links or 0),
        match_weights_chart(model, records),
        "duckdb",
        pairs,
        threshold,
        model.threshold_method if model.threshold == threshold else "as configured",
        placeholders,
    )


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


def keep_pairs(con: duckdb.DuckDBPyConnection, pairs: pa.Table, basis: Basis | None) -> None:
    """Save this run's pairs, the row hashes of the records they are of and their basis, in one
    transaction (``basis`` None: nothing can be reused from this run, so no hashes are kept)."""
    con.register("scored_pairs", pairs)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE OR REPLACE TABLE {KEPT_PAIRS} AS SELECT * FROM scored_pairs")
        con.execute(
            f"CREATE OR REPLACE TABLE {BASIS} (model VARCHAR, threshold DOUBLE, placeholders VARCHAR)"
        )
        if basis is not None:
            con.execute(f"CREATE OR REPLACE TABLE {SCORED_RECORDS} AS SELECT * FROM {_HASHES}")
            con.execute(
                f"INSERT INTO {BASIS} VALUES (?, ?, ?)",
                [basis.model, basis.threshold, basis.placeholders],
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("scored_pairs")
