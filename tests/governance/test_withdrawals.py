"""Withdrawals after delivery: the partner's signed list of record tokens removes those records and
everything derived from them, the next publication changes, the audit log says so in counts, and
an erased person's key is never issued again."""

import datetime as dt
import re
import shutil

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from assets.resources import PlacelinkResource
from pipelines.cli import main
from pipelines.core.warehouse import connect
from pipelines.core.warehouse_schema import migrate
from pipelines.exchange.envelope import seal
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import hub_audit_log
from pipelines.hub.ingest import receive_inbox
from pipelines.linkage.person_keys import assign_person_keys, forget_identities
from pipelines.orchestration.code_location import defs
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.withdraw import prepare_withdrawal
from pipelines.tooling.synth.study import DELIVERED_AT

VCS, ENROLMENTS = "vcs-family-support", "family_support_enrolments"
WITHDRAWN = 15  # enrolment records whose families withdrew their consent after delivery


def _query(path, sql):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _programme_people(settings) -> int:
    """People in the programme cohort, as published (all ages, A&E, before)."""
    return _query(
        settings.published,
        "SELECT people FROM outcomes_before_after WHERE cohort = 'programme' "
        "AND outcome = 'ae_attendance' AND age_band = 'All ages' "
        "AND period = 'before'",
    )[0][0]


def _partner_files(small_place, folder):
    """What the charity holds: its signing key and the hub's public key, as files."""
    folder.mkdir(parents=True, exist_ok=True)
    small_place.signing_keys["vcs"].save(folder / "vcs.key")
    small_place.hub_key.public.save(folder / "hub.pub")
    ids = pl.read_csv(small_place.place / "raw" / "vcs" / f"{ENROLMENTS}.csv", infer_schema=False)[
        "record_id"
    ]
    (folder / "withdraw.csv").write_text(
        "record_id\n" + "\n".join(ids.head(WITHDRAWN).to_list()) + "\nVCS99999999\n"
    )  # one id the charity never sent
    return folder


@pytest.fixture(scope="module")
def withdrawn_hub(small_place, published_small_hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("withdrawals")
    settings = published_small_hub.copy(root / "home")  # after a whole run of the small place
    resource = PlacelinkResource(home=str(settings.home), contracts_dir=str(settings.contracts_dir))
    before = {
        "programme": _programme_people(settings),
        "landed": _query(settings.warehouse, f"SELECT count(*) FROM landing.{ENROLMENTS}")[0][0],
    }

    # The charity withdraws the records with its partner kit, from its own lookup.
    partner = _partner_files(small_place, root / "charity")
    lookup = small_place.extract(ENROLMENTS).lookup_path
    shutil.copytree(lookup.parent, partner / "outbox" / "partner-only")
    result = CliRunner().invoke(
        main,
        [
            "partner",
            "withdraw",
            "--contract",
            str(small_place.contracts[VCS].path),
            "--dataset",
            ENROLMENTS,
            "--record-ids",
            str(partner / "withdraw.csv"),
            "--lookups",
            str(partner / "outbox"),
            "--reason",
            "opt_out",
            "--out",
            str(partner / "outbox"),
            "--signing-key",
            str(partner / "vcs.key"),
            "--hub-key",
            str(partner / "hub.pub"),
        ],
    )
    assert result.exit_code == 0, result.output
    (envelope,) = (partner / "outbox").glob("*withdrawal*.plx")
    tokens = set(
        pq.read_table(next((partner / "outbox" / "partner-only").glob("*withdrawal*.parquet")))
        .column("record_token")
        .to_pylist()
    )
    shutil.copy2(envelope, settings.inbox / envelope.name)
    assert dg.materialize(list(defs.assets), resources={"placelink": resource}).success
    return settings, before, tokens, result.output


def test_the_partner_kit_sends_tokens_found_in_its_own_lookup(withdrawn_hub):
    _, _, tokens, output = withdrawn_hub
    assert len(tokens) == WITHDRAWN and all(re.fullmatch(r"[0-9a-f]{32,}", t) for t in tokens)
    assert f"({WITHDRAWN} record(s), reason opt_out" in output
    assert "1 record id(s) were in none of your lookups" in output


def test_a_withdrawal_removes_the_records_and_every_row_derived_from_them(withdrawn_hub):
    settings, before, tokens, _ = withdrawn_hub
    landed = _query(settings.warehouse, f"SELECT count(*) FROM landing.{ENROLMENTS}")[0][0]
    assert landed == before["landed"] - WITHDRAWN
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        con.execute("CREATE TEMP TABLE listed (record_token VARCHAR)")
        con.executemany("INSERT INTO listed VALUES (?)", [[t] for t in tokens])
        for table in (f"landing.{ENROLMENTS}", "hub.record_identity", "hub.record_person"):
            assert (
                con.execute(
                    f"SELECT count(*) FROM {table} WHERE record_token IN (SELECT * FROM listed)"
                ).fetchone()[0]
                == 0
            ), table
        assert con.execute("SELECT count(*) FROM hub.withdrawn_records").fetchone()[0] == WITHDRAWN
        kinds = con.execute(
            "SELECT kind, count(*) FROM hub.deliveries WHERE status = 'accepted' GROUP BY 1 "
            "ORDER BY 1"
        ).fetchall()
        assert kinds == [("extract", 7), ("withdrawal", 1)]
    finally:
        con.close()


def test_the_next_publication_changes_and_lists_no_withdrawal_as_an_extract(withdrawn_hub):
    settings, before, _, _ = withdrawn_hub
    assert _programme_people(settings) < before["programme"]
    lineage_ids = {
        row[0] for row in _query(settings.published, "SELECT DISTINCT extract_id FROM _lineage")
    }
    withdrawals = {
        row[0]
        for row in _query(
            settings.warehouse, "SELECT extract_id FROM hub.deliveries WHERE kind = 'withdrawal'"
        )
    }
    assert withdrawals and not (lineage_ids & withdrawals)


def test_the_audit_log_records_the_withdrawal_in_counts_only(withdrawn_hub):
    settings, _, tokens, _ = withdrawn_hub
    events = list(hub_audit_log(settings).events())
    (withdrawal,) = [e for e in events if e["event"] == "records_withdrawn"]
    assert withdrawal["contract"] == VCS and withdrawal["reason"] == "opt_out"
    assert (
        withdrawal["records_listed"] == WITHDRAWN
        and withdrawal["landing_rows_deleted"] == WITHDRAWN
    )
    assert withdrawal["derived_rows_deleted"] == 2 * WITHDRAWN  # record_identity and record_person
    assert withdrawal["run_id"] and withdrawal["actor"]
    text = settings.audit_dir.joinpath("audit.jsonl").read_text()
    assert not any(t in text for t in tokens)
    shown = CliRunner().invoke(
        main, ["audit", "show", "--contract", VCS], env={"PLACELINK_HOME": str(settings.home)}
    )
    assert "records_withdrawn" in shown.output
    register = (settings.reports / "ig_register.html").read_text()
    assert f"1 withdrawal list ({WITHDRAWN} records withdrawn)" in register


def test_a_later_delivery_does_not_bring_withdrawn_records_back(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "home", datasets=[ENROLMENTS])
    contracts, _ = load_hub_contracts(settings)
    ids = pl.read_csv(small_place.place / "raw" / "vcs" / f"{ENROLMENTS}.csv", infer_schema=False)[
        "record_id"
    ]
    prepared = prepare_withdrawal(
        contracts[VCS],
        ENROLMENTS,
        ids.head(5),
        [small_place.extract(ENROLMENTS).lookup_path],
        tmp_path / "charity",
        small_place.signing_keys["vcs"],
        small_place.hub_key.public,
        "erasure",
        DELIVERED_AT,
    )
    shutil.copy2(
        prepared.envelope_path, settings.inbox / "zz-withdrawal.plx"
    )  # after the extract, by name
    # the same records sent again later in a corrected extract (a new envelope)
    small_place.reseal(ENROLMENTS, tmp_path / "resent.plx", mutate_table=lambda t: t.slice(0))
    with connect(settings) as con:
        receipts = receive_inbox(
            settings,
            con,
            contracts,
            {},
            hub_audit_log(settings),
            now=dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC),
            erase_identities=forget_identities,
        )
        assert [r.kind for r in receipts] == ["extract", "withdrawal"] and {
            r.status for r in receipts
        } == {"accepted"}
        after_withdrawal = con.execute(f"SELECT count(*) FROM landing.{ENROLMENTS}").fetchone()[0]
        shutil.copy2(tmp_path / "resent.plx", settings.inbox / "resent.plx")
        (again,) = receive_inbox(
            settings,
            con,
            contracts,
            {},
            hub_audit_log(settings),
            now=dt.datetime(2026, 11, 3, 9, tzinfo=dt.UTC),
            erase_identities=forget_identities,
        )
        assert again.status == "accepted", again.reason
        assert (
            con.execute(f"SELECT count(*) FROM landing.{ENROLMENTS}").fetchone()[0]
            == after_withdrawal
        )
    accepted = [e for e in hub_audit_log(settings).events() if e["event"] == "extract_accepted"]
    assert accepted[-1]["withdrawn_rows_left_out"] == 5


def test_a_withdrawal_list_is_verified_like_an_envelope(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path / "home", datasets=[])
    contracts, _ = load_hub_contracts(settings)
    settings.inbox.mkdir(parents=True, exist_ok=True)

    def sealed(name, table, signing_key):
        source = tmp_path / f"{name}.parquet"
        pq.write_table(table, source)
        seal(
            source,
            settings.inbox / f"{name}.plx",
            contract_id=VCS,
            contract_version="1.0.0",
            partner_id="vcs",
            dataset=ENROLMENTS,
            reporting_period="2026-11",
            created_at="2026-11-02T09:00:00+00:00",
            row_count=table.num_rows,
            signing_key=signing_key,
            hub_key=small_place.hub_key.public,
            kind="withdrawal",
        )

    tokens = pa.table({"record_token": ["ab" * 16]})
    sealed("forged", tokens, small_place.signing_keys["council"].__class__.generate("vcs"))
    sealed(
        "with ids",
        pa.table({"record_token": ["ab" * 16], "record_id": ["VCS00000001"]}),
        small_place.signing_keys["vcs"],
    )
    with connect(settings) as con:
        receipts = {
            r.file_name: r
            for r in receive_inbox(
                settings,
                con,
                contracts,
                {},
                hub_audit_log(settings),
                erase_identities=forget_identities,
            )
        }
    assert (
        receipts["forged.plx"].status == "quarantined"
        and "check 'signature'" in receipts["forged.plx"].reason
    )
    assert (
        receipts["with ids.plx"].status == "quarantined"
        and "check 'columns'" in receipts["with ids.plx"].reason
    )
    assert "record_id" in receipts["with ids.plx"].reason


def test_the_partner_kit_refuses_a_list_with_nothing_to_withdraw(small_place, tmp_path):
    with pytest.raises(PartnerKitError, match="none of the 1 record id"):
        prepare_withdrawal(
            small_place.contracts[VCS],
            ENROLMENTS,
            pl.Series(["VCS99999999"]),
            [small_place.extract(ENROLMENTS).lookup_path],
            tmp_path,
            small_place.signing_keys["vcs"],
            small_place.hub_key.public,
            "erasure",
            DELIVERED_AT,
        )


def test_an_erased_persons_key_is_never_issued_again(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    now = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    migrate(con, now)
    clusters = pl.DataFrame({"identity_id": ["a1", "a2", "b1"], "cluster_id": ["x", "x", "y"]})
    assign_person_keys(con, clusters, now)
    keys = dict(con.execute("SELECT identity_id, person_key FROM hub.person_keys").fetchall())
    erased = keys["b1"]
    # every record of person b is withdrawn; person a loses one of two identities and keeps their key
    assert forget_identities(con, ["b1", "a2"], now) == 1
    retired = con.execute(
        "SELECT retired_at FROM hub.person_key_register WHERE person_key = ?", [erased]
    ).fetchone()
    assert retired[0] is not None
    # b's identity comes back (a new record with the same identifiers) in the very next run
    assign_person_keys(
        con, pl.DataFrame({"identity_id": ["a1", "b1"], "cluster_id": ["p", "q"]}), now
    )
    after = dict(con.execute("SELECT identity_id, person_key FROM hub.person_keys").fetchall())
    assert after["a1"] == keys["a1"] and after["b1"] != erased
    assert (
        con.execute("SELECT count(*) FROM hub.person_key_events WHERE event = 'erased'").fetchone()[
            0
        ]
        == 1
    )
    con.close()
