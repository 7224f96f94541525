"""Delivery cadence: the contract's delivery term, which period is due on a day, what is overdue,
and `placelink hub deliveries --overdue`, which reads the audit log and never the warehouse."""

import datetime as dt

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.settings import REPO_ROOT
from pipelines.governance.approvals import ApproverRegistry
from pipelines.governance.audit import AuditLog
from pipelines.governance.cadence import (
    AcceptedDelivery,
    DeliveryStatus,
    accepted_deliveries,
    delivery_status,
    delivery_statuses,
    due_date,
    expected_period,
    overdue_alert,
)
from pipelines.governance.contracts import (
    ContractError,
    DeliverySchedule,
    load_contract,
    load_contracts,
)
from tests.approvers import signed_hub_contracts

MONTHLY = DeliverySchedule("monthly", 10, "full")
QUARTERLY = DeliverySchedule("quarterly", 15, "full")


@pytest.mark.parametrize(
    "schedule, on, period",
    [
        (MONTHLY, "2026-11-02", "2026-09"),  # October's is due by 10 November: not yet
        (MONTHLY, "2026-11-10", "2026-09"),  # due by the 10th means late from the 11th
        (MONTHLY, "2026-11-11", "2026-10"),
        (MONTHLY, "2027-01-15", "2026-12"),  # across a year end
        (QUARTERLY, "2026-11-02", "2026-09"),  # July-September, due by 15 October
        (QUARTERLY, "2027-01-15", "2026-09"),
        (QUARTERLY, "2027-01-16", "2026-12"),
    ],
)
def test_the_period_expected_on_a_day(schedule, on, period):
    assert expected_period(schedule, dt.date.fromisoformat(on)) == period


def test_due_dates_fall_in_the_month_after_the_period():
    assert due_date(MONTHLY, "2026-12") == dt.date(2027, 1, 10)
    assert due_date(QUARTERLY, "2026-08") == dt.date(2026, 10, 15)  # any month of the quarter


@pytest.fixture(scope="module")
def contracts(tmp_path_factory):
    """The repo's agreements, signed off (a draft is in force nowhere, so nothing would be due)."""
    home = tmp_path_factory.mktemp("hub")
    found, problems = load_contracts(
        signed_hub_contracts(home), ApproverRegistry(home / "keys" / "approvers")
    )
    assert not problems and all(c.signed_off for c in found.values())
    return found


def _accepted(contract, dataset, period, at="2026-11-02T09:00:00+00:00"):
    return AcceptedDelivery(contract, dataset, period, at)


def test_the_demo_contracts_declare_their_cadence(contracts):
    nhs = contracts["nhs-acute-mental-health"]
    assert nhs.delivery_schedule("ae_attendances") == DeliverySchedule("monthly", 10, "delta")
    assert (
        contracts["vcs-family-support"].delivery_schedule("family_support_enrolments").frequency
        == "quarterly"
    )


def test_a_dataset_is_overdue_once_its_period_is_past_due_and_a_later_period_covers_it(contracts):
    nhs = contracts["nhs-acute-mental-health"]
    october = [_accepted(nhs.id, "ae_attendances", "2026-10")]
    on_time = delivery_status(nhs, "ae_attendances", october, dt.date(2026, 12, 10))
    assert (
        not on_time.overdue
        and on_time.next_period == "2026-11"
        and on_time.next_due_on == "2026-12-10"
    )
    late = delivery_status(nhs, "ae_attendances", october, dt.date(2026, 12, 14))
    assert late.overdue and late.days_overdue == 4
    assert (late.expected_period, late.due_on, late.last_period) == (
        "2026-11",
        "2026-12-10",
        "2026-10",
    )
    # December's delivery also covers November
    caught_up = delivery_status(
        nhs,
        "ae_attendances",
        october + [_accepted(nhs.id, "ae_attendances", "2026-12")],
        dt.date(2026, 12, 14),
    )
    assert not caught_up.overdue


def test_nothing_is_expected_before_the_agreement_begins_or_while_it_is_not_in_force(contracts):
    council = contracts["council-place-services"]
    # valid from 1 April 2026: March's extract was due on 10 April, but March is before the agreement
    before = delivery_status(council, "csc_referrals", [], dt.date(2026, 4, 20))
    assert before.expected_period is None and not before.overdue and before.next_period == "2026-04"
    assert delivery_status(council, "csc_referrals", [], dt.date(2026, 5, 11)).overdue
    expired = delivery_status(council, "csc_referrals", [], dt.date(2029, 6, 1))
    assert not expired.overdue  # the agreement expired in March 2029: no delivery may come


def test_overdue_alert_names_contract_dataset_period_and_days_only(contracts):
    statuses = delivery_statuses(contracts, [], dt.date(2026, 12, 14))
    overdue = [s for s in statuses if s.overdue]
    assert {s.dataset for s in overdue} >= {"ae_attendances", "csc_referrals"}
    alert = overdue_alert(overdue)
    assert alert.title == f"{len(overdue)} delivery(ies) overdue"
    assert (
        "nhs-acute-mental-health / ae_attendances: period 2026-11 due by 2026-12-10, 4 day(s) overdue "
        "(nothing delivered yet)" in alert.facts
    )
    assert DeliveryStatus.from_metadata(overdue[0].to_metadata()) == overdue[0]


def test_the_audit_log_says_what_was_delivered_for_which_period(tmp_path):
    log = AuditLog(tmp_path)
    log.append(
        "extract_accepted",
        at=dt.datetime(2026, 12, 3, tzinfo=dt.UTC),
        file="a.plx",
        extract_id="e1",
        contract="nhs-acute-mental-health",
        dataset="ae_attendances",
        rows=20,
        reporting_period="2026-11",
        delivery_kind="delta",
    )
    # an event written before the period was audited: the month before it arrived
    log.append(
        "extract_accepted",
        at=dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
        file="b.plx",
        extract_id="e2",
        contract="council-place-services v1.0.0",
        dataset="csc_referrals",
        rows=5,
    )
    log.append("extract_quarantined", file="c.plx", check="quality", contract="vcs-family-support")
    assert accepted_deliveries(log) == [
        AcceptedDelivery(
            "nhs-acute-mental-health",
            "ae_attendances",
            "2026-11",
            "2026-12-03T00:00:00+00:00",
            "delta",
        ),
        AcceptedDelivery(
            "council-place-services",
            "csc_referrals",
            "2026-10",
            "2026-11-02T00:00:00+00:00",
            "full",
        ),
    ]


def _contract_with(tmp_path, delivery: str):
    text = (REPO_ROOT / "contracts" / "vcs-family-support.yaml").read_text()
    start = text.index("    delivery:\n")
    end = text.index("    signing_key_fingerprint")
    path = tmp_path / "vcs-family-support.yaml"
    path.write_text(text[:start] + delivery + text[end:])
    return path


@pytest.mark.parametrize(
    "delivery, message",
    [
        (
            "    delivery:\n      frequency: monthly\n      due_day: 31\n",
            "DSA term 'delivery.due_day': due_day 31 is not a day that every month has",
        ),
        (
            "    delivery:\n      frequency: fortnightly\n      due_day: 5\n",
            "DSA term 'delivery.frequency'",
        ),
        (
            "    delivery:\n      frequency: monthly\n      due_day: 5\n      datasets:\n        enrolments:\n"
            "          kind: delta\n",
            "'delivery.datasets' names enrolments, which the contract does not list",
        ),
    ],
)
def test_a_wrong_delivery_term_names_the_file_and_the_fix(tmp_path, delivery, message):
    with pytest.raises(ContractError, match=message) as raised:
        load_contract(_contract_with(tmp_path, delivery))
    assert "vcs-family-support.yaml" in str(raised.value) and "Fix" in str(raised.value)


def test_a_dataset_may_have_its_own_cadence(tmp_path):
    contract = load_contract(
        _contract_with(
            tmp_path,
            "    delivery:\n      frequency: monthly\n      due_day: 5\n"
            "      datasets:\n        family_support_enrolments:\n"
            "          kind: delta\n",
        )
    )
    assert contract.delivery_schedule("family_support_enrolments") == DeliverySchedule(
        "monthly", 5, "delta"
    )


def test_the_cli_lists_overdue_deliveries_without_opening_the_warehouse(tmp_path):
    home = tmp_path / "home"
    signed_hub_contracts(home)
    AuditLog(home / "audit").append(
        "extract_accepted",
        at=dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
        file="a.plx",
        extract_id="e1",
        contract="nhs-acute-mental-health",
        dataset="ae_attendances",
        rows=20,
        reporting_period="2026-11",
    )
    (home / "warehouse.duckdb").mkdir()  # opening it would fail: the command must not try
    env = {"PLACELINK_HOME": str(home), "PLACELINK_AS_OF": "2026-12-14"}
    result = CliRunner().invoke(main, ["hub", "deliveries", "--overdue"], env=env)
    assert result.exit_code == 0, result.output
    assert "council-place-services   csc_referrals" in result.output
    assert "OVERDUE 4 day(s): 2026-11 was due by 2026-12-10" in result.output
    assert "ae_attendances" not in result.output  # November arrived
    everything = CliRunner().invoke(main, ["hub", "deliveries"], env=env).output
    assert (
        "ae_attendances" in everything and "on time; next 2026-12 due by 2027-01-10" in everything
    )


def test_contracts_show_says_when_deliveries_are_due():
    result = CliRunner().invoke(
        main,
        ["contracts", "show", "nhs-acute-mental-health", "--dir", str(REPO_ROOT / "contracts")],
    )
    shown = " ".join(result.output.split())
    assert (
        "Deliveries: monthly, as a delta (records new or changed since the last one), due by day 10 "
        "of the month after the period ends." in shown
    )
