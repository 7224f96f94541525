import dataclasses
import datetime as dt
import hashlib
import json
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core.warehouse import connect
from pipelines.exchange.keys import HubKey
from pipelines.governance.approvals import hub_approver_registry
from pipelines.governance.audit import AuditLog
from pipelines.governance.contracts import load_contracts
from pipelines.hub.ingest import receive_inbox
from pipelines.hub.quarantine import release
from pipelines.linkage.person_keys import forget_identities

NOW = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)


_loaded = {}


def _contracts(folder, approvers):
    """load_contracts (signatures checked against the hub's approver registry), cached on the
    files' contents (validation is the slow part of a test)."""
    key = (str(folder), tuple((p.name, p.read_bytes()) for p in sorted(folder.glob("*.yaml"))))
    if key not in _loaded:
        _loaded[key] = load_contracts(folder, approvers)
    return _loaded[key]


def _receive(settings, contracts_dir=None, now=NOW):
    contracts, problems = _contracts(
        contracts_dir or settings.contracts_dir, hub_approver_registry(settings)
    )
    con = connect(settings)
    try:
        receipts = receive_inbox(
            settings,
            con,
            contracts,
            {p.stem: e for p, e in problems.items()},
            AuditLog(settings.audit_dir),
            now=now,
            erase_identities=forget_identities,
        )
        landed = {
            r.dataset: con.execute(f"SELECT count(*) FROM landing.{r.dataset}").fetchone()[0]
            for r in receipts
            if r.status == "accepted"
        }
    finally:
        con.close()
    return {r.file_name: r for r in receipts}, landed


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reseal(place, dataset, target, mutate_table=None, signing_key=None, hub_key=None, **header):
    return place.reseal(dataset, target, mutate_table, signing_key, hub_key, **header)


def _flip(src, dst, offset):
    data = bytearray(src.read_bytes())
    data[offset] ^= 0x01
    dst.write_bytes(bytes(data))


def _flip_in_header(src, dst):
    """Change one hex digit of the signed content hash to another hex digit, so the header still has the right
    shape (a flipped bit can turn 'a' into '`', which the shape check rightly calls a format fault instead)."""
    data = bytearray(src.read_bytes())
    at = data.index(b'"content_sha256":"') + len(b'"content_sha256":"') + 3
    data[at] = ord("1") if data[at] != ord("1") else ord("2")
    dst.write_bytes(bytes(data))


def _with_clear_identifiers(table):
    n = table.num_rows
    nhs = pa.array(
        ["9434765919"] * n
    )  # a valid modulus-11 NHS number, as a careless partner might send
    return table.set_column(
        table.schema.get_field_index("nhs_number_token"), "nhs_number_token", nhs
    )


def test_valid_envelopes_are_accepted_and_vaulted_encrypted(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path)
    first = next(settings.inbox.iterdir())
    first.rename(settings.inbox / "Wrexham café extract ✓.plx")  # spaces and unicode are fine
    receipts, landed = _receive(settings)
    assert {r.status for r in receipts.values()} == {"accepted"} and len(receipts) == 7
    assert "Wrexham café extract ✓.plx" in receipts
    for prepared in small_place.extracts:
        assert landed[prepared.header.dataset] == prepared.rows_out
    assert not list(settings.inbox.iterdir())
    assert not list(settings.home.rglob("*.parquet"))  # nothing decrypted was written to disk
    vaulted = sorted(settings.vault.rglob("*.plx"))
    assert len(vaulted) == 7 and not list(settings.vault.rglob("*.parquet"))
    sent = {_sha(e.envelope_path) for e in small_place.envelopes}
    assert {_sha(p) for p in vaulted} == sent  # kept exactly as received: encrypted
    events = [e["event"] for e in AuditLog(settings.audit_dir).events()]
    assert events.count("extract_accepted") == 7 and AuditLog(settings.audit_dir).verify() is None


def _other_hub_key():
    return HubKey.generate("X25519").public


@pytest.mark.parametrize(
    "name, make, check",
    [
        (
            "not an envelope.plx",
            lambda p, dst: dst.write_bytes(b"\x89PNG\r\n\x1a\n not a table"),
            "format",
        ),
        ("empty.plx", lambda p, dst: dst.write_bytes(b""), "format"),
        (
            "truncated.plx",
            lambda p, dst: dst.write_bytes(
                p.envelope("ae_attendances").envelope_path.read_bytes()[:-500]
            ),
            "decryption",
        ),
        (
            "flipped ciphertext.plx",
            lambda p, dst: _flip(p.envelope("ae_attendances").envelope_path, dst, -200),
            "decryption",
        ),
        (
            "flipped header.plx",
            lambda p, dst: _flip_in_header(p.envelope("ae_attendances").envelope_path, dst),
            "signature",
        ),
        (
            "signed by another partner.plx",
            lambda p, dst: _reseal(p, "ae_attendances", dst, signing_key=p.signing_keys["council"]),
            "signature",
        ),
        (
            "for another hub key.plx",
            lambda p, dst: _reseal(p, "ae_attendances", dst, hub_key=_other_hub_key()),
            "decryption",
        ),
        (
            "unknown contract.plx",
            lambda p, dst: _reseal(p, "ae_attendances", dst, contract_id="no-such-contract"),
            "contract",
        ),
        (
            "other partner.plx",
            lambda p, dst: _reseal(p, "ae_attendances", dst, partner_id="council"),
            "contract",
        ),
        (
            "extra column.plx",
            lambda p, dst: _reseal(
                p,
                "ae_attendances",
                dst,
                mutate_table=lambda t: t.append_column(
                    "home_address", pa.array(["x"] * t.num_rows)
                ),
            ),
            "columns",
        ),
        (
            "row count lies.plx",
            lambda p, dst: _reseal(
                p,
                "ae_attendances",
                dst,
                row_count=p.envelope("ae_attendances").envelope.row_count + 5,
            ),
            "row count",
        ),
        (
            "wrong type.plx",
            lambda p, dst: _reseal(
                p,
                "ae_attendances",
                dst,
                mutate_table=lambda t: t.set_column(
                    t.schema.get_field_index("arrival_date"),
                    "arrival_date",
                    pa.array(["2024-01-01"] * t.num_rows),
                ),
            ),
            "types",
        ),
        (
            "clear identifiers.plx",
            lambda p, dst: _reseal(p, "ae_attendances", dst, mutate_table=_with_clear_identifiers),
            "identifiers",
        ),
        ("naïve café extract ✓.plx", lambda p, dst: dst.write_bytes(b"garbage"), "format"),
    ],
)
def test_bad_deliveries_are_held_unchanged_with_a_reason(small_place, tmp_path, name, make, check):
    settings = small_place.stage_hub(tmp_path, datasets=["emergency_admissions"])
    bad = settings.inbox / name
    make(small_place, bad)
    before = _sha(bad)
    receipts, landed = _receive(settings)
    held = settings.quarantine / name
    assert receipts[name].status == "quarantined"
    assert _sha(held) == before  # byte for byte
    reason = json.loads((settings.quarantine / f"{name}.reason.json").read_text())
    assert reason["check"] == check and reason["action"] and reason["expected"] and reason["found"]
    assert name in receipts[name].reason and "rejected" in receipts[name].reason
    # the other partner's file carried on
    assert landed == {"emergency_admissions": small_place.extract("emergency_admissions").rows_out}
    assert [
        e["check"]
        for e in AuditLog(settings.audit_dir).events()
        if e["event"] == "extract_quarantined"
    ] == [check]


def test_clear_identifiers_are_reported_by_column_and_count_never_value(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=[])
    _reseal(
        small_place,
        "ae_attendances",
        settings.inbox / "careless.plx",
        mutate_table=_with_clear_identifiers,
    )
    receipts, _ = _receive(settings)
    rows = small_place.extract("ae_attendances").rows_out
    reason = receipts["careless.plx"].reason
    assert f"column 'nhs_number_token': {rows} value(s) that look like NHS numbers" in reason
    written = (settings.quarantine / "careless.plx.reason.json").read_text() + (
        settings.audit_dir / "audit.jsonl"
    ).read_text()
    assert "9434765919" not in written


def test_hub_key_passphrase_missing_holds_files_until_given(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=["family_support_enrolments"])
    settings.hub_key_path.unlink()
    small_place.hub_key.save(settings.hub_key_path, b"hub passphrase")
    receipts, _ = _receive(settings)
    (name,) = receipts
    reason = json.loads((settings.quarantine / f"{name}.reason.json").read_text())
    assert reason["check"] == "decryption" and "passphrase-protected" in reason["found"]
    with connect(settings) as con:
        claimed = con.execute(
            "SELECT contract_id, partner_id, dataset FROM hub.deliveries"
        ).fetchall()
    assert claimed == [("vcs-family-support", "vcs", "family_support_enrolments")]
    release(settings.quarantine, name, settings.inbox, AuditLog(settings.audit_dir))
    receipts, landed = _receive(dataclasses.replace(settings, hub_key_passphrase=b"hub passphrase"))
    assert receipts[name].status == "accepted" and landed["family_support_enrolments"] > 0


def test_contract_without_a_registered_key_holds_its_extracts(small_place, tmp_path):
    contracts_dir = tmp_path / "contracts"
    shutil.copytree(small_place.contracts_dir, contracts_dir)
    vcs = contracts_dir / "vcs-family-support.yaml"
    vcs.write_text(
        re.sub(r"signing_key_fingerprint: \S+", "signing_key_fingerprint: null", vcs.read_text())
    )
    settings = small_place.stage_hub(tmp_path / "home", datasets=["family_support_enrolments"])
    receipts, landed = _receive(settings, contracts_dir)
    (receipt,) = receipts.values()
    assert (
        receipt.status == "quarantined"
        and "names no signing key" in receipt.reason
        and landed == {}
    )


def test_held_extract_is_released_after_the_contract_is_fixed(small_place, tmp_path):
    contracts_dir = tmp_path / "contracts"
    shutil.copytree(small_place.contracts_dir, contracts_dir)
    vcs = contracts_dir / "vcs-family-support.yaml"
    good = vcs.read_text()
    vcs.write_text(good.replace("approval_status: approved", "approval_status: suspended"))
    settings = small_place.stage_hub(tmp_path / "home", datasets=["family_support_enrolments"])
    (name,) = _receive(settings, contracts_dir)[0]
    vcs.write_text(good)  # the IG officer approves the agreement again
    released = release(settings.quarantine, name, settings.inbox, AuditLog(settings.audit_dir))
    assert released == settings.inbox / name and not (settings.quarantine / name).exists()
    receipts, landed = _receive(settings, contracts_dir)
    assert receipts[name].status == "accepted" and landed["family_support_enrolments"] > 0
    assert "extract_released" in {e["event"] for e in AuditLog(settings.audit_dir).events()}


def test_replayed_extract_is_held(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=["mental_health_referrals"])
    _receive(settings)
    shutil.copy2(
        small_place.envelope("mental_health_referrals").envelope_path, settings.inbox / "again.plx"
    )
    receipts, _ = _receive(settings)
    assert receipts["again.plx"].status == "quarantined"
    assert (
        json.loads((settings.quarantine / "again.plx.reason.json").read_text())["check"] == "replay"
    )


def test_same_content_in_a_new_envelope_is_held_as_a_probable_duplicate(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=["mental_health_referrals"])
    _receive(settings)
    _reseal(small_place, "mental_health_referrals", settings.inbox / "resent.plx")
    receipts, _ = _receive(settings)
    reason = json.loads((settings.quarantine / "resent.plx.reason.json").read_text())
    assert reason["check"] == "duplicate" and "probable duplicate" in reason["found"]


def test_extract_under_a_suspended_contract_is_held(small_place, tmp_path):
    contracts_dir = tmp_path / "contracts"
    shutil.copytree(small_place.contracts_dir, contracts_dir)
    vcs = contracts_dir / "vcs-family-support.yaml"
    vcs.write_text(
        vcs.read_text().replace("approval_status: approved", "approval_status: suspended")
    )
    settings = small_place.stage_hub(tmp_path / "home", datasets=["family_support_enrolments"])
    receipts, landed = _receive(settings, contracts_dir)
    (receipt,) = receipts.values()
    assert receipt.status == "quarantined" and "suspended" in receipt.reason and landed == {}


def test_no_token_values_in_audit_or_reasons(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path)
    (settings.inbox / "junk.plx").write_bytes(b"junk")
    _receive(settings)
    tokens = set(
        pq.read_table(
            small_place.extract("ae_attendances").extract_path,
            columns=["record_token", "nhs_number_token"],
        )
        .to_pylist()[0]
        .values()
    )
    written = (settings.audit_dir / "audit.jsonl").read_text() + "".join(
        p.read_text() for p in settings.quarantine.glob("*.json")
    )
    assert not any(t and t in written for t in tokens)


def test_a_replay_and_a_duplicate_in_the_same_inbox_are_held_although_opened_ahead(
    small_place, tmp_path
):
    # Ingest opens each file while the one before it is validated, before that one is accepted:
    # the copies must still be held as if the files were taken one after the other.
    settings = small_place.stage_hub(tmp_path, datasets=["mental_health_referrals"])
    original = small_place.envelope("mental_health_referrals").envelope_path.name
    shutil.copy2(settings.inbox / original, settings.inbox / "zz-again.plx")
    _reseal(small_place, "mental_health_referrals", settings.inbox / "zz-resent.plx")
    receipts, landed = _receive(settings)
    assert receipts[original].status == "accepted"
    assert (
        landed["mental_health_referrals"] == small_place.extract("mental_health_referrals").rows_out
    )
    checks = {
        name: json.loads((settings.quarantine / f"{name}.reason.json").read_text())["check"]
        for name in ("zz-again.plx", "zz-resent.plx")
    }
    assert checks == {"zz-again.plx": "replay", "zz-resent.plx": "duplicate"}
    # The audit trail still reads file by file.
    events = [
        (e["event"], e.get("file"))
        for e in AuditLog(settings.audit_dir).events()
        if e["event"].startswith("extract_")
    ]
    assert events == [
        ("extract_received", original),
        ("extract_accepted", original),
        ("extract_received", "zz-again.plx"),
        ("extract_quarantined", "zz-again.plx"),
        ("extract_received", "zz-resent.plx"),
        ("extract_quarantined", "zz-resent.plx"),
    ]


def test_the_next_delivery_is_validated_while_one_lands_with_the_verdicts_of_one_by_one(
    small_place, tmp_path, monkeypatch
):
    # While a delivery lands, the worker validates the next one if that cannot change its
    # verdict: another dataset's delivery. A delivery of the dataset that is landing waits,
    # since its size is checked against the one landing (a twentieth of it: held).
    import pipelines.hub.ingest as ingest

    settings = small_place.stage_hub(
        tmp_path, datasets=["ae_attendances", "mental_health_referrals"]
    )
    ae = small_place.envelope("ae_attendances").envelope_path.name
    mh = small_place.envelope("mental_health_referrals").envelope_path.name
    assert sorted([ae, mh]) == [ae, mh]  # the inbox is taken in name order
    _reseal(
        small_place,
        "mental_health_referrals",
        settings.inbox / "zz-mh-small.plx",
        lambda t: t.slice(0, t.num_rows // 20),
    )
    order = []
    start, land = ingest.start_quality_check, ingest._land
    monkeypatch.setattr(
        ingest,
        "start_quality_check",
        lambda con, table, header, *a, **k: (
            order.append(("check", header["dataset"], header["row_count"]))
            or start(con, table, header, *a, **k)
        ),
    )
    monkeypatch.setattr(
        ingest,
        "_land",
        lambda con, opened, *a: (
            order.append(("land", opened.header["dataset"], opened.row_count))
            or land(con, opened, *a)
        ),
    )
    receipts, landed = _receive(settings)

    mh_rows = small_place.extract("mental_health_referrals").rows_out
    ae_rows = small_place.extract("ae_attendances").rows_out
    assert order == [
        ("check", "ae_attendances", ae_rows),
        ("check", "mental_health_referrals", mh_rows),  # started before A&E landed
        ("land", "ae_attendances", ae_rows),
        ("land", "mental_health_referrals", mh_rows),
        ("check", "mental_health_referrals", mh_rows // 20),  # after its dataset landed
    ]
    assert receipts[ae].status == receipts[mh].status == "accepted"
    assert receipts["zz-mh-small.plx"].status == "quarantined"
    assert "row count: close to the previous delivery" in receipts["zz-mh-small.plx"].reason
    assert landed == {"ae_attendances": ae_rows, "mental_health_referrals": mh_rows}


@pytest.mark.parametrize("dataset", ["ae_attendances", "school_attendance"])
def test_a_large_delivery_lands_row_group_by_row_group_as_a_small_one_lands_whole(
    small_place, dataset, monkeypatch
):
    # A delivery too large to keep is read again for each statement that lands it, one row group
    # at a time (issue 24: a 10M-person place). Whatever it replaces or leaves out, the landing
    # table must be the one landing it whole gives.
    import duckdb

    import pipelines.hub.ingest as ingest
    from pipelines.core.warehouse_schema import WITHDRAWN_RECORDS

    prepared = small_place.extract(dataset)
    contracts, _ = _contracts(small_place.contracts_dir, None)
    contract = next(c for c in contracts.values() if dataset in c.datasets)
    table = pq.read_table(prepared.extract_path).replace_schema_metadata(None)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=max(1, table.num_rows // 7))
    parquet = sink.getvalue().to_pybytes()
    tokens = table["record_token"].to_pylist()
    header = {"dataset": dataset, "extract_id": "e2"}

    def landed(keep: int) -> list[tuple]:
        monkeypatch.setattr(ingest, "KEEP_ROWS_BYTES", keep)
        monkeypatch.setattr(ingest, "PART_ROWS", 1)  # each row group a part
        con = duckdb.connect()
        con.execute("CREATE SCHEMA landing; CREATE SCHEMA hub")
        con.execute(WITHDRAWN_RECORDS)
        ingest.ensure_landing_tables(con, {contract.id: contract})
        # An earlier delivery of every other record (none of them withdrawn since), landed whole:
        # the new delivery replaces those it holds again.
        first = table.filter(pa.array([i % 2 == 0 and i % 5 != 1 for i in range(table.num_rows)]))
        earlier = pa.BufferOutputStream()
        pq.write_table(first, earlier)
        earlier = ingest.DeliveryRows(earlier.getvalue(), [])
        earlier.keep(list(earlier.parts()))
        ingest._land(
            con, ingest.OpenedExtract({**header, "extract_id": "e1"}, contract, rows=earlier), NOW
        )
        con.executemany(
            "INSERT INTO hub.withdrawn_records VALUES ('c', ?, ?, 'w', 'opt_out', TIMESTAMP '2026-10-02')",
            [[dataset, t] for t in tokens[1::5]],
        )
        rows = ingest.DeliveryRows(
            parquet,
            ingest.dictionary_encoded_columns(
                pq.ParquetFile(pa.BufferReader(parquet)).metadata, table.schema
            ),
        )
        parts = list(rows.parts())
        if keep > 1:
            rows.keep(parts)
        assert (rows.kept is None) == (keep == 1) and (len(parts) >= 7 or keep > 1)
        opened = ingest.OpenedExtract(header, contract, rows=rows)
        withdrawn = ingest._land(con, opened, NOW)
        assert withdrawn == len(tokens[1::5])
        result = con.execute(
            f"SELECT * EXCLUDE (_received_at) FROM landing.{dataset} ORDER BY ALL"
        ).fetchall()
        con.close()
        return result

    whole, streamed = landed(2**40), landed(1)
    assert whole == streamed
    # Every earlier row replaced, not doubled; the withdrawn records left out.
    extract_ids = [row[-1] for row in whole]
    assert extract_ids.count("e2") == len(whole) == len(tokens) - len(tokens[1::5])
