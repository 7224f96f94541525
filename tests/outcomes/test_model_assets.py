"""The SQL models as Dagster assets: one step runs them all (issue 24), yet each model stays its
own asset, with the lineage its SQL reads, and any subset of them can be materialised."""

import dagster as dg
import duckdb

from assets.resources import PlacelinkResource
from assets.sql_models import models_asset
from pipelines.core.settings import Settings
from pipelines.orchestration.definitions import placelink_definitions
from pipelines.outcomes.sql_models import check_graph, discover, model_plan


def _key(table: str) -> dg.AssetKey:
    return dg.AssetKey(table.split("."))


def test_every_model_is_its_own_asset_with_the_lineage_its_sql_reads(tmp_path):
    settings = Settings.from_env(home=tmp_path / "home")
    plan = model_plan(settings)
    graph = placelink_definitions(settings).resolve_asset_graph()
    assert len(plan.models) >= 10
    for table, model in plan.models.items():
        node = graph.get(_key(table))
        assert node.parent_keys == {_key(dep) for dep in model.depends_on}, table
        assert node.group_name == f"models_{model.schema}"
        assert node.code_version == model.version
        assert node.description == (model.description or None)
    # ...and the published outcomes still read the models they did
    published = graph.get(dg.AssetKey(["published", "shared_outcomes"]))
    assert {_key(t) for t in plan.models if t.startswith("publish.")} <= published.parent_keys


def _write(folder, name, sql):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql)


def _tables(settings) -> set[str]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return {
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema IN ('staging', 'cohorts')"
            ).fetchall()
        }
    finally:
        con.close()


def test_a_subset_of_models_is_materialised_alone_in_the_order_its_sql_needs(tmp_path):
    models_dir = tmp_path / "models"
    _write(models_dir, "staging/people.sql", "SELECT range AS person FROM range(5)")
    _write(models_dir, "staging/adults.sql", "SELECT person FROM staging.people WHERE person > 1")
    _write(models_dir, "cohorts/adult_count.sql", "SELECT count(*) AS n FROM staging.adults")
    models = discover(models_dir)
    asset = models_asset(models, check_graph(models, set()))
    settings = Settings.from_env(home=tmp_path / "home")
    resources = {"placelink": PlacelinkResource(hub=settings)}

    # the two staging models only: asked in reverse order, run in the order their SQL needs
    first = dg.materialize(
        [asset],
        selection=[_key("staging.adults"), _key("staging.people")],
        resources=resources,
    )
    assert first.success
    rows = {
        e.asset_key.to_user_string(): e.materialization.metadata["rows"].value
        for e in first.get_asset_materialization_events()
    }
    assert rows == {"staging/people": 5, "staging/adults": 3}
    assert _tables(settings) == {"staging.people", "staging.adults"}

    # then the cohort alone, on the tables the first run left
    second = dg.materialize([asset], selection=[_key("cohorts.adult_count")], resources=resources)
    assert second.success
    assert [m.asset_key for m in second.get_asset_materialization_events()] == [
        _key("cohorts.adult_count")
    ]
    assert "cohorts.adult_count" in _tables(settings)


def test_a_failing_model_fails_the_step_naming_its_file_after_the_models_before_it(tmp_path):
    models_dir = tmp_path / "models"
    _write(models_dir, "staging/people.sql", "SELECT range AS person FROM range(5)")
    _write(models_dir, "staging/broken.sql", "SELECT no_such_column FROM staging.people")
    models = discover(models_dir)
    asset = models_asset(models, check_graph(models, set()))
    settings = Settings.from_env(home=tmp_path / "home")

    result = dg.materialize(
        [asset],
        resources={"placelink": PlacelinkResource(hub=settings)},
        raise_on_error=False,
    )
    assert not result.success
    assert [m.asset_key for m in result.get_asset_materialization_events()] == [
        _key("staging.people")
    ]
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "broken.sql" in str(failure.step_failure_data.error)
