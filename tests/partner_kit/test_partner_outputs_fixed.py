"""The partner kit's outputs are fixed: same key and inputs, same values in every file.

The hub's saved linkage models and stable person keys depend on every token and Bloom
filter staying exactly as it is, so any change to how the kit computes them (a faster
path, a library upgrade) must give the very same values. This test prepares every
dataset of a small seeded synthetic place, plus hand-made edge cases, with a key
derived here from a fixed seed (a test key: it protects nothing), and compares a
SHA-256 digest of the decoded files with digests recorded from the kit before it was
optimised. The digests are over whole columns: no token, filter or raw value is shown.

If the *inputs* digest fails, the synthetic generator changed (not the kit): record
new digests with the kit from before your change, then re-apply it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.core.settings import REPO_ROOT
from pipelines.governance.contracts import load_contracts
from pipelines.partner_kit.prepare import prepare_extract
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.synth import generate_place
from tests.partner_kit.conftest import AE_HEADER, ae_rows, write_csv

NOW = dt.datetime(2026, 10, 15, 9, 30, tzinfo=dt.UTC)
PEOPLE, SEED = 1500, 7
# Things that differ on every run by design: a fresh extract id and the file names built from it.
VOLATILE_REPORT_KEYS = ("extract_file", "extract_id", "created_at", "input_file")
# Report keys added after the digests were recorded (they carry no token or value; each is tested
# where it was added): the delivery kind (issue 21, tests/partner_kit/test_delivery_kind_header.py).
ADDED_REPORT_KEYS = ("delivery_kind",)

INPUT_DIGEST = "efb16d7a3a911cad37f64c45e794d85356227cfec5ba6abcadf10bba0ae1a4f5"
# Recorded with the kit as of commit 5c18354 (before the throughput work of issue 8). The four
# datasets whose systems keep Polish letters re-recorded for issue 17, when names began folding
# Ł, Ø, ß... as ASCII-only systems write them (ŁUKASZ and LUKASZ: one token); with that fold
# undone the old digests still held, so no other value changed.
OUTPUT_DIGESTS = {
    "csc_referrals:csc_referrals": "24b32cee0bd8ea14388609d8f5e1e7119dba0e812b2247ee4fc770e96a962731",
    "school_attendance:school_attendance": "fa0160522f45a84326e3b2fac742517a0604fb0a88ed69cd2c80b2580719a8a0",
    "homelessness_applications:homelessness_applications": "14f464b63b49424479b09d810a0921c08018984dc2afe65d2451d3494540dbdd",
    "ae_attendances:ae_attendances": "c1056c0c81eb6783d2b9f36d782fcf7a9064c37442d37064e6f1c1259071e855",
    "emergency_admissions:emergency_admissions": "582b251f1a5abc298a3569f036ec63ab551ac7422517d6aaf3e347a6000f889a",
    "mental_health_referrals:mental_health_referrals": "237736401a02eea2d072c738dd1c293a2f6cfccb4fccf6da3f01a19f52753830",
    "family_support_enrolments:family_support_enrolments": "eef0fcfd37e0500595b04b2572313592f73fb132b84f8b8dfe27906d15c9b6ba",
    "edge:ae_attendances": "1d5fb00d6dc30ef5869f2e7919d2455907a556a14c0bc8c71581fd0553cb0fa7",
}


def _test_key() -> LinkageKey:
    return LinkageKey(hashlib.sha256(b"placelink fixed-output test key, seed 1").digest())


def _json_value(value):
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


# Features added since the digests were recorded (issue 17: name parts, initial, year after,
# the full-name filter):
# new columns, leaving every earlier column as it was. Tested in test_partner_features.py.
ADDED_FEATURES = frozenset(
    {
        "given_name_first_part_token",
        "given_name_last_part_token",
        "family_name_first_part_token",
        "family_name_last_part_token",
        "given_name_initial_token",
        "dob_year_next_token",
        "full_name_bloom",
    }
)


def _file_digest(path: Path) -> str:
    """Digest of a Parquet file's decoded schema and values (not its bytes: the writer's
    encoding choices may change without changing what the hub reads)."""
    table = pq.read_table(path)
    digest = hashlib.sha256()
    for field, column in zip(table.schema, table.columns, strict=True):
        if field.name in ADDED_FEATURES:
            continue
        digest.update(f"{field.name}:{field.type}\n".encode())
        digest.update(json.dumps(column.to_pylist(), default=_json_value).encode())
    return digest.hexdigest()


def _prepared_digests(root: Path) -> tuple[str, dict[str, str]]:
    place = root / "place"
    generate_place(people=PEOPLE, seed=SEED, out=place)
    # Hand-made edge cases (accents, nicknames, bad dates, blanks) as one more council-side file.
    edge = write_csv(root / "edge.csv", AE_HEADER, ae_rows())
    contracts, problems = load_contracts(REPO_ROOT / "contracts")
    assert not problems
    key = _test_key()
    runs = []
    for contract in contracts.values():
        for dataset in contract.datasets:
            runs.append((contract, dataset, place / "raw" / contract.partner_id / f"{dataset}.csv"))
    nhs = contracts["nhs-acute-mental-health"]
    runs.append((nhs, "ae_attendances", edge))

    inputs = hashlib.sha256()
    for reference in ("postcode_lookup.csv", "national_data_opt_outs.csv"):
        inputs.update((place / "reference" / reference).read_bytes())
    outputs = {}
    for contract, dataset, raw in runs:
        inputs.update(raw.read_bytes())
        opt_outs = (
            place / "reference" / "national_data_opt_outs.csv"
            if contract.terms.national_data_opt_out_applies
            else None
        )
        prepared = prepare_extract(
            contract,
            dataset,
            raw,
            root / "out" / raw.stem,
            key,
            place / "reference" / "postcode_lookup.csv",
            opt_outs=opt_outs,
            period="2026-10",
            now=NOW,
        )
        report = {
            k: v
            for k, v in prepared.report.items()
            if k not in VOLATILE_REPORT_KEYS and k not in ADDED_REPORT_KEYS
        }
        report["columns_sent"] = [c for c in report["columns_sent"] if c not in ADDED_FEATURES]
        digest = hashlib.sha256(json.dumps(report, sort_keys=True).encode())
        digest.update(_file_digest(prepared.extract_path).encode())
        digest.update(_file_digest(prepared.lookup_path).encode())
        outputs[f"{raw.stem}:{dataset}"] = digest.hexdigest()
    return inputs.hexdigest(), outputs


@pytest.fixture(scope="module")
def digests(tmp_path_factory):
    return _prepared_digests(tmp_path_factory.mktemp("fixed_outputs"))


def test_the_synthetic_inputs_are_the_ones_the_digests_were_recorded_from(digests):
    assert digests[0] == INPUT_DIGEST, (
        "the synthetic place changed, so the output digests below cannot be compared: "
        "record new ones with the kit from before your change"
    )


def test_every_prepared_file_is_unchanged(digests):
    changed = sorted(name for name, d in digests[1].items() if OUTPUT_DIGESTS.get(name) != d)
    assert not changed, f"prepared outputs changed for: {', '.join(changed)}"
