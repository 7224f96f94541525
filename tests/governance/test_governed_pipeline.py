"""The whole graph under governance: a suspended agreement leaves the next publication,
every published table names the agreements it relies on, the IG register renders in a
real browser, the audit log tells the story without identifiers, retention runs as a job."""

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from click.testing import CliRunner

from assets.resources import PlacelinkResource
from pipelines.cli import main
from pipelines.core.settings import REPO_ROOT, Settings
from pipelines.governance.audit import AuditHead, AuditLog
from pipelines.governance.retention import add_months
from pipelines.orchestration.code_location import defs
from pipelines.orchestration.definitions import placelink_definitions
from tests.browser import layout_at, rendered_dom

NHS = "nhs-acute-mental-health"
NHS_OUTCOMES = {"ae_attendance", "emergency_admission", "mental_health_referral"}


def _published(settings, sql):
    con = duckdb.connect(str(settings.published), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _set_status(contracts_dir: Path, contract_file: str, status: str) -> None:
    path = contracts_dir / contract_file
    document = yaml.safe_load(path.read_text())
    document["customProperties"][0]["value"]["approval_status"] = status
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.fixture(scope="module")
def governed_hub(small_place, published_small_hub, tmp_path_factory):
    root = tmp_path_factory.mktemp("governed")
    contracts_dir = root / "contracts"
    # the fixture's contracts name each partner's registered signing key
    shutil.copytree(small_place.contracts_dir, contracts_dir)
    # the first run: the session's whole run of the small place, copied for this module to change
    settings = published_small_hub.copy(root / "home")
    resource = PlacelinkResource(home=str(settings.home), contracts_dir=str(contracts_dir))

    before = {
        "outcomes": {
            r[0] for r in _published(settings, "SELECT DISTINCT outcome FROM outcomes_before_after")
        },
        "lineage": _published(settings, "SELECT * FROM _lineage"),
        "register": (settings.reports / "ig_register.html").read_text(),
    }

    # The IG officer suspends the NHS agreement; someone also drops a broken draft in.
    _set_status(contracts_dir, f"{NHS}.yaml", "suspended")
    (contracts_dir / "zz-draft.yaml").write_text("id: zz-draft\nschema: [unclosed\n")
    second = dg.materialize(list(defs.assets), resources={"placelink": resource})
    assert second.success
    return settings, contracts_dir, before


def test_every_published_table_names_the_agreements_and_extracts_it_relies_on(
    governed_hub, small_place
):
    settings, _, before = governed_hub
    lineage = before["lineage"]
    tables = {row[0] for row in lineage}
    published = {
        r[0]
        for r in _published(
            settings,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_name NOT LIKE '\\_%' ESCAPE '\\'",
        )
    }
    assert tables == published and {"outcomes_before_after", "outcomes_by_ward"} <= tables
    extract_ids = {e.header.extract_id for e in small_place.extracts}
    for table in tables:
        rows = [r for r in lineage if r[0] == table]
        assert {(r[1], r[2]) for r in rows} == {
            ("council-place-services", "1.0.0"),
            (NHS, "1.0.0"),
            ("vcs-family-support", "1.0.0"),
        }
        assert {r[4] for r in rows} <= extract_ids
        sources = {r[3] for r in rows if r[6] == "source"}
        if table.startswith("school_attendance"):
            assert "school_attendance" in sources
            continue
        # every dataset feeds the outcomes or the person attributes (school attendance: age, ward)
        assert sources == {
            "ae_attendances",
            "emergency_admissions",
            "mental_health_referrals",
            "csc_referrals",
            "school_attendance",
            "homelessness_applications",
            "family_support_enrolments",
        }


def test_a_suspended_agreement_leaves_the_next_publication(governed_hub):
    settings, _, before = governed_hub
    assert NHS_OUTCOMES <= before["outcomes"]
    after = {
        r[0] for r in _published(settings, "SELECT DISTINCT outcome FROM outcomes_before_after")
    }
    assert after and not (after & NHS_OUTCOMES)
    assert not _published(settings, f"SELECT * FROM _lineage WHERE contract_id = '{NHS}'")
    about = dict(_published(settings, "SELECT key, value FROM _about"))
    excluded = {x["contract_id"]: x for x in json.loads(about["excluded_flows"])}
    assert excluded[NHS]["status"] == "suspended" and "zz-draft" in excluded
    assert NHS not in about["lineage"]
    # nothing the NHS sent was deleted: it is held, ready if the agreement is reinstated
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM landing.ae_attendances").fetchone()[0] > 0
        assert (
            con.execute(
                "SELECT count(*) FROM hub.record_identity WHERE partner_id = 'nhs'"
            ).fetchone()[0]
            == 0
        )
    finally:
        con.close()


def test_the_audit_log_says_what_changed_and_what_was_left_out(governed_hub):
    settings, _, _ = governed_hub
    log = AuditLog(settings.audit_dir)
    assert log.verify() is None
    events = list(log.events())
    changed = [e for e in events if e["event"] == "contract_status_changed"]
    assert [(e["contract"], e["previous_status"], e["status"]) for e in changed] == [
        (NHS, "approved", "suspended")
    ]
    assert any(
        e["event"] == "flow_excluded" and e["contract"] == NHS and e["landed_rows"] > 0
        for e in events
    )
    assert any(
        e["event"] == "contract_status_recorded"
        and e["contract"] == "zz-draft"
        and e["status"] == "invalid"
        for e in events
    )
    last_publication = [e for e in events if e["event"] == "published"][-1]
    assert f"{NHS} (suspended)" in last_publication["excluded_flows"]
    assert not any(NHS in c for c in last_publication["contracts"])
    # the NHS records leaving linkage is a known change of the link rate, used up by that run's linkage
    (accepted,) = [e for e in events if e["event"] == "linkage_change_accepted"]
    assert accepted["contract"] == NHS and "leave linkage" in accepted["reason"]
    linkage = [e for e in events if e["event"] == "linkage_run"][-1]
    assert linkage["keys_saved"] and linkage["accepted_changes"] == [accepted["change_id"]]
    # losing the NHS sources was allowed (suspended), and the publication says so
    assert any(
        loss.startswith(f"source {NHS}/ae_attendances") and "suspended" in loss
        for loss in last_publication["known_losses"]
    )


def test_every_event_names_who_and_which_run_and_the_publication_carries_the_signed_head(
    governed_hub,
):
    settings, _, _ = governed_hub
    events = list(AuditLog(settings.audit_dir).events())
    in_runs = [
        e
        for e in events
        if e["event"] in ("extract_accepted", "linkage_run", "published", "flow_excluded")
    ]
    assert in_runs and all(
        e["run_id"] and e["actor"].startswith(("user:", "service:")) for e in in_runs
    )
    assert len({e["run_id"] for e in in_runs}) == 2  # the two materialisations
    linkage = [e for e in events if e["event"] == "linkage_run"]
    assert (
        f"{NHS} v1.0.0" in linkage[0]["contracts"]
        and f"{NHS} v1.0.0" not in linkage[-1]["contracts"]
    )
    about = dict(_published(settings, "SELECT key, value FROM _about"))
    head = json.loads(about["audit_head"])
    published = [e for e in events if e["event"] == "published"][-1]
    assert (
        head["events"] == published["audit_head_events"]
        and head["format"] == "placelink-audit-head/1"
    )


def _copy_of_the_hub(settings, tmp_path, monkeypatch):
    home = tmp_path / "copy"
    for part in ("audit", "keys", "published"):
        shutil.copytree(settings.home / part, home / part)
    shutil.copy(settings.audit_head_path, home / settings.audit_head_path.name)
    monkeypatch.setenv("PLACELINK_HOME", str(home))
    return home


def test_cutting_the_last_line_or_restoring_an_older_log_fails_verify(
    governed_hub, tmp_path, monkeypatch
):
    settings, _, _ = governed_hub
    home = _copy_of_the_hub(settings, tmp_path, monkeypatch)
    log = home / "audit" / "audit.jsonl"
    intact = CliRunner().invoke(main, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    assert "ok    head in shared_outcomes.duckdb" in intact.output
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]))  # the last event removed
    cut = CliRunner().invoke(main, ["audit", "verify"])
    assert cut.exit_code == 1 and "TRUNCATED" in cut.output
    # an older copy put back together with a head that matches it (as a backup of both would be):
    # the log and its head agree, but the published file carries a later head
    first_publication = next(i for i, line in enumerate(lines) if '"event": "published"' in line)
    older = "".join(lines[:first_publication])
    log.write_text(older)
    head = AuditHead(home / "audit_head.json", home / "keys" / "audit.key")
    key, _ = head.signing_key()
    head.sign(
        key,
        first_publication,
        len(older.encode()),
        hashlib.sha256(lines[first_publication - 1].rstrip("\n").encode()).hexdigest(),
        settings.now(),
    )
    rolled = CliRunner().invoke(main, ["audit", "verify"])
    assert rolled.exit_code == 1, rolled.output
    assert "ok    signed head" in rolled.output
    assert "FAIL  head in shared_outcomes.duckdb: TRUNCATED or ROLLED BACK" in rolled.output


def test_audit_show_lists_one_flows_history(governed_hub, monkeypatch):
    settings, _, _ = governed_hub
    monkeypatch.setenv("PLACELINK_HOME", str(settings.home))
    result = CliRunner().invoke(main, ["audit", "show", "--contract", NHS])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()[:-1]
    kinds = [line.split()[1] for line in lines]
    assert kinds.count("extract_accepted") == 3
    assert {"contract_status_recorded", "contract_status_changed", "flow_excluded"} <= set(kinds)
    assert "csc_referrals" not in result.output
    # lineage: the first run's linkage and publication used the NHS data; after the suspension, neither did
    used = [line.split()[1] for line in lines if line.endswith("(used its data)")]
    assert used == ["linkage_run", "published"]
    unknown = CliRunner().invoke(main, ["audit", "show", "--contract", "nonexistent"])
    assert unknown.exit_code == 2 and "no agreement 'nonexistent'" in unknown.output


def test_the_audit_log_never_holds_a_token_or_identifier(governed_hub, small_place):
    settings, _, _ = governed_hub
    text = settings.audit_dir.joinpath("audit.jsonl").read_text()
    hex_words = set(re.findall(r"[0-9a-f]{32,}", text))
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        tokens = {
            r[0]
            for r in con.execute("""
            SELECT record_token FROM landing.ae_attendances UNION SELECT nhs_number_token FROM landing.ae_attendances
            UNION SELECT family_token FROM landing.family_support_enrolments
            UNION SELECT date_of_birth_token FROM landing.csc_referrals""").fetchall()
            if r[0]
        }
    finally:
        con.close()
    assert len(tokens) > 1000 and not (hex_words & tokens)
    raw_nhs_numbers = set(
        re.findall(
            r"\b\d{10}\b", (small_place.place / "raw" / "nhs" / "ae_attendances.csv").read_text()
        )
    )
    assert raw_nhs_numbers and not (set(re.findall(r"\d{10}", text)) & raw_nhs_numbers)


def test_the_ig_register_renders_one_row_per_agreement_in_a_browser(governed_hub):
    settings, _, before = governed_hub
    page = settings.reports / "ig_register.html"
    dom = rendered_dom(page)
    body = dom.split('<table id="agreements"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-contract="([^"]+)"', body)
    assert sorted(rows) == ["council-place-services", NHS, "vcs-family-support", "zz-draft"]
    nhs_row = body.split(f'<tr data-contract="{NHS}"', 1)[1].split("</tr>", 1)[0]
    assert "suspended" in nhs_row and "3 deliveries" in nhs_row and "4 of 4" in nhs_row
    nhs = dom.split(f'<section class="agreement" id="c-{NHS}"', 1)[1].split("</section>", 1)[0]
    assert "left out of linkage and publication" in nhs
    vcs = dom.split('<section class="agreement" id="c-vcs-family-support"', 1)[1].split(
        "</section>", 1
    )[0]
    assert "outcomes_before_after (source)" in vcs and "outcomes_by_ward (source)" in vcs
    # who signed what, when; DPIA, retention and the (not yet stated) cadence
    assert (
        "Information Governance Lead of Northshire Family Hub Trust (registered charity) (provider)"
        in vcs
    )
    assert "2026-11-02" in vcs and "DPIA-NFHT-2026-002" in vcs and "60 months from receipt" in vcs
    assert "Delivery cadence" in vcs and "1 delivery," in vcs  # one extract, one delivery
    assert "The audit log is intact" in dom
    # before the suspension the NHS agreement fed both published tables
    assert (
        "outcomes_by_ward (source)"
        in before["register"].split(f'id="c-{NHS}"', 1)[1].split("</section>")[0]
    )
    csv_rows = list(csv.DictReader((settings.reports / "ig_register.csv").open()))
    by_id = {r["contract_id"]: r for r in csv_rows}
    assert set(by_id) == {"council-place-services", NHS, "vcs-family-support", "zz-draft"}
    assert by_id[NHS]["status"] == "suspended" and by_id[NHS]["deliveries"] == "3"
    assert by_id[NHS]["signatures_valid"] == "4" and by_id[NHS]["dpia"] == "DPIA-NNFT-2026-007"


@pytest.mark.parametrize("width", [800, 1600])
def test_the_ig_register_reads_at_any_width_without_clipping(governed_hub, width):
    settings, _, _ = governed_hub
    layout = layout_at(settings.reports / "ig_register.html", width)
    assert layout["inner_width"] == width and layout["page_width"] <= width
    assert layout["problems"] == []


def _own_copy(settings, contracts_dir: Path, target: Path):
    """A copy of the shared hub for a test that changes it, so the others see it as built."""
    root = settings.home.parent
    assert contracts_dir.parent == root
    shutil.copytree(root, target)
    copy = dataclasses.replace(
        settings, home=target / settings.home.name, contracts_dir=target / contracts_dir.name
    )
    con = duckdb.connect(str(copy.warehouse))
    try:  # the vaulted envelopes' paths point into the copy
        con.execute(
            "UPDATE hub.deliveries SET stored_as = replace(stored_as, ?, ?)",
            [str(settings.home), str(copy.home)],
        )
    finally:
        con.close()
    return copy, copy.contracts_dir


def test_the_daily_retention_job_deletes_expired_extracts_and_republishes(governed_hub, tmp_path):
    settings, contracts_dir = _own_copy(*governed_hub[:2], tmp_path / "governed")
    _set_status(contracts_dir, f"{NHS}.yaml", "approved")
    # This hub's code location, as the daemon would load it with PLACELINK_HOME and
    # PLACELINK_CONTRACTS naming them.
    hub = placelink_definitions(Settings.from_env(home=settings.home, contracts_dir=contracts_dir))
    assert hub.resolve_schedule_def("daily_retention").cron_schedule == "30 2 * * *"
    job = hub.resolve_job_def("placelink_retention")
    # A fake clock 61 months after the VCS delivery arrived: past that agreement's 60 months,
    # inside the others' 84. Relative to the delivery's own date, so it holds on any day.
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        (received,) = con.execute(
            "SELECT max(received_at) FROM hub.deliveries "
            "WHERE contract_id = 'vcs-family-support' AND status = 'accepted'"
        ).fetchone()
    finally:
        con.close()
    as_of = dt.datetime.combine(add_months(received.date(), 61), dt.time(3), tzinfo=dt.UTC)
    result = job.execute_in_process(
        run_config={"ops": {"hub__retention_deletions": {"config": {"as_of": as_of.isoformat()}}}}
    )
    assert result.success
    deleted = [
        e for e in AuditLog(settings.audit_dir).events() if e["event"] == "retention_deleted"
    ]
    assert [e["contract"] for e in deleted] == ["vcs-family-support"]
    reinstated = [
        e for e in AuditLog(settings.audit_dir).events() if e["event"] == "contract_status_changed"
    ][-1]
    assert (reinstated["contract"], reinstated["status"]) == (NHS, "approved")
    assert not _published(
        settings, "SELECT * FROM _lineage WHERE contract_id = 'vcs-family-support'"
    )
    about = dict(_published(settings, "SELECT key, value FROM _about"))
    assert "vcs-family-support" not in about["lineage"] and NHS in about["lineage"]
    assert (
        _published(settings, f"SELECT count(*) FROM _lineage WHERE contract_id = '{NHS}'")[0][0] > 0
    )
    # The republication lost the VCS source: allowed, because retention deleted it, and said so (issue 20).
    (materialised,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "published/shared_outcomes"
    ]
    losses = materialised.metadata["known_losses"].value
    assert any(
        loss.startswith("source vcs-family-support/family_support_enrolments")
        and "retention deleted" in loss
        for loss in losses
    ), losses
    events = list(AuditLog(settings.audit_dir).events())
    assert [e for e in events if e["event"] == "published"][-1]["known_losses"] == losses
    # and linkage took the dataset's deletion as a known change, recorded by the run that deleted it
    (accepted,) = [
        e
        for e in events
        if e["event"] == "linkage_change_accepted"
        and e["run_id"] == result.run_id
        and "retention" in e["reason"]
    ]
    assert "family_support_enrolments (vcs-family-support)" in accepted["reason"]


def test_definitions_still_load_when_a_contract_is_invalid(tmp_path):
    contracts_dir = tmp_path / "contracts"
    shutil.copytree(REPO_ROOT / "contracts", contracts_dir)
    vcs = contracts_dir / "vcs-family-support.yaml"
    vcs.write_text(vcs.read_text().replace("    dpia_reference: DPIA-NFHT-2026-002\n", ""))
    code = (
        "from pipelines.orchestration.code_location import defs; "
        "print(len(list(defs.resolve_asset_graph().get_all_asset_keys())))"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "PLACELINK_CONTRACTS": str(contracts_dir),
            "PLACELINK_HOME": str(tmp_path / "home"),
        },
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
