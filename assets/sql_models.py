"""Stage 3: the dbt_like_sql models, one Dagster asset per SQL file, lineage read from the SQL.

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


def _model_asset(model: SqlModel) -> dg.AssetsDefinition:
    @dg.asset(
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
    def _run(placelink: PlacelinkResource) -> dg.MaterializeResult:
        with placelink.warehouse() as con:
            rows = run_model(con, model)
        return dg.MaterializeResult(metadata={} if rows is None else {"rows": rows})

    return _run


def sql_model_assets(
    settings: Settings, plan: ModelPlan, landing: tuple[dg.AssetSpec, ...]
) -> list[dg.AssetsDefinition]:
    """One asset per model in ``plan`` (the hub's :func:`model_plan` for ``settings``), after
    ``record_attributes`` (read from the ``landing`` assets); a model left out is logged with its
    reason."""
    check_graph(plan.models, model_sources(settings.contracts_dir))
    for message in plan.messages():
        log.warning(message)
    return [record_attributes_asset(landing), *(_model_asset(m) for m in plan.models.values())]
