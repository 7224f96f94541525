"""The Dagster code location: gathers the assets, resources, job, sensor and schedule."""
from __future__ import annotations

import dagster as dg

from assets.governance import contract_status, held_landing_tables, ig_register, retention_deletions
from assets.ingest import area_reference, landing_specs, received_extracts
from assets.linkage import linked_persons, person_records, plausible_linkage
from assets.publish import outcomes_report, shared_outcomes
from assets.quality import quality_checks, quality_report
from assets.sql_models import HUB_SOURCES, sql_model_assets
from pipelines.jobs import refresh_job, retention_job
from pipelines.resources import PlacelinkResource
from pipelines.schedules import daily_retention, monthly_refresh
from pipelines.sensors import inbox_sensor

_sources = HUB_SOURCES | {".".join(spec.key.path) for spec in landing_specs()} | held_landing_tables()

defs = dg.Definitions(
    assets=[received_extracts, area_reference, person_records, linked_persons,
            *sql_model_assets(_sources), shared_outcomes, outcomes_report, quality_report,
            contract_status, retention_deletions, ig_register],
    asset_checks=[*quality_checks, plausible_linkage],
    jobs=[refresh_job, retention_job],
    sensors=[inbox_sensor],
    schedules=[monthly_refresh, daily_retention],
    resources={"placelink": PlacelinkResource()},
    # DuckDB allows one writer per file: steps that run side by side in separate processes
    # (Dagster's default for UI-launched runs) would fail on warehouse.duckdb's lock.
    executor=dg.in_process_executor,
)
