"""The Dagster graph of one hub: :func:`placelink_definitions` gathers the assets, resource, jobs,
sensors and schedules for the settings it is given.

Given settings, nothing here reads the environment: the graph (which landing tables, models and
effect assets there are) comes from the contracts folder and models of the settings passed in, so
two hubs can be built side by side in one process. The code location Dagster loads (``dg dev``,
workspace.yaml) is :mod:`pipelines.orchestration.code_location`, which reads the environment once.
"""

from __future__ import annotations

import dagster as dg

from assets.cadence import cadence_checks
from assets.changes import new_since_publication
from assets.effects import effect_assets
from assets.governance import contract_status, ig_register, retention_deletions
from assets.housekeeping import quarantine_purge
from assets.ingest import area_reference, landing_specs, received_extracts
from assets.linkage import linked_persons, person_records_asset, plausible_linkage
from assets.publish import outcomes_report, shared_outcomes_asset
from assets.quality import quality_checks, quality_report
from assets.resources import PlacelinkResource, dagster_run_lock
from assets.sql_models import sql_model_assets
from pipelines.core.settings import Settings
from pipelines.orchestration.alerting import alert_sensors
from pipelines.orchestration.jobs import refresh_job, retention_job
from pipelines.orchestration.schedules import daily_retention, monthly_refresh
from pipelines.orchestration.sensors import inbox_sensor
from pipelines.outcomes.sql_models import model_plan


class _RunLockedExecutor(dg.Executor):
    """Runs the plan with ``inner`` while the run's own process holds the run lock of the hub of
    ``settings`` (those the definitions were built with)."""

    def __init__(self, inner: dg.Executor, settings: Settings):
        self.inner = inner
        self.settings = settings

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        with dagster_run_lock(self.settings, plan_context.run_id, plan_context.log):
            yield from self.inner.execute(plan_context, execution_plan)


def holding_the_run_lock(
    executor: dg.ExecutorDefinition, settings: Settings | None = None
) -> dg.ExecutorDefinition:
    """``executor``, with the run's orchestrating process holding the run lock of the hub of
    ``settings`` (default: the environment's, read now) from the first step to the last,
    whichever process each step runs in (pipelines/core/run_lock.py). With the in-process executor the
    resource would hold it for the run anyway; with one that starts a process per step, this
    keeps another run from taking the lock between two steps."""
    settings = settings or Settings.from_env()

    def create(init_context):
        return _RunLockedExecutor(executor.executor_creation_fn(init_context), settings)

    return dg.ExecutorDefinition(
        name=executor.name,
        config_schema=executor.config_schema,
        requirements=executor.get_requirements,
        executor_creation_fn=create,
        description=executor.description,
    )


def placelink_definitions(
    settings: Settings | None = None,
    executor: dg.ExecutorDefinition = dg.in_process_executor,
) -> dg.Definitions:
    """Everything in the code location of the hub of ``settings`` (default: the environment's,
    read now), run by ``executor``, whose runs hold the hub's run lock throughout
    (:func:`holding_the_run_lock`).

    The graph follows the agreements in ``settings.contracts_dir`` (one landing asset per
    dataset) and the models they allow (:func:`pipelines.outcomes.sql_models.model_plan`); the resource,
    sensors and the executor's lock use ``settings`` too, so nothing reads the environment
    after this returns.

    Every asset opens warehouse.duckdb, and DuckDB allows one writer per file: steps that
    ran side by side in separate processes (Dagster's default for UI-launched runs) would
    fail on its lock. So steps run in one process by default; a deployment that wants each
    step in its own process or pod passes an executor limited to one step at a time
    (README: Scaling out).
    """
    settings = settings or Settings.from_env()
    landing = landing_specs(settings)
    # which models (and so which effect assets) this hub's contracts allow
    plan = model_plan(settings)
    return dg.Definitions(
        assets=[
            received_extracts,
            *landing,
            new_since_publication,
            area_reference,
            person_records_asset(landing),
            linked_persons,
            *sql_model_assets(settings, plan, landing),
            *effect_assets(plan),
            shared_outcomes_asset(plan),
            outcomes_report,
            quality_report,
            contract_status,
            retention_deletions,
            ig_register,
            quarantine_purge,
        ],
        asset_checks=[*quality_checks(landing), plausible_linkage, *cadence_checks(landing)],
        jobs=[refresh_job, retention_job],
        sensors=[inbox_sensor, *alert_sensors],
        schedules=[monthly_refresh, daily_retention],
        resources={"placelink": PlacelinkResource(hub=settings)},
        executor=holding_the_run_lock(executor, settings),
    )
