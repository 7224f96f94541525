"""A small hostile corpus at the hub, built from real envelopes (issue 18).

Each delivery is held with a sensible reason, byte for byte; the valid delivery beside it lands;
no planted identifier reaches a reason, the audit log or the warehouse.
"""

import hashlib
import json
import re
import shutil

import duckdb
import pyarrow as pa
import pytest

from pipelines.governance.audit import AuditLog
from pipelines.hub.quarantine import held_files
from tests.approvers import sign_contracts
from tests.hub.test_ingest import _receive

OTHER = "emergency_admissions"
NHS = "4010232137"  # valid modulus 11
CANARIES = (
    NHS,
    "401 023 2137",
    "QUIXOTE",
    "Quixote",
    "quixote",
    "07700 900123",
    "SW1A 1AA",
    "zara.q@example.org",
)
NOTES_ITEM = """  - name: notes
    logicalType: string
    classification: payload
    required: false
    customProperties:
    - property: reason
      value: 'Free-text notes from the key worker.'
"""


@pytest.fixture(scope="module")
def contracts_with_notes(small_place, tmp_path_factory):
    """The place's contracts, with a free-text 'notes' item in the VCS enrolments dataset, signed
    off again after the edit (an edit voids the approvers' signatures) by keys registered in
    ``<folder>/../approvers``: :func:`_stage` copies them into each hub."""
    root = tmp_path_factory.mktemp("contracts")
    folder = root / "contracts"
    shutil.copytree(small_place.contracts_dir, folder)
    vcs = folder / "vcs-family-support.yaml"
    text = vcs.read_text()
    anchor = "  - name: family_token\n"
    vcs.write_text(text.replace(anchor, NOTES_ITEM + anchor, 1))
    sign_contracts(folder, root / "approvers")
    return folder


def _stage(small_place, home, contracts_with_notes, datasets):
    settings = small_place.stage_hub(home, datasets=datasets)
    shutil.copytree(
        contracts_with_notes.parent / "approvers", settings.approver_keys, dirs_exist_ok=True
    )
    return settings


def _with_notes(notes):
    def mutate(table):
        n = table.num_rows
        return table.append_column(
            "notes", pa.array([notes[i % len(notes)] for i in range(n)], pa.string())
        )

    return mutate


def _set(column, value):
    def mutate(table):
        index = table.schema.get_field_index(column)
        return table.set_column(
            index, column, pa.array([value] * table.num_rows, table.schema.field(column).type)
        )

    return mutate


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


HOSTILE_NOTES = [
    "ZARA QUIXOTEUPPER attended with mum",
    "José Quixoteblöm did not attend",
    f"called re nhs no {NHS[:3]} {NHS[3:6]} {NHS[6:]} about housing",
    "lives at flat 2, sw1a 1aa",
    "text 07700 900123 before visits",
    "email zara.q@example.org",
    "DOB 07/03/2015 confirmed",
    "QUIXOTE, Zara (mother) present",
]

CASES = {
    # name: (how to make it from the VCS envelope, the check that must hold it)
    "free text with identifiers.plx": (
        dict(mutate_table=_with_notes(HOSTILE_NOTES)),
        "identifiers",
    ),
    "a name in a token column.plx": (
        dict(
            mutate_table=lambda t: _with_notes(["ok"])(
                _set("given_name_token", "José Quixoteblöm")(t)
            )
        ),
        "identifiers",
    ),
    "a phone number in sex.plx": (
        dict(mutate_table=lambda t: _with_notes(["ok"])(_set("sex", "07700 900123")(t))),
        "identifiers",
    ),
    "contract id holding identifiers.plx": (dict(contract_id=f"{NHS} Zara Quixote"), "format"),
    "partner id with a terminal escape.plx": (
        dict(partner_id="vcs\x1b[2J\n" + "x" * 5000),
        "format",
    ),
    "period holding a date of birth.plx": (
        dict(mutate_table=_with_notes(["ok"]), reporting_period="DOB 07/03/2015"),
        "format",
    ),
    "a column sent twice.plx": (
        dict(mutate_table=lambda t: _with_notes(["ok"])(t).append_column("sex", t.column("sex"))),
        "columns",
    ),
    "column named like a value.plx": (
        dict(
            mutate_table=lambda t: _with_notes(["ok"])(t).append_column(
                f"{NHS} Quixote", pa.array(["x"] * t.num_rows)
            )
        ),
        "columns",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_envelopes_are_held_with_a_reason_and_quote_nothing(
    small_place, contracts_with_notes, tmp_path, name
):
    make, check = CASES[name]
    settings = _stage(small_place, tmp_path / "home", contracts_with_notes, [OTHER])
    bad = settings.inbox / name
    small_place.reseal("family_support_enrolments", bad, **make)
    before = _sha(bad)

    receipts, landed = _receive(settings, contracts_with_notes)

    assert receipts[name].status == "quarantined"
    assert landed == {OTHER: small_place.extract(OTHER).rows_out}
    (item,) = held_files(settings.quarantine)
    assert item["check"] == check, item["found"]
    assert (
        item["action"]
        and item["expected"]
        and _sha(settings.quarantine / item["held_as"]) == before
    )
    written = (settings.audit_dir / "audit.jsonl").read_text() + json.dumps(
        held_files(settings.quarantine)
    )
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        written += str(con.execute("SELECT * FROM hub.deliveries").fetchall())
        written += str(con.execute("SELECT * FROM landing.family_support_enrolments").fetchall())
    assert not [c for c in CANARIES if c in written]
    assert "\x1b" not in written and len(item["found"]) < 2000


def test_the_scan_names_every_kind_it_found_by_column_and_count(
    small_place, contracts_with_notes, tmp_path
):
    settings = _stage(small_place, tmp_path / "home", contracts_with_notes, [])
    small_place.reseal(
        "family_support_enrolments",
        settings.inbox / "notes.plx",
        mutate_table=_with_notes(HOSTILE_NOTES),
    )
    receipts, _ = _receive(settings, contracts_with_notes)
    found = receipts["notes.plx"].reason
    for kind in (
        "NHS numbers",
        "full UK postcodes",
        "e-mail addresses",
        "UK phone numbers",
        "dates of birth",
        "personal names",
    ):
        assert re.search(rf"column 'notes': \d+ value\(s\) that look like {kind}", found), kind


def test_ordinary_free_text_lands(small_place, contracts_with_notes, tmp_path):
    settings = _stage(small_place, tmp_path / "home", contracts_with_notes, [])
    notes = [
        "Will attend clinic on 12/03/2024 at 14:30",
        "WILL ATTEND CLINIC NEXT WEEK, MUM AWARE",
        "May need support from Early Help",
        "Grace period agreed with the landlord",
        None,
        "",
    ]
    small_place.reseal(
        "family_support_enrolments", settings.inbox / "notes.plx", mutate_table=_with_notes(notes)
    )
    receipts, landed = _receive(settings, contracts_with_notes)
    assert receipts["notes.plx"].status == "accepted", receipts["notes.plx"].reason
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        assert (
            con.execute(
                "SELECT count(DISTINCT notes) FROM landing.family_support_enrolments"
            ).fetchone()[0]
            == 5
        )


def test_a_parquet_that_decompresses_far_beyond_its_size_is_held_before_it_is_read(
    small_place, contracts_with_notes, tmp_path, monkeypatch
):
    from pipelines.hub import ingest

    # The real limits are gigabytes; shrink them so a small, very repetitive extract is the bomb.
    monkeypatch.setattr(ingest, "MAX_DECOMPRESSED_BYTES", 1_000_000)
    monkeypatch.setattr(ingest, "MAX_COMPRESSION_RATIO", 20)
    settings = _stage(small_place, tmp_path / "home", contracts_with_notes, [OTHER])
    small_place.reseal(
        "family_support_enrolments",
        settings.inbox / "bomb.plx",
        mutate_table=_with_notes(["a" * 200_000]),
    )
    receipts, landed = _receive(settings, contracts_with_notes)
    assert (
        receipts["bomb.plx"].status == "quarantined" and "decompress" in receipts["bomb.plx"].reason
    )
    assert held_files(settings.quarantine)[0]["check"] == "content"
    assert landed == {OTHER: small_place.extract(OTHER).rows_out}
    assert AuditLog(settings.audit_dir).verify() is None
