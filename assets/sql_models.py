"""Stage 3: the dbt_like_sql models, one Dagster asset per SQL file, lineage read from the SQL,
all run in one step (:func:`models_asset`).

The graph is built from the contracts present: a model whose source dataset no contract
provides is left out (with the reason in the Dagster log, the published file's ``_about`` and
`placelink run`'s summary), not a traceback at load.
"""

import logging

import dagster as dg

from assets.linkage import GOVERNANCE_DEPS
from assets.resources import PlacelinkResource
from pipelines.core.settings import Settings
from pipelines.linkage.person_records import landed_datasets
from pipelines.outcomes.record_attributes import build_record_attributes
from pipelines.outcomes.sql_models import (
    ModelPlan,
    SqlModel,
    check_graph,
    model_sources,
    run_model,
)

log = logging.getLogger(__name__)


def record_attributes_asset(landing: tuple[dg.AssetSpec, ...]) -> dg.AssetsDefinition:
    """Record attributes, read from the ``landing`` assets (:func:`assets.ingest.landing_specs`)."""

    @dg.asset(
        key=["hub", "record_attributes"],
        group_name="models_staging",
        deps=[s.key for s in landing] + GOVERNANCE_DEPS,
        description="Year of birth, sex and area of every landed record in use (NULL where its "
        "dataset has no such column): what staging.persons describes people by.",
    )
    def record_attributes(placelink: PlacelinkResource) -> dg.MaterializeResult:
        contracts, _ = placelink.contracts()
        with placelink.warehouse() as con:
            lacking = build_record_attributes(
                con, landed_datasets(con, contracts, placelink.settings().today())
            )
        return dg.MaterializeResult(
            metadata={
                "datasets": len(lacking),
                "attributes_not_held": dg.MetadataValue.json(
                    {d: a for d, a in lacking.items() if a}
                ),
            }
        )

    return record_attributes


def _model_spec(model: SqlModel) -> dg.AssetSpec:
    """The asset of one model: its key, lineage (read from the SQL), group and description, as
    the UI and the asset graph show them."""
    return dg.AssetSpec(
        key=[model.schema, model.name],
        deps=[dg.AssetKey(dep.split(".")) for dep in sorted(model.depends_on)],
        group_name=f"models_{model.schema}",
        description=model.description or None,
        # The SQL file's hash: Dagster marks downstream assets stale when a model's SQL changes.
        code_version=model.version,
        metadata={
            "sql_file": dg.MetadataValue.path(str(model.path)),
            "materialized": model.materialized,
            **(
                {
                    "dagster/column_schema": dg.TableSchema(
                        columns=[
                            dg.TableColumn(name, description=text)
                            for name, text in model.columns.items()
                        ]
                    )
                }
                if model.columns
                else {}
            ),
        },
    )


def models_asset(models: dict[str, SqlModel], order: list[str]) -> dg.AssetsDefinition:
    """Every model in one Dagster step, one asset per model (issue 24).

    Each step has a fixed cost outside the models' own SQL (its events in the instance's event
    log, and one open and close of the warehouse, whose close checkpoints what the step wrote):
    with a step per model that cost was paid 17 times a run. The assets are unchanged (one per
    model, with its own key, lineage, group, code version and row count), and any subset of them
    can still be materialised (``can_subset``): the step runs the selected models in ``order``
    (:func:`check_graph`'s), each on the tables the others left."""

    @dg.multi_asset(
        name="sql_models",
        specs=[_model_spec(models[table]) for table in order],
        can_subset=True,
    )
    def sql_models(context: dg.AssetExecutionContext, placelink: PlacelinkResource):
        selected = context.selected_asset_keys
        with placelink.warehouse() as con:
            for table in order:
                model = models[table]
                key = dg.AssetKey([model.schema, model.name])
                if key not in selected:
                    continue
                rows = run_model(con, model)
                yield dg.MaterializeResult(
                    asset_key=key, metadata={} if rows is None else {"rows": rows}
                )

    return sql_models


def sql_model_assets(
    settings: Settings, plan: ModelPlan, landing: tuple[dg.AssetSpec, ...]
) -> list[dg.AssetsDefinition]:
    """One asset per model in ``plan`` (the hub's :func:`model_plan` for ``settings``), all in one
    step (:func:`models_asset`), after ``record_attributes`` (read from the ``landing`` assets); a
    model left out is logged with its reason."""
    order = check_graph(plan.models, model_sources(settings.contracts_dir))
    for message in plan.messages():
        log.warning(message)
    assets = [record_attributes_asset(landing)]
    if plan.models:
        assets.append(models_asset(plan.models, order))
    return assets
