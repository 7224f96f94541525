"""The Dagster code location: gathers the assets, resources, job, sensor and schedule."""
from __future__ import annotations

import dagster as dg

from assets.ingest import area_reference, landing_specs, received_extracts
from assets.linkage import linked_persons, person_records, plausible_linkage
from assets.publish import shared_outcomes
from assets.sql_models import HUB_SOURCES, sql_model_assets
from pipelines.jobs import refresh_job
from pipelines.resources import PlacelinkResource
from pipelines.schedules import monthly_refresh
from pipelines.sensors import inbox_sensor

_sources = HUB_SOURCES | {".".join(spec.key.path) for spec in landing_specs()}

defs = dg.Definitions(
    assets=[received_extracts, area_reference, person_records, linked_persons,
            *sql_model_assets(_sources), shared_outcomes],
    asset_checks=[plausible_linkage],
    jobs=[refresh_job],
    sensors=[inbox_sensor],
    schedules=[monthly_refresh],
    resources={"placelink": PlacelinkResource()},
)
