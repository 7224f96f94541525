"""Which models the linkage sensitivity may re-run for the changed persons only: proved per person
from the SQL, and anything the rules cannot prove is re-run in full (population)."""

from pathlib import Path

import pytest

from pipelines.outcomes.model_scope import PER_PERSON, POPULATION, STATIC, model_scopes
from pipelines.outcomes.sql_models import HUB_SOURCES, discover

ROOT = Path(__file__).resolve().parents[2]
KEYED = {"hub.record_person", "hub.person_keys"}


def _scopes(models) -> dict[str, str]:
    landing = {d for m in models.values() for d in m.depends_on if d.startswith("landing.")}
    return model_scopes(models, KEYED, (HUB_SOURCES - KEYED) | landing)


def test_the_shipped_models_split_into_per_person_inputs_and_population_models():
    models = {t: m for t, m in discover(ROOT / "dbt_like_sql").items() if m.schema != "publish"}
    scopes = _scopes(models)
    assert {t for t, s in scopes.items() if s == PER_PERSON} == {
        "staging.persons",
        "staging.outcome_events",
        "staging.school_attendance",
        "cohorts.programme_cohort",
    }
    assert scopes["staging.age_bands"] == STATIC
    # the comparison group is drawn across persons, and everything downstream of it follows
    for table in (
        "cohorts.matching_candidates",
        "cohorts.comparison_group",
        "outcomes.person_periods",
        "outcomes.person_outcomes",
        "outcomes.person_clusters",
    ):
        assert scopes[table] == POPULATION, table


def _scope_of(tmp_path, sql: str) -> str:
    path = tmp_path / "staging" / "m.sql"
    path.parent.mkdir(exist_ok=True)
    path.write_text(sql)
    return _scopes(discover(tmp_path))["staging.m"]


LINKED = (
    "FROM landing.ae_attendances a JOIN hub.record_person rp "
    "ON rp.dataset = 'ae_attendances' AND rp.record_token = a.record_token"
)


@pytest.mark.parametrize(
    "sql",
    [
        f"SELECT rp.person_key, a.arrival_date {LINKED}",
        f"SELECT rp.person_key, count(*) AS n {LINKED} GROUP BY rp.person_key",
        f"SELECT rp.person_key, count(*) AS n {LINKED} GROUP BY ALL",
        f"WITH x AS (SELECT rp.person_key, a.arrival_date AS d {LINKED}) "
        "SELECT person_key, d FROM x QUALIFY row_number() OVER (PARTITION BY person_key ORDER BY d) = 1",
        f"WITH x AS (SELECT rp.person_key, a.arrival_date AS d {LINKED}) "
        "SELECT x.person_key, y.d FROM x LEFT JOIN x AS y ON y.person_key = x.person_key",
        f"SELECT rp.person_key {LINKED} UNION ALL SELECT person_key FROM hub.record_person",
    ],
)
def test_a_query_over_one_persons_rows_is_per_person(tmp_path, sql):
    assert _scope_of(tmp_path, sql) == PER_PERSON


@pytest.mark.parametrize(
    "sql",
    [
        # a count over everyone
        f"SELECT count(*) AS n {LINKED}",
        # a window across persons (a draw, a rank)
        f"SELECT rp.person_key, row_number() OVER (ORDER BY a.arrival_date) AS r {LINKED}",
        f"SELECT rp.person_key, a.arrival_date {LINKED} LIMIT 10",
        # grouped by something other than the person
        f"SELECT min(rp.person_key) AS person_key, a.arrival_date {LINKED} GROUP BY a.arrival_date",
        # records no person matched would belong to nobody
        "SELECT rp.person_key, a.arrival_date FROM landing.ae_attendances a "
        "LEFT JOIN hub.record_person rp ON rp.record_token = a.record_token",
        # two persons' rows joined on something other than the key
        "SELECT a.person_key FROM hub.record_person a JOIN hub.record_person b "
        "ON a.record_token = b.record_token",
        # the output has no key, or a key from the null side of a LEFT JOIN
        f"SELECT a.arrival_date {LINKED}",
        "SELECT b.person_key FROM hub.record_person a LEFT JOIN hub.record_person b "
        "ON b.person_key = a.person_key",
        # the key in different places on the two sides of a UNION
        "SELECT person_key, record_token FROM hub.record_person "
        "UNION ALL SELECT record_token, person_key FROM hub.record_person",
        # a subquery over persons, and a table the rules do not know
        "SELECT person_key FROM hub.record_person WHERE person_key IN "
        "(SELECT person_key FROM hub.record_person LIMIT 1)",
        "SELECT person_key FROM hub.record_person JOIN hub.somewhere_new USING (person_key)",
    ],
)
def test_a_query_the_rules_cannot_prove_per_person_is_run_in_full(tmp_path, sql):
    assert _scope_of(tmp_path, sql) == POPULATION
