import datetime as dt
import hashlib
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.audit import AuditLog
from pipelines.contracts import load_contracts
from pipelines.hub.ingest import receive_inbox
from pipelines.settings import REPO_ROOT
from pipelines.warehouse import connect

NOW = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)


def _receive(settings, contracts_dir=REPO_ROOT / "contracts", now=NOW):
    contracts, problems = load_contracts(contracts_dir)
    con = connect(settings)
    try:
        receipts = receive_inbox(settings, con, contracts, {p.stem: e for p, e in problems.items()},
                                 AuditLog(settings.audit_dir), now=now)
        landed = {r.dataset: con.execute(f"SELECT count(*) FROM landing.{r.dataset}").fetchone()[0]
                  for r in receipts if r.status == "accepted"}
    finally:
        con.close()
    return {r.file_name: r for r in receipts}, landed


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rewrite(source, target, mutate_table=None, mutate_header=None):
    """Copy an extract, changing its table and/or its header, as a tampering partner might."""
    table = pq.read_table(source)
    header = json.loads(table.schema.metadata[b"placelink"])
    if mutate_table:
        table = mutate_table(table)
    if mutate_header:
        mutate_header(header)
    table = table.replace_schema_metadata({b"placelink": json.dumps(header).encode()})
    pq.write_table(table, target)
    return target


def test_valid_extracts_are_accepted_and_vaulted(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path)
    receipts, landed = _receive(settings)
    assert {r.status for r in receipts.values()} == {"accepted"} and len(receipts) == 7
    for prepared in small_place.extracts:
        assert landed[prepared.header.dataset] == prepared.rows_out
    assert not list(settings.inbox.iterdir())
    assert len(list(settings.vault.rglob("*.parquet"))) == 7
    events = [e["event"] for e in AuditLog(settings.audit_dir).events()]
    assert events.count("extract_accepted") == 7 and AuditLog(settings.audit_dir).verify() is None


@pytest.mark.parametrize("name, make, check", [
    ("not an extract.parquet", lambda src, dst: dst.write_bytes(b"\x89PNG\r\n\x1a\n not a table"), "format"),
    ("empty.parquet", lambda src, dst: dst.write_bytes(b""), "format"),
    ("truncated.parquet", lambda src, dst: dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2]), "format"),
    ("unknown contract.parquet",
     lambda src, dst: _rewrite(src, dst, mutate_header=lambda h: h.update(contract_id="no-such-contract")), "contract"),
    ("other partner.parquet",
     lambda src, dst: _rewrite(src, dst, mutate_header=lambda h: h.update(partner_id="council")), "contract"),
    ("extra column.parquet",
     lambda src, dst: _rewrite(src, dst, mutate_table=lambda t: t.append_column(
         "home_address", pa.array(["x"] * t.num_rows))), "columns"),
    ("row count lies.parquet",
     lambda src, dst: _rewrite(src, dst, mutate_header=lambda h: h.update(row_count=h["row_count"] + 5)), "row count"),
    ("wrong type.parquet",
     lambda src, dst: _rewrite(src, dst, mutate_table=lambda t: t.set_column(
         t.schema.get_field_index("arrival_date"), "arrival_date",
         pa.array(["2024-01-01"] * t.num_rows))), "types"),
    ("naïve café extract ✓.parquet", lambda src, dst: dst.write_bytes(b"garbage"), "format"),
])
def test_bad_deliveries_are_held_unchanged_with_a_reason(small_place, tmp_path, name, make, check):
    settings = small_place.stage_hub(tmp_path, datasets=["emergency_admissions"])
    bad = settings.inbox / name
    make(small_place.extract("ae_attendances").extract_path, bad)
    before = _sha(bad)
    receipts, landed = _receive(settings)
    held = settings.quarantine / name
    assert receipts[name].status == "quarantined"
    assert _sha(held) == before  # byte for byte
    reason = json.loads((settings.quarantine / f"{name}.reason.json").read_text())
    assert reason["check"] == check and reason["action"]
    assert name in receipts[name].reason and "rejected" in receipts[name].reason
    # the other partner's file carried on
    assert landed == {"emergency_admissions": small_place.extract("emergency_admissions").rows_out}
    assert [e["check"] for e in AuditLog(settings.audit_dir).events() if e["event"] == "extract_quarantined"] == [check]


def test_replayed_extract_is_held(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=["mental_health_referrals"])
    _receive(settings)
    shutil.copy2(small_place.extract("mental_health_referrals").extract_path, settings.inbox / "again.parquet")
    receipts, _ = _receive(settings)
    assert receipts["again.parquet"].status == "quarantined" and "replay" in receipts["again.parquet"].reason


def test_extract_under_a_suspended_contract_is_held(small_place, tmp_path):
    contracts_dir = tmp_path / "contracts"
    shutil.copytree(REPO_ROOT / "contracts", contracts_dir)
    vcs = contracts_dir / "vcs-family-support.yaml"
    vcs.write_text(vcs.read_text().replace("approval_status: approved", "approval_status: suspended"))
    settings = small_place.stage_hub(tmp_path / "home", datasets=["family_support_enrolments"])
    receipts, landed = _receive(settings, contracts_dir)
    (receipt,) = receipts.values()
    assert receipt.status == "quarantined" and "suspended" in receipt.reason and landed == {}


def test_no_token_values_in_audit_or_reasons(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path)
    (settings.inbox / "junk.parquet").write_bytes(b"junk")
    _receive(settings)
    tokens = set(pq.read_table(small_place.extract("ae_attendances").extract_path,
                               columns=["record_token", "nhs_number_token"]).to_pylist()[0].values())
    written = (settings.audit_dir / "audit.jsonl").read_text() + "".join(
        p.read_text() for p in settings.quarantine.glob("*.json"))
    assert not any(t and t in written for t in tokens)
