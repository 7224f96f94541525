"""Linkage of person records across partners into ``person_key``s (Splink on DuckDB, or on Spark)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb

from pipelines.core.settings import Settings
from pipelines.core.stages import stage
from pipelines.governance.audit import AuditLog
from pipelines.linkage.accepted_changes import AcceptedChange
from pipelines.linkage.incremental import (
    Basis,
    find_changes,
    full_relink_reason,
    hash_person_records,
    keep_pairs,
    predict_changed,
)
from pipelines.linkage.model import (
    EM_FEW_PAIRS,
    KEEP_PAIRS_FROM,
    TrainedModel,
    predict_clusters,
    train,
)
from pipelines.linkage.person_keys import (
    STAGED_KEYS,
    KeyChanges,
    promote_person_keys,
    stage_person_keys,
)
from pipelines.linkage.person_records import NothingToLink
from pipelines.linkage.placeholders import find_placeholders
from pipelines.linkage.qa import (
    CheckOutcome,
    LinkageQA,
    check_linkage,
    link_rate_comparisons,
    linkage_qa,
    previous_link_rate,
    record_linkage_run,
    write_qa_report,
)
from pipelines.linkage.spark import spark_session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkageResult:
    identity_records: int
    persons: int
    scored_pairs: int
    links: int
    model_trained_at: str
    model_retrained: bool
    backend: str  # where pairs were scored and clustered: "duckdb" or "spark"
    threshold: float  # the match probability pairs were linked at
    threshold_method: str  # calibrated, saved with the model, or configured
    key_changes: KeyChanges
    qa: LinkageQA
    check: CheckOutcome
    keys_saved: bool  # False: the check failed, so the saved keys are the last passing run's
    # None: only the pairs touching changed identity records were scored; else why all were.
    full_relink_reason: str | None = None
    changed_identity_records: int | None = None  # incremental runs: new or changed since the last
    # Incremental runs: identity records of the clusters the month touched, clustered again (the
    # others kept their clusters); None: every record was clustered.
    reclustered_identity_records: int | None = None
    # Records whose hub.record_person row was written again; None: the table was rebuilt whole (or
    # the keys were not saved).
    record_person_rewritten: int | None = None


def threshold_in_use(settings: Settings) -> float:
    """The match probability persons are cut at: PLACELINK_LINKAGE_THRESHOLD if set, else the
    saved model's calibrated threshold (the one the last run used), else the default 0.9."""
    if settings.linkage_threshold is not None:
        return settings.linkage_threshold
    model = TrainedModel.load(settings.models)
    return model.threshold if model is not None and model.threshold is not None else 0.9


@stage("linkage: person keys and QA")
def link_person_records(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    retrain: bool = False,
    accepted: list[AcceptedChange] | None = None,
    full_relink: bool = False,
) -> LinkageResult:
    """Link ``hub.person_records`` and, if the linkage check passes, write ``hub.person_keys`` and
    ``hub.record_person``.

    The saved model is reused unless ``retrain`` is set or none exists yet. Training runs on
    DuckDB; scoring and clustering on ``settings.linkage_backend`` with the same saved model.
    Person keys are carried forward from the previous run (see :mod:`pipelines.linkage.person_keys`)
    into a staging table; the check (:func:`check_linkage`, with the ``accepted`` changes) runs on
    them, and only a run that passes makes them the saved keys, in one transaction. A run that
    fails leaves every saved key, the register of issued keys and the key history as they were.

    Unless ``full_relink`` is set (or the model, threshold or placeholder values changed, and
    the other reasons of :func:`pipelines.linkage.incremental.full_relink_reason`), only the
    pairs touching an identity record new or changed since the last run are scored; the kept
    pairs between the others are reused (:mod:`pipelines.linkage.incremental`).
    """
    model = None if retrain else TrainedModel.load(settings.models)
    # Training samples records (u and EM), so it reads them in one order, the identity ids'. Scoring,
    # clustering and placeholder search give the same pairs and clusters in any order (a pair is
    # named by its two ids, a cluster by its smallest), so a run with a saved model skips the
    # sort: at 1M people it was most of the read (docs/benchmarks.md).
    records = con.sql(
        "SELECT * FROM hub.person_records" + (" ORDER BY unique_id" if model is None else "")
    ).to_arrow_table()
    if records.num_rows < 2:
        # Splink cannot train or score fewer than two records (it divides by the pair count).
        raise NothingToLink(
            f"only {records.num_rows} person record(s) have landed, so there is nothing to link: every "
            "delivery may have been held (see `placelink hub quarantine list` and hub/deliveries)"
        )
    retrained = model is None
    if model is None:
        model = train(
            records,
            settings.duckdb_temp,
            memory_limit=settings.duckdb_memory_limit,
            trained_at=settings.now(),
        )
        if not model.training_rules:
            # Every comparison untrained weighs nothing: every pair scores the prior, and the run
            # would "succeed" linking no one. Not saved, so the next run trains again.
            raise NothingToLink(
                f"the linkage model could not be trained: no training rule finds {EM_FEW_PAIRS} "
                f"pairs among the {records.num_rows:,} identity records (too few share a full "
                "name, a date of birth or a postcode), so no comparison could learn what a "
                "match looks like and no one would be linked. Nothing was linked and no model was "
                "saved: the next run trains again. Fix: run again when more records have landed "
                "(a few hundred people per partner is usually enough); the training warnings in "
                "the run's log say which rules had how many pairs"
            )
    # PLACELINK_LINKAGE_THRESHOLD if set; else the model's calibrated threshold, calibrated on
    # this run's scores when the model is new (pipelines/linkage/threshold.py).
    threshold = (
        settings.linkage_threshold if settings.linkage_threshold is not None else model.threshold
    )
    placeholders = find_placeholders(records) if model.masks_placeholders else []
    basis = None if threshold is None else Basis.of(model, threshold, placeholders)
    hash_person_records(con)
    reason = full_relink_reason(
        con,
        basis,
        retrained=retrained,
        requested=full_relink,
        backend=settings.linkage_backend,
    )
    changed = delta = None
    if reason is None:
        moved = find_changes(con)
        changed = moved.changed
        log.info(
            "linkage: incremental, %d identity records new or changed, %d gone, %d kept pairs reused",
            moved.changed,
            moved.vanished,
            moved.kept_pairs,
        )
        prediction, delta = predict_changed(
            con,
            records,
            model,
            threshold,
            placeholders,
            settings.duckdb_temp,
            memory_limit=settings.duckdb_memory_limit,
        )
        log.info(
            "linkage: clustered again %s identity records of touched clusters",
            "all" if delta.reclustered is None else f"{delta.reclustered:,}",
        )
    elif settings.linkage_backend == "spark":
        with spark_session(settings) as spark:
            prediction = predict_clusters(
                records,
                model,
                settings.linkage_threshold,
                spark=spark,
                keep_pairs=True,
                placeholders=placeholders,
            )
    else:
        prediction = predict_clusters(
            records,
            model,
            settings.linkage_threshold,
            settings.duckdb_temp,
            memory_limit=settings.duckdb_memory_limit,
            keep_pairs=True,
            placeholders=placeholders,
        )
    if retrained:
        if settings.linkage_threshold is None:
            model = model.with_threshold(prediction.threshold, prediction.threshold_method)
        model.save(settings.models)
    # The scored pairs (match probability 0.5 and up) stay in the warehouse, so the effects can be
    # re-estimated at a looser or stricter threshold by re-clustering them (pipelines/outcomes/effects/sensitivity.py),
    # and the next run reuses those between unchanged records; with them, in one transaction,
    # the row hashes of the records they are of and what they were scored with.
    keep_pairs(
        con,
        prediction.pairs,
        prediction.clusters,
        None
        if prediction.threshold < KEEP_PAIRS_FROM
        else Basis.of(model, prediction.threshold, prediction.placeholders),
        delta,
    )
    # Keys are carried forward from the previous run by overlap (person_keys.py), so a
    # person keeps their key from month to month.
    changes = stage_person_keys(
        con,
        # Arrow as Splink gave it, scanned in place by the warehouse (no copy through Polars)
        prediction.clusters.rename_columns(
            ["identity_id" if c == "unique_id" else c for c in prediction.clusters.column_names]
        ),
        now=settings.now(),
    )
    persons = changes.persons
    qa = linkage_qa(con, STAGED_KEYS)
    check = check_linkage(
        qa,
        previous_link_rate(con),
        settings.linkage_max_cluster_size,
        settings.linkage_max_link_rate_change,
        accepted or [],
        # like for like, per dataset, against the saved keys (the last passing run's)
        link_rate_comparisons(con, STAGED_KEYS),
    )
    rewritten = None
    if check.passed:
        # hub.record_person follows the keys, in their transaction: only the records whose row
        # can have moved are written again (pipelines/linkage/record_person.py).
        rewritten = promote_person_keys(con)
        log.info(
            "linkage: hub.record_person %s",
            "rebuilt whole" if rewritten is None else f"written again for {rewritten:,} records",
        )
    record_linkage_run(
        con,
        qa,
        changes,
        check.passed,
        now=settings.now(),
        outcome=check,
        scoring=f"full relink: {reason}" if reason else "incremental",
    )
    trained_at = model.trained_at.isoformat(timespec="seconds")
    write_qa_report(
        settings.reports,
        qa,
        prediction.match_weights_chart,
        changes,
        check,
        prediction.threshold,
        trained_at,
        prediction.placeholders,
        {
            "rules": model.training_rules,
            "warnings": model.warnings,
            "threshold_method": f"{prediction.threshold} ({prediction.threshold_method})",
            "scoring": "full relink: " + reason
            if reason
            else f"incremental: {changed:,} identity records new or changed since the last run",
        },
    )
    return LinkageResult(
        records.num_rows,
        persons,
        prediction.scored_pairs,
        prediction.links_above_threshold,
        trained_at,
        retrained,
        prediction.backend,
        prediction.threshold,
        prediction.threshold_method,
        changes,
        qa,
        check,
        check.passed,
        reason,
        changed,
        None if delta is None else delta.reclustered,
        rewritten,
    )


def audit_linkage_run(audit: AuditLog, result: LinkageResult, contracts: list[str]) -> dict:
    """The ``linkage_run`` audit event: which contracts' records were linked, with what model,
    what moved in the person keys, and whether the check let them be saved (counts only)."""
    return audit.append(
        "linkage_run",
        contracts=contracts,
        identity_records=result.identity_records,
        persons=result.persons,
        links=result.links,
        model_trained_at=result.model_trained_at,
        retrained=result.model_retrained,
        backend=result.backend,
        keys_new=result.key_changes.new,
        keys_merged=result.key_changes.merges,
        keys_split=result.key_changes.splits,
        identity_records_with_changed_key=result.key_changes.identity_records_with_changed_key,
        qa_check_passed=result.check.passed,
        keys_saved=result.keys_saved,
        link_rate=round(result.qa.link_rate, 4),
        previous_link_rate=result.check.metadata.get("previous_link_rate"),
        accepted_changes=list(result.check.accepted),
        full_relink_reason=result.full_relink_reason,
    )
