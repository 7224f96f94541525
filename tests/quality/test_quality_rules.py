"""Rules built from the contracts and their ODCS quality entries (no Great Expectations run)."""

import datetime as dt

import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import load_contract, load_contracts
from pipelines.quality.rules import ERROR, WARN, QualityRuleError, rules_for

TODAY = dt.date(2026, 11, 2)


@pytest.fixture(scope="module")
def contracts():
    found, problems = load_contracts(REPO_ROOT / "contracts")
    assert not problems
    return found


def _by_name(rules):
    return {r.name: r for r in rules}


def test_schema_gives_token_date_category_and_uniqueness_rules(contracts):
    rules = _by_name(rules_for(contracts["nhs-acute-mental-health"], "ae_attendances", 1000, TODAY))
    assert rules["nhs_number_token: token format"].kwargs["regex"] == r"^[0-9a-f]{32}\Z"
    assert rules["given_name_bloom: 32-byte Bloom filter"].kwargs["value"] == 64  # hex of 32 bytes
    assert rules["record_token: unique"].severity == ERROR
    assert rules["record_token: not null"].expectation == "expect_column_values_to_not_be_null"
    assert rules["arrival_mode: allowed values"].kwargs["value_set"] == [
        "ambulance",
        "walk_in",
        "other",
    ]
    date = rules["arrival_date: plausible date"].kwargs
    assert date["min_value"].date() == dt.date(1990, 1, 1) and date["max_value"].date() == TODAY
    assert rules["year_of_birth: plausible year"].kwargs["max_value"] == 2026
    assert rules["arrival_date: type date"].kwargs["type_list"][0].startswith("datetime64")
    # an optional item (sex, NHS number) may be entirely empty: a warning; a required one holds
    assert rules["columns: no required column entirely empty"].severity == ERROR
    assert rules["columns: optional columns have values"].severity == WARN
    assert (
        "nhs_number_token"
        in rules["columns: optional columns have values"].kwargs["row_condition"]["parameter"]
    )
    assert (
        "arrival_date"
        in rules["columns: no required column entirely empty"].kwargs["row_condition"]["parameter"]
    )
    # a first delivery has nothing to compare its size with
    assert not any(r.name.startswith("row count") for r in rules.values())


def test_row_count_band_follows_the_previous_delivery(contracts):
    rules = _by_name(
        rules_for(
            contracts["nhs-acute-mental-health"], "ae_attendances", 400, TODAY, previous_rows=4000
        )
    )
    band = rules["row count: close to the previous delivery"]
    assert band.kwargs == {"min_value": 2000, "max_value": 8000} and band.severity == ERROR
    assert "4,000" in band.description


def test_quality_entries_of_the_contracts_become_rules(contracts):
    nhs = _by_name(rules_for(contracts["nhs-acute-mental-health"], "ae_attendances", 1000, TODAY))
    sex = nhs["sex: recorded sex code"]
    assert sex.severity == WARN and sex.kwargs == {"column": "sex", "value_set": ["M", "F", "U"]}
    assert sex.source == "contract quality entry"
    stay = _by_name(
        rules_for(contracts["nhs-acute-mental-health"], "emergency_admissions", 10, TODAY)
    )
    assert stay["length_of_stay_days: plausible length of stay"].kwargs == {
        "min_value": 0,
        "max_value": 365,
        "column": "length_of_stay_days",
    }
    school = _by_name(
        rules_for(contracts["council-place-services"], "school_attendance", 10, TODAY)
    )
    assert (
        school["sessions_attended: no more attended than possible"].expectation
        == "expect_column_pair_values_a_to_be_greater_than_b"
    )


QUALITY_YAML = """    quality:
{entries}
"""


def _contract_with(tmp_path, entries: str):
    """The VCS contract with extra quality entries on its programme_type item."""
    source = (REPO_ROOT / "contracts" / "vcs-family-support.yaml").read_text()
    anchor = "      - early_help\n"
    assert anchor in source
    target = tmp_path / "vcs-family-support.yaml"
    target.write_text(source.replace(anchor, anchor + QUALITY_YAML.format(entries=entries)))
    return load_contract(target)


def test_library_metrics_with_percent_and_row_limits(tmp_path):
    contract = _contract_with(
        tmp_path,
        """    - metric: nullValues
      mustBeLessOrEqualTo: 5
      unit: percent
    - metric: duplicateValues
      mustBeLessThan: 11
      unit: rows
      severity: warning
    - metric: invalidValues
      arguments: {pattern: '^[a-z_]+$'}
      mustBe: 0
    - type: text
      description: Reviewed by the programme lead each quarter.""",
    )
    rules = [
        r
        for r in rules_for(contract, "family_support_enrolments", 1000, TODAY)
        if r.source == "contract quality entry"
    ]
    assert [(r.expectation, r.severity) for r in rules] == [
        ("expect_column_values_to_not_be_null", ERROR),
        ("expect_column_values_to_be_unique", WARN),
        ("expect_column_values_to_match_regex", ERROR),
    ]
    assert rules[0].kwargs["mostly"] == pytest.approx(0.95)
    assert rules[1].kwargs["mostly"] == pytest.approx(0.99)  # at most 10 of 1000 rows
    assert "mostly" not in rules[2].kwargs


def test_row_count_change_band_can_be_set_in_the_contract(tmp_path):
    contract = _contract_with(
        tmp_path,
        """    - type: custom
      engine: placelink
      implementation: {rule: rowCountChange, mustBeBetween: [0.05, 20]}
      severity: warning""",
    )
    (band,) = [
        r
        for r in rules_for(contract, "family_support_enrolments", 10, TODAY, previous_rows=100)
        if r.name.startswith("row count")
    ]
    assert band.kwargs == {"min_value": 5, "max_value": 2000} and band.severity == WARN


@pytest.mark.parametrize(
    "entry, words",
    [
        (
            "    - type: custom\n      engine: soda\n      implementation: 'missing_count(x) = 0'",
            ["soda", "not run"],
        ),
        ("    - type: sql\n      query: SELECT 1\n      mustBe: 1", ["sql", "not run"]),
        ("    - metric: nullValues\n      mustBeGreaterThan: 3", ["mustBeGreaterThan"]),
    ],
)
def test_unusable_quality_entry_names_the_contract_and_the_entry(tmp_path, entry, words):
    contract = _contract_with(tmp_path, entry)
    with pytest.raises(QualityRuleError) as caught:
        rules_for(contract, "family_support_enrolments", 10, TODAY)
    message = str(caught.value)
    assert "vcs-family-support" in message and "programme_type" in message
    assert all(w in message for w in words)
