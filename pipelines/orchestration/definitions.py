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
from assets.resources import PlacelinkResource
from assets.sql_models import sql_model_assets
from pipelines.orchestration.alerting import alert_sensors
from pipelines.orchestration.jobs import refresh_job, retention_job
from pipelines.orchestration.schedules import daily_retention, monthly_refresh
from pipelines.orchestration.sensors import inbox_sensor
from pipelines.run_lock import RunLockBusy, run_lock
from pipelines.settings import Settings
from pipelines.sql_models import model_plan


class _RunLockedExecutor(dg.Executor):
    """Runs the plan with ``inner`` while the run's own process holds the hub's run lock."""

    def __init__(self, inner: dg.Executor):
        self.inner = inner

    @property
    def retries(self):
        return self.inner.retries

    @property
    def step_dependency_config(self):
        return self.inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        settings = Settings.from_env()

        def waiting(holder) -> None:
            plan_context.log.warning(
                f"waiting for the hub's run lock: {holder.describe() if holder else 'another run'} "
                f"holds it (up to {settings.run_lock_wait_seconds:.0f} s)"
            )

        try:
            with run_lock(
                settings.home,
                "dagster run",
                run_id=plan_context.run_id,
                wait=settings.run_lock_wait_seconds,
                on_wait=waiting,
            ):
                yield from self.inner.execute(plan_context, execution_plan)
        except RunLockBusy as exc:
            raise dg.Failure(description=str(exc)) from None


def holding_the_run_lock(executor: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """``executor``, with the run's orchestrating process holding the hub's run lock from the first
    step to the last, whichever process each step runs in (pipelines/run_lock.py). With the
    in-process executor the resource would hold it for the run anyway; with one that starts a
    process per step, this keeps another run from taking the lock between two steps."""

    def create(init_context):
        return _RunLockedExecutor(executor.executor_creation_fn(init_context))

    return dg.ExecutorDefinition(
        name=executor.name,
        config_schema=executor.config_schema,
        requirements=executor.get_requirements,
        executor_creation_fn=create,
        description=executor.description,
    )


def placelink_definitions(
    executor: dg.ExecutorDefinition = dg.in_process_executor,
) -> dg.Definitions:
    """Everything in the code location, run by ``executor``, whose runs hold the hub's run lock
    throughout (:func:`holding_the_run_lock`).

    Every asset opens warehouse.duckdb, and DuckDB allows one writer per file: steps that
    ran side by side in separate processes (Dagster's default for UI-launched runs) would
    fail on its lock. So steps run in one process by default; a deployment that wants each
    step in its own process or pod passes an executor limited to one step at a time
    (README: Scaling out).
    """
    settings = Settings.from_env()
    plan = model_plan(
        settings
    )  # which models (and so which effect assets) this hub's contracts allow
    return dg.Definitions(
        assets=[
            received_extracts,
            *landing_specs(),
            new_since_publication,
            area_reference,
            person_records,
            linked_persons,
            *sql_model_assets(settings, plan),
            *effect_assets(plan),
            shared_outcomes,
            outcomes_report,
            quality_report,
            contract_status,
            retention_deletions,
            ig_register,
            quarantine_purge,
        ],
        asset_checks=[*quality_checks, plausible_linkage, *cadence_checks],
        jobs=[refresh_job, retention_job],
        sensors=[inbox_sensor, *alert_sensors],
        schedules=[monthly_refresh, daily_retention],
        resources={"placelink": PlacelinkResource()},
        executor=holding_the_run_lock(executor),
    )


defs = placelink_definitions()
