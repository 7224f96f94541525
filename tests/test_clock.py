"""The injected clock: PLACELINK_AS_OF moves the hub's today for every check, and time still runs."""

import datetime as dt

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.clock import Clock, parse_as_of
from pipelines.core.settings import Settings


def test_as_of_sets_the_day_and_time_moves_on_from_it():
    clock = Clock.from_env({"PLACELINK_AS_OF": "2031-02-03"})
    first, second = clock.now(), clock.now()
    assert first.date() == dt.date(2031, 2, 3) and first.tzinfo is not None
    assert second >= first  # events keep their order; it is not a frozen instant
    assert clock.today() == dt.date(2031, 2, 3)
    assert parse_as_of("2031-02-03T23:30:00+02:00").utcoffset() == dt.timedelta(hours=2)


def test_unset_means_the_calendar():
    assert Clock.from_env({}).as_of is None
    assert abs(Clock.from_env({}).now() - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


def test_a_bad_value_says_what_to_give():
    with pytest.raises(ValueError, match="PLACELINK_AS_OF is 'next tuesday': give an ISO date"):
        Settings.from_env({"PLACELINK_AS_OF": "next tuesday"})


def test_the_ig_commands_check_agreements_on_the_clocks_day(signed_home, monkeypatch):
    contracts = str(
        signed_home / "contracts"
    )  # the shipped agreements, signed off by their approvers
    monkeypatch.setenv("PLACELINK_AS_OF", "2026-11-02")
    in_force = CliRunner().invoke(main, ["contracts", "check", "--dir", contracts])
    assert in_force.exit_code == 0 and "WARN" not in in_force.output
    monkeypatch.setenv("PLACELINK_AS_OF", "2029-04-01")  # the shipped agreements end on 2029-03-31
    lapsed = CliRunner().invoke(main, ["contracts", "check", "--dir", contracts])
    assert lapsed.exit_code == 0
    assert lapsed.output.count("approved but expired on 2029-03-31") == 3
    listed = CliRunner().invoke(main, ["contracts", "list", "--dir", contracts])
    assert listed.output.count(" expired ") == 3
