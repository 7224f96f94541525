"""Nothing-new runs: after ingest, contract status and retention, a run with nothing new since the
last publication (pipelines/publish/publication_inputs.py) skips linkage, the models and publication, and
says so in its log, on this asset's page (an observation, with the reason), in `placelink run`'s
output and in the audit log.

How it skips: this asset's output may be left out. When it is, Dagster skips every step downstream
of it (person records, linkage, the models, effects, publish, the register), and the run still
succeeds.
"""

import dagster as dg

from assets.governance import CONTRACT_STATUS, RETENTION
from assets.resources import PlacelinkResource
from pipelines.hub.delivery_months import MONTHS_TAG
from pipelines.publish.publication_inputs import anything_new, audit_nothing_new

NEW_INPUTS = dg.AssetKey(["hub", "new_since_publication"])


def forced_by(run: dg.DagsterRun) -> str | None:
    """Why a run rebuilds everything whatever its inputs say: a retrain, or a backfill of months."""
    retrain = (
        (run.run_config or {})
        .get("ops", {})
        .get("linked_persons", {})
        .get("config", {})
        .get("retrain")
    )
    if retrain:
        return "the linkage model is retrained (--retrain)"
    if run.tags.get(MONTHS_TAG):
        return f"a backfill of {run.tags[MONTHS_TAG]} rebuilds what depends on it"
    return None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            NEW_INPUTS,
            group_name="governance",
            skippable=True,
            deps=[dg.AssetKey(["hub", "deliveries"]), CONTRACT_STATUS, RETENTION],
            description="What changed since the last publication. Not materialised when nothing "
            "did: linkage, the models and publication are then skipped.",
        )
    ],
)
def new_since_publication(context: dg.AssetExecutionContext, placelink: PlacelinkResource):
    settings = placelink.settings()
    contracts, problems = placelink.contracts()
    with placelink.warehouse() as con:
        verdict = anything_new(settings, con, contracts, problems, forced_by(context.run))
    last = (
        {
            "last_publication_run": verdict.last.run_id or "",
            "last_published_at": f"{verdict.last.published_at:%Y-%m-%d %H:%M:%S}",
        }
        if verdict.last
        else {}
    )
    if verdict.nothing_new:
        context.log.info(verdict.reason)
        context.log_event(
            dg.AssetObservation(
                asset_key=NEW_INPUTS, metadata={"nothing_new": verdict.reason, **last}
            )
        )
        audit_nothing_new(placelink.audit(context), verdict)
        return
    context.log.info(f"linking and publishing: {verdict.reason}")
    yield dg.MaterializeResult(asset_key=NEW_INPUTS, metadata={"why": verdict.reason, **last})


def nothing_new_reason(events) -> str | None:
    """The reason a finished run skipped linkage and publication (from its events), or None."""
    for event in events:
        if event.is_asset_observation and event.asset_key == NEW_INPUTS:
            value = event.event_specific_data.asset_observation.metadata.get("nothing_new")
            if value is not None:
                return value.value
    return None
