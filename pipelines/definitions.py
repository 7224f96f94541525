"""The Dagster code location: gathers the assets, resources, job, sensor and schedule."""
from __future__ import annotations

import dagster as dg

from assets.cadence import cadence_checks
from assets.changes import new_since_publication
from assets.effects import effect_assets
from assets.governance import contract_status, ig_register, retention_deletions
from assets.housekeeping import quarantine_purge
from assets.ingest import area_reference, landing_specs, received_extracts
from assets.linkage import linked_persons, person_records, plausible_linkage
from assets.publish import outcomes_report, shared_outcomes
from assets.quality import quality_checks, quality_report
from assets.sql_models import model_plan, sql_model_assets
from pipelines.alerting import alert_sensors
from pipelines.jobs import refresh_job, retention_job
from pipelines.resources import PlacelinkResource
from pipelines.schedules import daily_retention, monthly_refresh
from pipelines.settings import Settings
from pipelines.sensors import inbox_sensor


def placelink_definitions(executor: dg.ExecutorDefinition = dg.in_process_executor) -> dg.Definitions:
    """Everything in the code location, run by ``executor``.

    Every asset opens warehouse.duckdb, and DuckDB allows one writer per file: steps that
    ran side by side in separate processes (Dagster's default for UI-launched runs) would
    fail on its lock. So steps run in one process by default; a deployment that wants each
    step in its own process or pod passes an executor limited to one step at a time
    (README: Scaling out).
    """
    settings = Settings.from_env()
    plan = model_plan(settings)  # which models (and so which effect assets) this hub's contracts allow
    return dg.Definitions(
        assets=[received_extracts, *landing_specs(), new_since_publication, area_reference, person_records, linked_persons,
                *sql_model_assets(settings, plan), *effect_assets(plan), shared_outcomes,
                outcomes_report, quality_report, contract_status, retention_deletions, ig_register, quarantine_purge],
        asset_checks=[*quality_checks, plausible_linkage, *cadence_checks],
        jobs=[refresh_job, retention_job],
        sensors=[inbox_sensor, *alert_sensors],
        schedules=[monthly_refresh, daily_retention],
        resources={"placelink": PlacelinkResource()},
        executor=executor,
    )


defs = placelink_definitions()
