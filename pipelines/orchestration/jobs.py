"""The jobs: everything from the inbox to the published file, and the nightly retention."""

import dagster as dg

# Every job writes the warehouse: the instance's run queue lets one run with this tag start at a
# time (pipelines/orchestration/run.py, deploy/dagster.yaml), and each run holds the hub's run lock as well.
WAREHOUSE_TAG = "placelink/warehouse"
WRITER_TAGS = {WAREHOUSE_TAG: "writer"}

# The checks named too: those on the landing tables (which ingest writes, so Dagster does not run
# them as part of an asset) run only when selected.
refresh_job = dg.define_asset_job(
    "placelink_refresh",
    selection=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
    tags=WRITER_TAGS,
    description="Receive inbox extracts, link persons, run the SQL models and publish shared outcomes.",
)

# Contract status and retention, then everything that depends on linked records, so deleted
# rows (and flows whose agreement lapsed) also leave the models and the published file.
retention_job = dg.define_asset_job(
    "placelink_retention",
    selection=(
        dg.AssetSelection.assets(dg.AssetKey(["hub", "contract_status"])).downstream()
        | dg.AssetSelection.key_prefixes("landing").downstream(include_self=False)
        | dg.AssetSelection.assets(dg.AssetKey(["hub", "quarantine_purge"]))
    ),
    tags=WRITER_TAGS,
    description="Delete extracts past their data-sharing agreement's retention (audited), then "
    "rebuild linkage, models, the published file and the IG register without them; "
    "delete held files older than PLACELINK_QUARANTINE_KEEP_DAYS from quarantine (audited).",
)
