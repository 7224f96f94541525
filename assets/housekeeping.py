"""Housekeeping: held files older than PLACELINK_QUARANTINE_KEEP_DAYS leave quarantine, audited
(pipelines/hub/housekeeping.py). Files and the audit log only; the warehouse is not opened."""

import dagster as dg

from assets.resources import PlacelinkResource
from pipelines.hub.housekeeping import purge_quarantine

QUARANTINE_PURGE = dg.AssetKey(["hub", "quarantine_purge"])


# After ingest, which may have just held a file, so the two never move files at the same time.
@dg.asset(key=QUARANTINE_PURGE, group_name="governance", deps=[dg.AssetKey(["hub", "deliveries"])])
def quarantine_purge(
    context: dg.AssetExecutionContext, placelink: PlacelinkResource
) -> dg.MaterializeResult:
    """Held files past the configured time in quarantine: deleted with their reasons, one audit event each."""
    settings = placelink.settings()
    purged = purge_quarantine(
        settings.quarantine, settings.quarantine_keep_days, placelink.audit(), settings.now()
    )
    for item in purged:
        context.log.info(
            f"quarantine: deleted {item.held_as} (held by check '{item.check}' on "
            f"{item.received_at[:10]}, kept {settings.quarantine_keep_days} days)"
        )
    return dg.MaterializeResult(
        metadata={"files_deleted": len(purged), "keep_days": settings.quarantine_keep_days}
    )
