"""Stage 2: person records from every landed dataset, linked by Splink into person_keys."""

import dagster as dg

from assets.changes import NEW_INPUTS, forced_by
from assets.governance import CONTRACT_STATUS, RETENTION
from assets.resources import PlacelinkResource
from pipelines.governance.flows import linked_contracts
from pipelines.linkage import audit_linkage_run, link_person_records
from pipelines.linkage.accepted_changes import pending_changes
from pipelines.linkage.person_records import NothingToLink, build_person_records, landed_datasets
from pipelines.linkage.qa import REPORT_FILE, latest_run

# Contract status and retention run first, so a suspended flow or an expired extract is
# already out when records are gathered for linkage; and nothing is linked when nothing is new
# since the last publication (assets/changes.py: that step's output is then left out).
GOVERNANCE_DEPS = [CONTRACT_STATUS, RETENTION, NEW_INPUTS]


def person_records_asset(landing: tuple[dg.AssetSpec, ...]) -> dg.AssetsDefinition:
    """Person records, read from the ``landing`` assets (:func:`assets.ingest.landing_specs`)."""
    deps = [s.key for s in landing] + GOVERNANCE_DEPS

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                ["hub", "record_identity"],
                group_name="linkage",
                deps=deps,
                description="Every landed record with the identity record it belongs to.",
            ),
            dg.AssetSpec(
                ["hub", "person_records"],
                group_name="linkage",
                deps=deps,
                description="One row per distinct identity per partner: Splink's input.",
            ),
        ],
        can_subset=False,
    )
    def person_records(context: dg.AssetExecutionContext, placelink: PlacelinkResource):
        contracts, _ = placelink.contracts()
        today = placelink.settings().today()
        # Only the changed landing partitions are rebuilt, but all of them on a retrain or a
        # backfill (which re-lands a month's extracts under their own extract ids).
        full = forced_by(context.run) is not None
        with placelink.warehouse() as con:
            try:
                counts = build_person_records(
                    con, landed_datasets(con, contracts, today), full=full
                )
            except NothingToLink as exc:
                raise dg.Failure(description=str(exc)) from None
        yield dg.MaterializeResult(
            asset_key=["hub", "record_identity"], metadata={"records": counts["records"]}
        )
        yield dg.MaterializeResult(
            asset_key=["hub", "person_records"],
            metadata={"identity_records": counts["identity_records"]},
        )

    return person_records


class LinkageConfig(dg.Config):
    retrain: bool = False
    # Score every pair, not only those touching identity records that changed since the last run
    # (pipelines/linkage/incremental.py); retraining always does.
    full_relink: bool = False


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["hub", "person_keys"],
            group_name="linkage",
            deps=[["hub", "person_records"]],
            description="The person_key of every identity record (Splink clusters).",
        ),
        dg.AssetSpec(
            ["hub", "record_person"],
            group_name="linkage",
            deps=[["hub", "person_records"], ["hub", "record_identity"]],
            description="The person_key of every landed record.",
        ),
    ],
    can_subset=False,
)
def linked_persons(
    context: dg.AssetExecutionContext, config: LinkageConfig, placelink: PlacelinkResource
):
    """Link person records across partners; the saved model is reused unless retrain is set."""
    settings = placelink.settings()
    contracts, _ = placelink.contracts()
    audit = placelink.audit(context)
    with placelink.warehouse() as con:
        try:
            result = link_person_records(
                con,
                settings,
                retrain=config.retrain,
                accepted=pending_changes(con, audit),
                full_relink=config.full_relink,
            )
        except NothingToLink as exc:
            raise dg.Failure(description=str(exc)) from None
        linked = linked_contracts(con, contracts)
    if not result.keys_saved:
        context.log.error(
            "linkage check failed: no person key was saved (the last passing run's keys stay); "
            + " ".join(result.check.problems)
        )
    audit_linkage_run(audit, result, linked)
    context.log.info(
        f"linked {result.identity_records} identity records into {result.persons} persons "
        f"(scored on {result.backend})"
    )
    changes = result.key_changes
    yield dg.MaterializeResult(
        asset_key=["hub", "person_keys"],
        metadata={
            "link_rate": round(result.qa.link_rate, 4),
            "max_cluster_size": result.qa.max_cluster_size,
            "keys_new": changes.new,
            "keys_merged": changes.merges,
            "keys_split": changes.splits,
            "keys_retired": changes.retired,
            "identity_records_with_changed_key": changes.identity_records_with_changed_key,
            "qa_report": dg.MetadataValue.path(str(settings.reports / REPORT_FILE)),
            "identity_records": result.identity_records,
            "persons": result.persons,
            "scored_pairs": result.scored_pairs,
            "links_above_threshold": result.links,
            "model_trained_at": result.model_trained_at,
            "model_retrained": result.model_retrained,
            "threshold": result.threshold,
            "threshold_method": result.threshold_method,
            "linkage_backend": result.backend,
            "scoring": f"full relink: {result.full_relink_reason}"
            if result.full_relink_reason
            else "incremental",
            "changed_identity_records": result.changed_identity_records,
            "keys_saved": result.keys_saved,
        },
    )
    yield dg.MaterializeResult(
        asset_key=["hub", "record_person"], metadata={"persons": result.persons}
    )


_CHECKED = (["hub", "person_keys"], ["hub", "record_person"])


# On both outputs of linked_persons: the SQL models read hub.record_person, and a
# blocking check only stops what is downstream of the asset it is on.
@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "plausible_linkage",
            asset=key,
            blocking=True,
            description="Fails on an implausibly large person (over-linking) or a sharp "
            "move of the link rate since the last run that passed; the "
            "models that read person keys then do not run.",
        )
        for key in _CHECKED
    ],
    can_subset=False,
)
def plausible_linkage(placelink: PlacelinkResource):
    # The check itself ran inside linked_persons, on the staged keys, before any was saved (a
    # failed check saves none); this reports what it found, as hub.linkage_runs recorded it.
    with placelink.warehouse() as con:
        outcome = latest_run(con)
    if outcome is None:
        raise dg.Failure(
            description="no linkage run is recorded in hub.linkage_runs: run linkage first"
        )
    metadata = {k: v for k, v in outcome.metadata.items() if v is not None}
    metadata["plausible_cluster_size"] = placelink.settings().linkage_max_cluster_size
    if outcome.problems:
        metadata["problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in outcome.problems))
    for key in _CHECKED:
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name="plausible_linkage",
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
        )
