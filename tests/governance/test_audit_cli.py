"""`placelink audit verify` and `audit show` as an IG officer uses them."""

import json

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.settings import Settings
from pipelines.governance.audit import hub_audit_log


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLACELINK_HOME", str(tmp_path))
    monkeypatch.delenv("PLACELINK_CONTRACTS", raising=False)
    log = hub_audit_log(
        Settings.from_env(), actor="service:sensor/inbox_sensor", run_id="3f2a9c1e-run"
    )
    log.append("contract_status_recorded", contract="vcs-family-support", status="approved")
    log.append("extract_accepted", contract="vcs-family-support", extract_id="e1", rows=10)
    log.append("extract_quarantined", contract="nhs-acute-mental-health v1.0.0", check="columns")
    log.append("extract_accepted", contract="nhs-acute-mental-health", extract_id="e2", rows=20)
    log.append(
        "linkage_run",
        contracts=["nhs-acute-mental-health v1.0.0", "vcs-family-support v1.0.0"],
        persons=9,
    )
    log.append("published", tables=["outcomes_by_ward"], contracts=["vcs-family-support v1.0.0"])
    return log


def _rewrite(log, change):
    lines = log.path.read_text().splitlines()
    change(lines)
    log.path.write_text("\n".join(lines) + "\n")


def _edit(lines):
    event = json.loads(lines[1])
    event["rows"] = 1000
    lines[1] = json.dumps(event)


def _delete(lines):
    del lines[2]


def _reorder(lines):
    lines[1], lines[2] = lines[2], lines[1]


def test_verify_passes_on_an_intact_log(home):
    result = CliRunner().invoke(main, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "is intact (6 events; its end is signed" in result.output
    assert "ok    signed head: the log holds the 6 events the hub signed" in result.output


@pytest.mark.parametrize("change, line", [(_edit, 3), (_delete, 3), (_reorder, 2)])
def test_verify_names_the_first_bad_line(home, change, line):
    _rewrite(home, change)
    result = CliRunner().invoke(main, ["audit", "verify"])
    assert result.exit_code == 1
    assert f"is NOT intact: line {line}:" in result.output


def test_verify_fails_when_the_last_line_is_removed(home):
    _rewrite(home, lambda lines: lines.pop())
    result = CliRunner().invoke(main, ["audit", "verify"])
    assert result.exit_code == 1
    assert "ok    hash chain: 5 events chain" in result.output
    assert "FAIL  signed head: TRUNCATED or ROLLED BACK: the hub signed 6 events" in result.output


def test_show_lists_one_contracts_history_and_the_runs_that_used_its_data(home):
    result = CliRunner().invoke(main, ["audit", "show", "--contract", "nhs-acute-mental-health"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()[:-1]
    assert [line.split()[1] for line in lines] == [
        "extract_quarantined",
        "extract_accepted",
        "linkage_run",
    ]
    assert (
        lines[-1].endswith("(used its data)")
        and "[service:sensor/inbox_sensor, run 3f2a9c1e]" in lines[-1]
    )
    vcs = CliRunner().invoke(main, ["audit", "show", "--contract", "vcs-family-support"])
    assert [line.split()[1] for line in vcs.output.splitlines()[:-1]][-2:] == [
        "linkage_run",
        "published",
    ]
    assert "2 of them linkage runs or publications that used its data" in vcs.output


def test_show_an_unknown_contract_is_an_error(home):
    none = CliRunner().invoke(main, ["audit", "show", "--contract", "no-such"])
    assert none.exit_code == 2
    assert "no agreement 'no-such'" in none.output and "council-place-services" in none.output
    # a known agreement with nothing in the log yet is not an error
    quiet = CliRunner().invoke(main, ["audit", "show", "--contract", "council-place-services"])
    assert (
        quiet.exit_code == 0
        and "no audit events for contract 'council-place-services'" in quiet.output
    )
