"""What `partner prepare` tells a partner about values it sent empty (issue 17: a new partner's
first extract, FEBRL's, had 64 impossible dates of birth, hundreds of blank names and 5,000
postcodes not in the UK format, and the summary said only "invalid values: ... postcode 5,000")."""

from pipelines.cli.partner import value_counts_summary
from pipelines.governance.contracts import DateFormat


def test_invalid_values_say_what_the_kit_expects_including_the_contracts_date_format():
    (invalid,) = value_counts_summary(
        {"date_of_birth": 64, "given_name": 0, "postcode": 3},
        {},
        rows=5000,
        date_formats=(DateFormat.parse("yyyymmdd"),),
    )
    assert invalid == (
        "invalid values (sent as empty tokens): date_of_birth 64 (not a date written yyyy-mm-dd "
        "or yyyymmdd from 1900-01-01 to today); postcode 3 (not a UK postcode (AB1 2CD); another "
        "country's are read with the contract's postcodeFormat: any)"
    )


def test_blank_values_are_counted_apart_from_invalid_ones_and_absent_columns_left_to_their_line():
    lines = value_counts_summary(
        {"given_name": 0},
        {"given_name": 234, "family_name": 102, "nhs_number": 5000},
        rows=5000,
        absent=("nhs_number",),
    )
    assert lines == ["blank values (sent empty): family_name 102, given_name 234"]


def test_a_field_with_no_usable_value_is_a_warning_naming_it():
    lines = value_counts_summary({"postcode": 4990}, {"postcode": 10}, rows=5000)
    assert lines[-1].startswith("warning: no usable value in postcode:")
    assert not value_counts_summary({"postcode": 4989}, {"postcode": 10}, rows=5000)[-1].startswith(
        "warning"
    )


def test_nothing_is_said_when_every_value_was_usable():
    assert value_counts_summary({"given_name": 0}, {"given_name": 0}, rows=10) == []
