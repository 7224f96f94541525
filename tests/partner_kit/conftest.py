"""Shared fixtures for the partner-kit tests: keys made here, tiny raw extracts written by hand."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from pipelines.governance.contracts import load_contract
from pipelines.partner_kit.features import IDENTITY_COLUMNS
from pipelines.partner_kit.prepare import prepare_extract
from pipelines.partner_kit.tokens import LinkageKey

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 10, 15, 9, 30, tzinfo=dt.UTC)
IDENTITY_HEADER = list(IDENTITY_COLUMNS)

# Valid NHS numbers (mod 11) for hand-made rows.
NHS_A = "9434765870"
NHS_B = "9434765919"
NHS_C = "4010232137"


@pytest.fixture(scope="session")
def nhs_contract():
    return load_contract(REPO / "contracts" / "nhs-acute-mental-health.yaml")


@pytest.fixture(scope="session")
def council_contract():
    return load_contract(REPO / "contracts" / "council-place-services.yaml")


@pytest.fixture(scope="session")
def vcs_contract():
    return load_contract(REPO / "contracts" / "vcs-family-support.yaml")


@pytest.fixture()
def key() -> LinkageKey:
    return LinkageKey.generate()


@pytest.fixture()
def now() -> dt.datetime:
    return NOW


@pytest.fixture()
def raw_csv(tmp_path):
    """Write a small raw extract: ``raw_csv(header, rows, name=...)`` -> path."""

    def make(header: list[str], rows: list[list[str]], name: str = "extract.csv") -> Path:
        return write_csv(tmp_path / name, header, rows)

    return make


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture()
def postcode_lookup(tmp_path) -> Path:
    return write_csv(
        tmp_path / "postcode_lookup.csv",
        ["postcode", "lsoa_code", "ward_code"],
        [
            ["AB1 2CD", "E01000001", "E05000001"],
            ["NS1 4XY", "E01000002", "E05000001"],
            ["ns2 9zz", "E01000003", "E05000002"],
        ],
    )


AE_HEADER = IDENTITY_HEADER + ["arrival_date", "arrival_mode"]


def ae_rows() -> list[list[str]]:
    return [
        [
            "A1",
            NHS_A,
            "Siobhán",
            "O'Brien",
            "1990-03-07",
            "F",
            "ab1 2cd",
            "2024-01-05",
            "ambulance",
        ],
        [
            "A2",
            "943 476 5870",
            "siobhan",
            "OBRIEN",
            "1990-03-07",
            "Female",
            "AB12CD",
            "2024-02-11",
            "walk_in",
        ],
        ["A3", NHS_B, "Bob", "Smith-Jones", "1985-11-30", "1", "NS1 4XY", "2024-03-01", "Walk_In"],
        [
            "A4",
            "9434765871",
            "Robert",
            "Smith Jones",
            "1985-11-30",
            "M",
            "zz9 9zz",
            "not a date",
            "other",
        ],
        ["A5", "", "", "", "", "", "", "2024-04-01", "helicopter"],
        ["A6", NHS_C, "Liz", "Patel", "1985-30-11", "9", "NS2 9ZZ", "2024-04-02", "other"],
    ]


@pytest.fixture()
def ae_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "ae_attendances.csv", AE_HEADER, ae_rows())


@pytest.fixture()
def opt_outs(tmp_path) -> Path:
    # NHS_A has opted out: rows A1 and A2 (same number, written with spaces) must go.
    return write_csv(
        tmp_path / "national_data_opt_outs.csv", ["nhs_number"], [[NHS_A], ["not a number"]]
    )


@pytest.fixture()
def kit(key, postcode_lookup, opt_outs, now):
    """``kit(contract, dataset, raw, out, **given)``: the partner kit (``prepare_extract``) with this
    test's linkage key, postcode lookup, opt-out list and clock, for period 2026-10; a keyword
    argument replaces one of them (``period=None``: the kit's default)."""

    def run(contract, dataset: str, raw: Path, out: Path, **given):
        arguments = {
            "linkage_key": key,
            "postcode_lookup": postcode_lookup,
            "opt_outs": opt_outs,
            "period": "2026-10",
            "now": now,
            **given,
        }
        return prepare_extract(contract, dataset, raw, out, **arguments)

    return run
