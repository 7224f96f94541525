"""The one job: everything from the inbox to the published file."""
import dagster as dg

refresh_job = dg.define_asset_job(
    "placelink_refresh", selection=dg.AssetSelection.all(),
    description="Receive inbox extracts, link persons, run the SQL models and publish shared outcomes.",
)
