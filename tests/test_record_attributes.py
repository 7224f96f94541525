"""People described from whichever datasets hold their year of birth, sex and area: a partner
without sex, year of birth or area columns still counts, under 'unknown area'."""

import duckdb
import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import load_contract
from pipelines.outcomes.record_attributes import build_record_attributes
from pipelines.outcomes.sql_models import discover, run_model
from tests.custom_partner import write_custom_contract


@pytest.fixture()
def warehouse(tmp_path):
    """Two partners: a clinic that sends names and dates of birth only (no sex, no area), and a
    council that sends sex, year of birth and LSOA. Person P1 is in both, P2 only at the clinic."""
    clinic = load_contract(
        write_custom_contract(tmp_path / "clinic", identity=("given_name", "family_name"))
    )
    council = load_contract(
        write_custom_contract(
            tmp_path / "council",
            contract_id="council-referrals",
            partner_id="council",
            dataset="council_referrals",
            identity=("given_name", "family_name", "date_of_birth", "sex", "postcode"),
        )
    )
    con = duckdb.connect()
    for schema in ("landing", "hub", "staging", "outcomes", "publish"):
        con.execute(f"CREATE SCHEMA {schema}")
    con.execute(
        "CREATE TABLE landing.clinic_referrals (record_token VARCHAR, given_name_token VARCHAR)"
    )
    con.execute("INSERT INTO landing.clinic_referrals VALUES ('c1', 'g'), ('c2', 'g'), ('c3', 'g')")
    con.execute(
        "CREATE TABLE landing.council_referrals (record_token VARCHAR, sex VARCHAR, "
        "year_of_birth SMALLINT, lsoa_code VARCHAR, ward_code VARCHAR)"
    )
    con.execute(
        "INSERT INTO landing.council_referrals VALUES ('k1', 'F', 1990, 'E01000001', 'E05000001')"
    )
    con.execute("""CREATE TABLE hub.record_person AS SELECT * FROM (VALUES
        ('clinic_referrals', 'c1', 'P1', 'clinic'), ('council_referrals', 'k1', 'P1', 'council'),
        ('clinic_referrals', 'c2', 'P2', 'clinic'), ('clinic_referrals', 'c3', 'P2', 'clinic'))
        AS t(dataset, record_token, person_key, partner_id)""")
    con.execute(
        "CREATE TABLE hub.lsoa_reference AS SELECT 'E01000001' AS lsoa_code, 'E05000001' AS ward_code, "
        "'Ward One' AS ward_name, CAST(3 AS TINYINT) AS imd_decile"
    )
    lacking = build_record_attributes(
        con, [(clinic, "clinic_referrals"), (council, "council_referrals")]
    )
    yield con, lacking
    con.close()


def test_attributes_a_dataset_lacks_are_null_and_named(warehouse):
    con, lacking = warehouse
    assert lacking == {
        "clinic_referrals": ["year_of_birth", "sex", "lsoa_code", "ward_code"],
        "council_referrals": [],
    }
    rows = con.execute(
        "SELECT dataset, record_token, year_of_birth, sex, lsoa_code FROM hub.record_attributes "
        "ORDER BY record_token"
    ).fetchall()
    assert rows == [
        ("clinic_referrals", "c1", None, None, None),
        ("clinic_referrals", "c2", None, None, None),
        ("clinic_referrals", "c3", None, None, None),
        ("council_referrals", "k1", 1990, "F", "E01000001"),
    ]


def test_persons_run_without_sex_year_of_birth_or_area_columns(warehouse):
    con, _ = warehouse
    models = discover(REPO_ROOT / "dbt_like_sql")
    run_model(con, models["staging.persons"])
    people = dict(
        (row[0], row[1:])
        for row in con.execute(
            "SELECT person_key, year_of_birth, sex, ward_code, partners FROM staging.persons"
        ).fetchall()
    )
    assert people == {"P1": (1990, "F", "E05000001", 2), "P2": (None, None, None, 1)}


def test_people_without_an_area_are_published_under_unknown_area(warehouse):
    con, _ = warehouse
    models = discover(REPO_ROOT / "dbt_like_sql")
    run_model(con, models["staging.persons"])
    # The outcome model's shape, one event per person, so the by-ward table can be read directly.
    con.execute(
        "CREATE TABLE outcomes.person_outcomes AS SELECT person_key, 'programme' AS cohort, "
        "'ae_attendance' AS outcome, 'after' AS period, ward_code, 1 AS events FROM staging.persons"
    )
    run_model(con, models["publish.outcomes_by_ward"])
    rows = con.execute(
        "SELECT ward_code, people FROM publish.outcomes_by_ward ORDER BY ward_code"
    ).fetchall()
    assert rows == [("E05000001", 1), ("unknown area", 1)]
