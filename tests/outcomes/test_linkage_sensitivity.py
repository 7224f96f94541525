"""The linkage sensitivity re-runs only the persons whose clusters change between thresholds, and
that gives exactly what re-running every model in full gives (the session's 12,000-person hub)."""

import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.outcomes.effects import HEADLINE_BANDS, effect_bands
from pipelines.outcomes.effects.sensitivity import (
    estimates_at_threshold,
    recluster,
    recluster_changed,
)
from pipelines.outcomes.sql_models import HUB_SOURCES, discover

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def warehouse(outcomes_hub, tmp_path_factory):
    _, settings = outcomes_hub
    copy = tmp_path_factory.mktemp("sensitivity") / "warehouse.duckdb"
    shutil.copy(settings.warehouse, copy)
    con = duckdb.connect(str(copy))
    yield con
    con.close()


@pytest.mark.parametrize(
    ("threshold", "what"),
    [(0.5, "a looser threshold merges persons"), (0.99, "a stricter one splits them")],
)
def test_rerunning_only_the_changed_persons_gives_the_full_reruns_estimates(
    warehouse, threshold, what
):
    con = warehouse
    models = discover(ROOT / "dbt_like_sql")
    bands = [b for b in effect_bands(con, models) if b.label in HEADLINE_BANDS]
    main_persons = con.execute("SELECT count(DISTINCT person_key) FROM hub.person_keys").fetchall()[
        0
    ][0]
    databases = con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
    full, full_persons = estimates_at_threshold(
        con, models, HUB_SOURCES, threshold, bands, incremental=False
    )
    changed, changed_persons = estimates_at_threshold(con, models, HUB_SOURCES, threshold, bands)
    # the threshold does change who is who: fewer persons when looser (merges), more when stricter
    if threshold < 0.9:
        assert full_persons < main_persons, what
    else:
        assert full_persons > main_persons, what
    assert changed_persons == full_persons
    assert (full["status"] == "estimated").sum() >= 3
    # every estimate, interval and cell count to the last digit
    assert changed.equals(full), changed.to_dicts()
    # and no scratch database is left attached to the warehouse's connection
    assert con.execute("SELECT database_name FROM duckdb_databases()").fetchall() == databases


def test_a_warehouse_table_unlike_the_models_output_is_rerun_in_full(warehouse):
    """A per-person model whose main-run table does not have the model's columns (the SQL changed
    since the table was made) is not reused."""
    con = warehouse
    models = discover(ROOT / "dbt_like_sql")
    bands = [b for b in effect_bands(con, models) if b.label in HEADLINE_BANDS]
    full, _ = estimates_at_threshold(con, models, HUB_SOURCES, 0.99, bands, incremental=False)
    con.execute("CREATE TABLE staging.persons_kept AS SELECT * FROM staging.persons")
    try:
        # a stale table: every person's year of birth off by ten, and a column type changed
        con.execute(
            "CREATE OR REPLACE TABLE staging.persons AS SELECT * REPLACE "
            "(CAST(year_of_birth + 10 AS DOUBLE) AS year_of_birth) FROM staging.persons_kept"
        )
        again, _ = estimates_at_threshold(con, models, HUB_SOURCES, 0.99, bands)
    finally:
        con.execute("CREATE OR REPLACE TABLE staging.persons AS SELECT * FROM staging.persons_kept")
        con.execute("DROP TABLE staging.persons_kept")
    assert again.equals(full)


@pytest.mark.parametrize("threshold", [0.5, 0.99])
def test_clustering_only_where_persons_may_change_gives_splinks_clusters(warehouse, threshold):
    con = warehouse
    full = recluster(
        con.sql("SELECT unique_id FROM hub.person_records").to_arrow_table(),
        con.sql(
            "SELECT unique_id_l, unique_id_r, match_probability FROM hub.linkage_pairs"
        ).to_arrow_table(),
        threshold,
    )
    home = con.execute("SELECT current_database()").fetchall()[0][0]
    con.execute("ATTACH ':memory:' AS clustering; USE clustering")
    try:
        recluster_changed(con, home, threshold)
        rows = con.execute("SELECT identity_id, cluster_id FROM clusters").fetchall()
        kept = con.execute("SELECT count(*) FROM clusters WHERE kept").fetchall()[0][0]
    finally:
        con.execute(f'USE "{home}"; DETACH clustering')
    expected = list(zip(full["unique_id"].to_pylist(), full["cluster_id"].to_pylist()))
    assert sorted(rows) == sorted(expected)
    assert kept > len(rows) / 2  # most persons are taken as they were, without clustering
