"""Operators' commands during a run: they never open warehouse.duckdb, so they neither fail on a
run's lock nor make the run fail on theirs (DuckDB lets one process hold the file: even a read-only
open from another fails while a writer holds it, and blocks the writer while it is open)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.core.run_lock import EXIT_LOCKED
from pipelines.core.settings import REPO_ROOT
from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import hub_audit_log
from pipelines.hub.ingest import receive_inbox
from pipelines.hub.quarantine import held_files
from pipelines.linkage.person_keys import forget_identities
from tests.test_run_lock import SAFETY, _hold_lock_in_another_process, _in_thread

DATASETS = ["ae_attendances", "family_support_enrolments"]


@pytest.fixture(scope="module")
def hub_after_a_run(published_small_hub, tmp_path_factory):
    """A hub after a run: accepted extracts (the session's whole run, copied), one held file
    (received by the hub's ingest after it), a published file, an audit log."""
    settings = published_small_hub.copy(tmp_path_factory.mktemp("operators") / "hub")
    (settings.inbox / "not-an-envelope.plx").write_bytes(b"this is not a sealed extract\n")
    contracts, problems = load_hub_contracts(settings)
    con = connect(settings)
    try:
        (receipt,) = receive_inbox(
            settings,
            con,
            contracts,
            problems,
            hub_audit_log(settings),
            now=settings.now(),
            erase_identities=forget_identities,
        )
    finally:
        con.close()
    assert receipt.status == "quarantined"
    return settings


@pytest.fixture
def operator(hub_after_a_run, monkeypatch):
    monkeypatch.setenv("PLACELINK_HOME", str(hub_after_a_run.home))
    monkeypatch.delenv("PLACELINK_CONTRACTS", raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        return result.exit_code, result.output + (
            result.stderr if result.stderr_bytes is not None else ""
        )

    return run


def test_operators_commands_answer_in_full_while_a_writer_holds_the_warehouse_and_it_keeps_writing(
    hub_after_a_run, operator, tmp_path
):
    settings = hub_after_a_run
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb\n"
            f"con = duckdb.connect({str(settings.warehouse)!r})\n"
            "con.execute('CREATE TABLE hub.before_commands AS SELECT 1 AS n')\n"
            "print('holding', flush=True); sys.stdin.readline()\n"
            "con.execute('CREATE TABLE hub.after_commands AS SELECT 2 AS n'); con.close(); print('wrote', flush=True)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert _in_thread(writer.stdout.readline) == "holding\n"
        (held,) = held_files(settings.quarantine)
        contract = "nhs-acute-mental-health"
        answers = {
            "quarantine list": operator("hub", "quarantine", "list"),
            "quarantine show": operator("hub", "quarantine", "show", held["held_as"]),
            "deliveries": operator("hub", "deliveries"),
            "contracts list": operator("contracts", "list"),
            "contracts check": operator("contracts", "check"),
            "contracts show": operator("contracts", "show", contract),
            "contracts register": operator(
                "contracts", "register", "--out", str(tmp_path / "register")
            ),
            "audit verify": operator("audit", "verify"),
            "audit show": operator("audit", "show", "--contract", contract),
            "sql": operator("sql", "SELECT count(*) AS tables FROM information_schema.tables"),
        }
    finally:
        out, err = writer.communicate("go\n", timeout=SAFETY)
    assert writer.returncode == 0 and out == "wrote\n", err  # the writer never failed
    for command, (code, output) in answers.items():
        assert code == 0, f"{command}: {output}"
        assert "lock" not in output.lower() and "busy" not in output.lower(), f"{command}: {output}"
    listed = answers["quarantine list"][1]
    for dataset in DATASETS:
        assert any(
            line.startswith("ACCEPTED") and f"\t{dataset}\t" in line for line in listed.splitlines()
        ), listed
    assert f"HELD      {held['held_as']}" in listed
    assert "ae_attendances" in answers["deliveries"][1]
    assert "is intact" in answers["audit verify"][1]
    assert "effects" in answers["sql"][1] or "tables" in answers["sql"][1]


def test_a_release_during_a_run_is_refused_and_the_file_stays_held(
    hub_after_a_run, operator, tmp_path
):
    settings = hub_after_a_run
    (held,) = held_files(settings.quarantine)
    holder = _hold_lock_in_another_process(settings.home, "r-busy")
    try:
        code, output = operator("hub", "quarantine", "release", held["held_as"])
    finally:
        holder.communicate("", timeout=SAFETY)
    assert code == EXIT_LOCKED
    assert "run r-busy" in output and f"release {held['held_as']} after the run ends" in output
    assert [item["held_as"] for item in held_files(settings.quarantine)] == [held["held_as"]]
    assert not any(settings.inbox.iterdir())
