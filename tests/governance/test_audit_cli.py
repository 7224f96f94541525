"""`placelink audit verify` and `audit show` as an IG officer uses them."""
import json

import pytest
from click.testing import CliRunner

from pipelines.audit import AuditLog
from pipelines.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLACELINK_HOME", str(tmp_path))
    log = AuditLog(tmp_path / "audit")
    log.append("contract_status_recorded", contract="vcs-family-support", status="approved")
    log.append("extract_accepted", contract="vcs-family-support", extract_id="e1", rows=10)
    log.append("extract_quarantined", contract="nhs-acute-mental-health v1.0.0", check="columns")
    log.append("extract_accepted", contract="nhs-acute-mental-health", extract_id="e2", rows=20)
    log.append("published", tables=["outcomes_by_ward"])
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
    assert result.exit_code == 0 and "is intact (5 events)" in result.output


@pytest.mark.parametrize("change, line", [(_edit, 3), (_delete, 3), (_reorder, 2)])
def test_verify_names_the_first_bad_line(home, change, line):
    _rewrite(home, change)
    result = CliRunner().invoke(main, ["audit", "verify"])
    assert result.exit_code == 1
    assert f"is NOT intact: line {line}:" in result.output


def test_show_lists_one_contracts_history_by_id_or_label(home):
    result = CliRunner().invoke(main, ["audit", "show", "--contract", "nhs-acute-mental-health"])
    assert result.exit_code == 0
    kinds = [line.split()[1] for line in result.output.splitlines()[:-1]]
    assert kinds == ["extract_quarantined", "extract_accepted"]
    none = CliRunner().invoke(main, ["audit", "show", "--contract", "no-such"])
    assert none.exit_code == 0 and "no audit events for contract 'no-such'" in none.output
