"""Stage 3: the dbt_like_sql models, one Dagster asset per SQL file, lineage read from the SQL."""

import dagster as dg

from pipelines.resources import PlacelinkResource
from pipelines.settings import Settings
from pipelines.sql_models import SqlModel, check_graph, discover, run_model

# Tables written by Python assets that models may read.
HUB_SOURCES = {"hub.record_person", "hub.person_keys", "hub.record_identity", "hub.person_records",
               "hub.lsoa_reference", "hub.deliveries"}


def _model_asset(model: SqlModel) -> dg.AssetsDefinition:
    @dg.asset(
        key=[model.schema, model.name],
        deps=[dg.AssetKey(dep.split(".")) for dep in sorted(model.depends_on)],
        group_name=f"models_{model.schema}",
        description=model.description or None,
        # The SQL file's hash: Dagster marks downstream assets stale when a model's SQL changes.
        code_version=model.version,
        metadata={"sql_file": dg.MetadataValue.path(str(model.path)), "materialized": model.materialized,
                  **({"dagster/column_schema": dg.TableSchema(columns=[
                      dg.TableColumn(name, description=text) for name, text in model.columns.items()])}
                     if model.columns else {})},
    )
    def _run(placelink: PlacelinkResource) -> dg.MaterializeResult:
        with placelink.warehouse() as con:
            rows = run_model(con, model)
        return dg.MaterializeResult(metadata={} if rows is None else {"rows": rows})

    return _run


def sql_model_assets(sources: set[str]) -> list[dg.AssetsDefinition]:
    models = discover(Settings.from_env().sql_dir)
    check_graph(models, sources)
    return [_model_asset(m) for m in models.values()]
