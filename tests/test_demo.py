"""The demo on a small place: it runs as of its place's delivery day, whatever the calendar says."""

import datetime as dt

from pipelines.core.clock import Clock
from pipelines.core.settings import Settings
from pipelines.governance.audit import hub_audit_log
from pipelines.tooling.demo import format_summary, on_delivery_day, run_demo
from pipelines.tooling.synth.study import DELIVERED_AT


def test_the_demo_runs_as_of_its_delivery_day_unless_told_otherwise(tmp_path):
    on_the_calendar = Settings.from_env({"PLACELINK_HOME": str(tmp_path)})
    assert on_the_calendar.clock.as_of is None
    assert on_delivery_day(on_the_calendar).clock.as_of == DELIVERED_AT
    chosen = Settings.from_env({"PLACELINK_HOME": str(tmp_path), "PLACELINK_AS_OF": "2030-01-01"})
    assert on_delivery_day(chosen).clock.as_of == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def test_a_small_demo_accepts_every_partners_extract_and_publishes(tmp_path, monkeypatch):
    # The headless run still hands its settings to Dagster through the environment: put it back after.
    for name in (
        "PLACELINK_HOME",
        "PLACELINK_CONTRACTS",
        "PLACELINK_SQL",
        "PLACELINK_AS_OF",
        "DAGSTER_HOME",
    ):
        monkeypatch.setenv(name, "unset-by-test")
        monkeypatch.delenv(name)
    settings = Settings.from_env({"PLACELINK_HOME": str(tmp_path / "home")})  # no PLACELINK_AS_OF
    report = run_demo(settings, people=1500, seed=5, echo=lambda *_: None)
    assert not report.failures
    statuses = [d[1] for d in report.deliveries]
    assert statuses.count("accepted") == 7 and statuses.count("quarantined") == 2
    # holding the two deliveries the demo spoils on purpose is the demo working: `make demo` exits 0
    assert {d[0] for d in report.deliveries if d[1] == "quarantined"} == report.expected_held
    assert report.exit_code == 0, report.outcome
    assert report.persons > 0 and dict(report.published)["outcomes_before_after"] > 0
    summary = format_summary(report)
    assert (
        "The hub ran as of 2026-11-02" in summary
        and "PLACELINK_AS_OF=2026-11-02 make ui" in summary
    )
    # what only partners hold stays beside the hub's home, never in it (issue 18)
    assert (
        report.partners == tmp_path / "home-partners"
        and (report.partners / "linkage.key").is_file()
    )
    assert f"Partner side:     {report.partners}" in summary
    # (the hub's own keys: decryption and audit signing; its CSVs: the area reference and the IG register)
    assert not [
        p
        for p in (tmp_path / "home").rglob("*")
        if p.suffix in (".csv", ".key")
        and p.name not in ("hub.key", "audit.key", "ig_register.csv")
        and p.parent.name != "reference"
    ]
    # it ends with the headline effect: an estimate with its interval, or why there is none at this size
    headline = summary.splitlines()[-1]
    assert summary.splitlines()[-2].startswith("Headline effect") and headline.startswith(
        "  A&E attendances, ages 0-17"
    )
    assert "95% CI" in headline or "no estimate" in headline
    # the audit log tells the story on the place's own day
    first = next(
        hub_audit_log(Settings.from_env({"PLACELINK_HOME": str(tmp_path / "home")})).events()
    )
    assert first["at"].startswith("2026-11-02")
    assert Clock.from_env({}).as_of is None  # the demo moved its own clock, not the process's


def test_a_held_delivery_the_demo_did_not_spoil_makes_it_exit_3(tmp_path):
    from pipelines.orchestration.run_outcome import HELD, RunOutcome
    from pipelines.tooling.demo import DemoReport, _note_outcome

    report = DemoReport(tmp_path, expected_held={"a.damaged in transit.plx"})
    _note_outcome(report, RunOutcome(HELD, "held: a", held_files=("a.damaged in transit.plx",)))
    assert report.exit_code == 0
    _note_outcome(
        report, RunOutcome(HELD, "held: b", held_files=("a.damaged in transit.plx", "b.plx"))
    )
    assert report.exit_code == HELD and report.outcome == "held: b"
