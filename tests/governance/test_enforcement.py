"""Enforcement at arrival and at linkage: only agreements in force count."""

import datetime as dt

from pipelines.core.warehouse import connect
from pipelines.governance.audit import AuditLog
from pipelines.governance.contracts import ContractError
from pipelines.governance.flows import flow_statuses, flows_in_use
from pipelines.hub.ingest import receive_inbox
from pipelines.linkage.person_keys import forget_identities
from pipelines.linkage.person_records import landed_datasets


def test_flow_status_follows_approval_and_the_validity_window(small_place):
    contracts = small_place.contracts
    problems = {"zz-draft": ContractError("zz-draft.yaml: not valid YAML at line 2")}
    on_time = flow_statuses(contracts, problems, dt.date(2026, 11, 1))
    assert {k: (s.status, s.in_use) for k, s in on_time.items()} == {
        "council-place-services": ("approved", True),
        "nhs-acute-mental-health": ("approved", True),
        "vcs-family-support": ("approved", True),
        "zz-draft": ("invalid", False),
    }
    assert on_time["zz-draft"].file == "zz-draft.yaml"
    late = flow_statuses(contracts, {}, dt.date(2029, 4, 1))
    assert {s.status for s in late.values()} == {"expired"} and not any(
        s.in_use for s in late.values()
    )
    early = flow_statuses(contracts, {}, dt.date(2026, 3, 1))
    assert {s.status for s in early.values()} == {"not_yet_valid"}
    assert flows_in_use(contracts, dt.date(2029, 4, 1)) == {}


def test_extract_arriving_after_its_agreement_expired_is_held(small_place, tmp_path):
    settings = small_place.stage_hub(
        tmp_path, datasets=["family_support_enrolments", "csc_referrals"]
    )
    with connect(settings) as con:
        receipts = receive_inbox(
            settings,
            con,
            small_place.contracts,
            {},
            AuditLog(settings.audit_dir),
            now=dt.datetime(2029, 4, 1, 9, 0, tzinfo=dt.UTC),
            erase_identities=forget_identities,
        )
    assert {r.status for r in receipts} == {"quarantined"}
    assert all("expired on 2029-03-31" in r.reason for r in receipts)


def test_an_invalid_contract_holds_only_its_own_flow(small_place, tmp_path):
    settings = small_place.stage_hub(
        tmp_path, datasets=["family_support_enrolments", "csc_referrals"]
    )
    contracts = {k: v for k, v in small_place.contracts.items() if k != "vcs-family-support"}
    problems = {
        "vcs-family-support": ContractError(
            "vcs-family-support.yaml: DSA term 'dpia_reference': required term is missing"
        )
    }
    with connect(settings) as con:
        receipts = {
            r.dataset or r.file_name: r
            for r in receive_inbox(
                settings,
                con,
                contracts,
                problems,
                AuditLog(settings.audit_dir),
                erase_identities=forget_identities,
            )
        }
        linked = {name for _, name in landed_datasets(con, contracts, settings.today())}
        assert "csc_referrals" in linked and "family_support_enrolments" not in linked
    held = [r for r in receipts.values() if r.status == "quarantined"]
    assert len(held) == 1 and "dpia_reference" in held[0].reason
    assert receipts["csc_referrals"].status == "accepted"


def test_a_removed_contract_file_is_audited_and_named_as_excluded(small_place, tmp_path):
    from pipelines.governance.flows import excluded_flows, record_flow_statuses

    settings = small_place.stage_hub(tmp_path, datasets=[])
    audit = AuditLog(settings.audit_dir)
    contracts = small_place.contracts
    now = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)
    with connect(settings) as con:
        record_flow_statuses(con, flow_statuses(contracts, {}, now.date()), contracts, audit, now)
        fewer = {k: v for k, v in contracts.items() if k != "vcs-family-support"}
        statuses = flow_statuses(fewer, {}, now.date())
        record_flow_statuses(con, statuses, fewer, audit, now)
        assert [f["contract_id"] for f in excluded_flows(statuses, con)] == ["vcs-family-support"]
    (changed,) = [e for e in audit.events() if e["event"] == "contract_status_changed"]
    assert (changed["contract"], changed["previous_status"], changed["status"]) == (
        "vcs-family-support",
        "approved",
        "missing",
    )
