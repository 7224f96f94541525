"""Governance: contract status (audited), retention deletions, and the IG register page."""

import dagster as dg

from assets.resources import PlacelinkResource
from pipelines.core.clock import parse_as_of
from pipelines.governance.flows import flow_statuses, record_flow_statuses
from pipelines.governance.register import write_register
from pipelines.governance.retention import apply_retention

CONTRACT_STATUS = dg.AssetKey(["hub", "contract_status"])
RETENTION = dg.AssetKey(["hub", "retention_deletions"])


# Chained after ingest (and retention after status) so these never hold the warehouse
# at the same time as another step: DuckDB allows one writer.
@dg.asset(key=CONTRACT_STATUS, group_name="governance", deps=[dg.AssetKey(["hub", "deliveries"])])
def contract_status(
    context: dg.AssetExecutionContext, placelink: PlacelinkResource
) -> dg.MaterializeResult:
    """The status of every data-sharing agreement this run; changes and excluded flows are audited."""
    contracts, problems = placelink.contracts()
    now = placelink.settings().now()
    statuses = flow_statuses(contracts, problems, now.date())
    with placelink.warehouse() as con:
        excluded = record_flow_statuses(con, statuses, contracts, placelink.audit(context), now)
    for flow in excluded:
        context.log.warning(
            f"contract {flow['contract_id']} is {flow['status']}: its data is left out "
            f"of linkage and publication ({flow['reason']})"
        )
    return dg.MaterializeResult(
        metadata={
            "contracts": len(statuses),
            "in_use": sum(s.in_use for s in statuses.values()),
            "excluded": dg.MetadataValue.json(excluded),
        }
    )


class RetentionConfig(dg.Config):
    # ISO date-time to use as "now" (tests, or re-running a missed day); empty = the hub's clock.
    as_of: str = ""


@dg.asset(key=RETENTION, group_name="governance", deps=[CONTRACT_STATUS])
def retention_deletions(
    context: dg.AssetExecutionContext, config: RetentionConfig, placelink: PlacelinkResource
) -> dg.MaterializeResult:
    """Extracts past their agreement's retention: vaulted file, landed and derived rows deleted, audited."""
    settings = placelink.settings()
    now = parse_as_of(config.as_of) if config.as_of else settings.now()
    contracts, _ = placelink.contracts()
    with placelink.warehouse() as con:
        result = apply_retention(settings, con, contracts, placelink.audit(context), now)
    for deletion in result.deleted:
        context.log.info(
            f"retention: deleted extract {deletion.extract_id} ({deletion.contract_id}, "
            f"{deletion.dataset}, kept until {deletion.retain_until}): "
            f"{deletion.landing_rows} landed rows"
        )
    if result.kept_unknown_contract:
        context.log.warning(
            f"retention: {len(result.kept_unknown_contract)} extract(s) kept because "
            "their contract is unknown or invalid"
        )
    return dg.MaterializeResult(
        metadata={
            "extracts_deleted": len(result.deleted),
            "landing_rows_deleted": sum(d.landing_rows for d in result.deleted),
            "kept_unknown_contract": len(result.kept_unknown_contract),
        }
    )


@dg.asset(
    key=["reports", "ig_register"],
    group_name="governance",
    deps=[
        CONTRACT_STATUS,
        RETENTION,
        dg.AssetKey(["hub", "deliveries"]),
        dg.AssetKey(["published", "shared_outcomes"]),
    ],
)
def ig_register(placelink: PlacelinkResource) -> dg.MaterializeResult:
    """reports/ig_register.html: one row per agreement, what flowed under it, what relies on it."""
    settings = placelink.settings()
    contracts, problems = placelink.contracts()
    page = write_register(settings, contracts, problems)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(page)),
            "agreements": len(contracts) + len(problems),
        }
    )
