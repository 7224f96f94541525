import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.outcomes.sql_models import (
    ModelError,
    check_graph,
    discover,
    plan_models,
    referenced_tables,
)


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT * FROM staging.persons", {"staging.persons"}),
        # a CTE that shadows a real table name is not a dependency
        (
            "WITH persons AS (SELECT * FROM hub.person_keys) SELECT * FROM persons",
            {"hub.person_keys"},
        ),
        ("SELECT * FROM read_parquet('x.parquet')", set()),
        ('SELECT * FROM "cohorts"."Programme Cohort"', {"cohorts.Programme Cohort"}),
        (
            "SELECT (SELECT max(a) FROM outcomes.z) FROM staging.y WHERE b IN (SELECT b FROM hub.x)",
            {"outcomes.z", "staging.y", "hub.x"},
        ),
        ("SELECT * FROM a.b JOIN (SELECT * FROM c.d) s USING (k)", {"a.b", "c.d"}),
        # a CTE named like a real table, used next to that table: only the qualified one is a table
        (
            "WITH persons AS (SELECT * FROM hub.person_keys) SELECT * FROM persons JOIN staging.persons USING (k)",
            {"hub.person_keys", "staging.persons"},
        ),
        # a CTE inside a subquery, and a CTE that reads another CTE
        ("SELECT * FROM (WITH x AS (SELECT * FROM s.t) SELECT * FROM x) q", {"s.t"}),
        ("WITH a AS (SELECT * FROM s.one), b AS (SELECT * FROM a) SELECT * FROM b", {"s.one"}),
        # correlated subquery, EXISTS, UNION and a table function that is not a table
        (
            "SELECT *, (SELECT count(*) FROM s.e WHERE e.k = p.k) FROM s.p p "
            "WHERE EXISTS (SELECT 1 FROM s.x WHERE x.k = p.k) UNION ALL SELECT * FROM range(3) r(k)",
            {"s.e", "s.p", "s.x"},
        ),
        (
            "SELECT * FROM read_parquet('a.parquet') p JOIN read_csv_auto('b.csv') c USING (k) JOIN s.t USING (k)",
            {"s.t"},
        ),
        ('SELECT * FROM "staging"."persons" AS "weird name"', {"staging.persons"}),
        # a column or alias that looks like a table is not one
        ("SELECT staging.persons FROM s.t AS staging", {"s.t"}),
    ],
)
def test_dependencies_come_from_the_sql(sql, expected):
    assert referenced_tables(sql) == expected


def test_sql_error_names_file_and_line():
    with pytest.raises(ModelError, match=r"broken\.sql: SQL error at line 2"):
        referenced_tables("SELECT a\nFROM (SELECT", "broken.sql")


def _write(folder, name, sql):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql)


def test_cycle_names_the_files(tmp_path):
    _write(tmp_path, "staging/a.sql", "SELECT * FROM staging.b")
    _write(tmp_path, "staging/b.sql", "SELECT * FROM staging.a")
    with pytest.raises(ModelError, match=r"cycle: .*staging/(a|b)\.sql -> .*staging/(a|b)\.sql"):
        check_graph(discover(tmp_path), set())


def test_unknown_table_names_the_file(tmp_path):
    _write(tmp_path, "staging/a.sql", "SELECT * FROM hub.nowhere")
    with pytest.raises(ModelError, match=r"staging/a\.sql: reads unknown table\(s\) hub\.nowhere"):
        check_graph(discover(tmp_path), {"hub.person_keys"})


def test_a_model_whose_dataset_has_no_contract_is_left_out_with_its_downstream(tmp_path):
    _write(
        tmp_path, "staging/events.sql", "SELECT * FROM landing.a UNION ALL SELECT * FROM landing.b"
    )
    _write(tmp_path, "staging/people.sql", "SELECT * FROM hub.record_person")
    _write(
        tmp_path,
        "publish/by_area.sql",
        "SELECT * FROM staging.events JOIN staging.people USING (k)",
    )
    _write(tmp_path, "publish/people.sql", "SELECT * FROM staging.people")
    plan = plan_models(discover(tmp_path), {"landing.a", "hub.record_person"})
    assert sorted(plan.models) == ["publish.people", "staging.people"]
    assert sorted(plan.left_out) == ["publish.by_area", "staging.events"]
    assert (
        "needs landing.b, and no contract in contracts/ provides" in plan.left_out["staging.events"]
    )
    assert "needs landing.b (through staging.events)" in plan.left_out["publish.by_area"]
    assert "events.sql" in plan.left_out["staging.events"]
    assert check_graph(plan.models, {"landing.a", "hub.record_person"}) == [
        "staging.people",
        "publish.people",
    ]


def test_a_misspelt_hub_table_is_still_an_error_not_a_left_out_model(tmp_path):
    _write(tmp_path, "staging/a.sql", "SELECT * FROM hub.record_persn")
    with pytest.raises(
        ModelError, match=r"staging/a\.sql: reads unknown table\(s\) hub\.record_persn"
    ):
        plan_models(discover(tmp_path), {"hub.record_person"})


def test_the_project_models_without_the_family_support_contract():
    # A partnership without the VCS partner: its cohort and everything built on it are left out,
    # what does not need it still runs.
    models = discover(REPO_ROOT / "dbt_like_sql")
    sources = {
        f"landing.{d}"
        for d in (
            "ae_attendances",
            "emergency_admissions",
            "mental_health_referrals",
            "csc_referrals",
            "school_attendance",
            "homelessness_applications",
        )
    }
    sources |= {
        "hub.record_person",
        "hub.lsoa_reference",
        "hub.record_attributes",
        "hub.record_identity",
    }
    plan = plan_models(models, sources)
    assert (
        "cohorts.programme_cohort" in plan.left_out and "publish.outcomes_by_ward" in plan.left_out
    )
    assert {"staging.persons", "staging.outcome_events", "staging.school_attendance"} <= set(
        plan.models
    )
    assert "landing.family_support_enrolments" in plan.left_out["publish.outcomes_by_ward"]


def test_header_sets_description_and_counts(tmp_path):
    _write(
        tmp_path,
        "publish/t.sql",
        "-- description: A table\n--   over two lines.\n-- counts: people, events\nSELECT 1",
    )
    model = discover(tmp_path)["publish.t"]
    assert model.description == "A table over two lines."
    assert model.list_option("counts") == ["people", "events"]


def test_project_models_form_a_valid_graph():
    models = discover(REPO_ROOT / "dbt_like_sql")
    sources = {
        f"landing.{d}"
        for d in (
            "ae_attendances",
            "emergency_admissions",
            "mental_health_referrals",
            "csc_referrals",
            "school_attendance",
            "homelessness_applications",
            "family_support_enrolments",
        )
    } | {"hub.record_person", "hub.lsoa_reference", "hub.record_attributes", "hub.record_identity"}
    order = check_graph(models, sources)
    assert (
        order.index("staging.persons")
        < order.index("cohorts.comparison_group")
        < order.index("publish.outcomes_by_ward")
    )


def test_runtime_sql_error_names_file_and_line(tmp_path):
    import duckdb

    from pipelines.outcomes.sql_models import run_model

    _write(
        tmp_path, "staging/a.sql", "-- description: x\nSELECT 1 AS a,\n       no_such_column AS b\n"
    )
    con = duckdb.connect()
    con.execute("CREATE SCHEMA staging")
    with pytest.raises(ModelError, match=r"staging/a\.sql:3: BinderException: .*no_such_column"):
        run_model(con, discover(tmp_path)["staging.a"])


def test_yaml_header_block_describes_model_and_columns(tmp_path):
    _write(
        tmp_path,
        "publish/t.sql",
        "/*\ndescription: >\n  Counts by\n  cohort.\nmaterialized: view\n"
        "counts: [people]\ncolumns:\n  people: People in the group.\n*/\n"
        "SELECT 'a' AS cohort, 10 AS people",
    )
    model = discover(tmp_path)["publish.t"]
    assert (model.description, model.materialized) == ("Counts by cohort.", "view")
    assert model.list_option("counts") == ["people"]
    assert model.columns == {"people": "People in the group."}
    before = model.version
    _write(tmp_path, "publish/t.sql", model.path.read_text() + " -- edited")
    assert discover(tmp_path)["publish.t"].version != before


def test_invalid_yaml_header_names_the_file_and_line(tmp_path):
    _write(tmp_path, "staging/bad.sql", "/*\ndescription: ok\ncolumns: [unclosed\n*/\nSELECT 1")
    with pytest.raises(
        ModelError, match=r"staging/bad\.sql: the YAML header block is not valid YAML at line \d"
    ):
        discover(tmp_path)
