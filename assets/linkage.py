"""Stage 2: person records from every landed dataset, linked by Splink into person_keys."""

import dagster as dg

from assets.governance import CONTRACT_STATUS, RETENTION
from assets.ingest import landing_specs
from pipelines.linkage import link_person_records
from pipelines.linkage.person_records import build_person_records, landed_datasets
from pipelines.resources import PlacelinkResource


# Contract status and retention run first, so a suspended flow or an expired extract is
# already out when records are gathered for linkage.
GOVERNANCE_DEPS = [CONTRACT_STATUS, RETENTION]


@dg.multi_asset(
    specs=[dg.AssetSpec(["hub", "record_identity"], group_name="linkage",
                        deps=[s.key for s in landing_specs()] + GOVERNANCE_DEPS,
                        description="Every landed record with the identity record it belongs to."),
           dg.AssetSpec(["hub", "person_records"], group_name="linkage",
                        deps=[s.key for s in landing_specs()] + GOVERNANCE_DEPS,
                        description="One row per distinct identity per partner: Splink's input.")],
    can_subset=False,
)
def person_records(placelink: PlacelinkResource):
    contracts, _ = placelink.contracts()
    with placelink.warehouse() as con:
        counts = build_person_records(con, landed_datasets(con, contracts))
    yield dg.MaterializeResult(asset_key=["hub", "record_identity"], metadata={"records": counts["records"]})
    yield dg.MaterializeResult(asset_key=["hub", "person_records"],
                               metadata={"identity_records": counts["identity_records"]})


class LinkageConfig(dg.Config):
    retrain: bool = False


@dg.multi_asset(
    specs=[dg.AssetSpec(["hub", "person_keys"], group_name="linkage", deps=[["hub", "person_records"]],
                        description="The person_key of every identity record (Splink clusters)."),
           dg.AssetSpec(["hub", "record_person"], group_name="linkage",
                        deps=[["hub", "person_records"], ["hub", "record_identity"]],
                        description="The person_key of every landed record.")],
    can_subset=False,
)
def linked_persons(context: dg.AssetExecutionContext, config: LinkageConfig, placelink: PlacelinkResource):
    """Link person records across partners; the saved model is reused unless retrain is set."""
    settings = placelink.settings()
    with placelink.warehouse() as con:
        result = link_person_records(con, settings, retrain=config.retrain)
    placelink.audit().append("linkage_run", identity_records=result.identity_records,
                             persons=result.persons, links=result.links,
                             model_trained_at=result.model_trained_at, retrained=result.model_retrained)
    context.log.info(f"linked {result.identity_records} identity records into {result.persons} persons")
    yield dg.MaterializeResult(asset_key=["hub", "person_keys"], metadata={
        "identity_records": result.identity_records, "persons": result.persons,
        "scored_pairs": result.scored_pairs, "links_above_threshold": result.links,
        "model_trained_at": result.model_trained_at, "model_retrained": result.model_retrained,
        "threshold": settings.linkage_threshold,
    })
    yield dg.MaterializeResult(asset_key=["hub", "record_person"], metadata={"persons": result.persons})
