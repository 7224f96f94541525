"""One writer at a time: the hub's run lock (pipelines/core/run_lock.py) and the run queue.

Processes are synchronised with the lock itself and with the headless run's fault hook
(PLACELINK_FAULT_PAUSE_AFTER_RUN_LOCK: two FIFOs, "locked" and "go"), never with sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from assets.resources import PlacelinkResource
from pipelines.core.run_lock import EXIT_LOCKED, RunLockBusy, current_holder, is_locked, run_lock
from pipelines.core.settings import REPO_ROOT, Settings

PLACELINK = str(Path(sys.executable).with_name("placelink"))
SAFETY = 600  # seconds: only so that a broken test fails instead of hanging; never a timing window


def hub_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PLACELINK_CONTRACTS", "DAGSTER_HOME")}
    return {**env, "PLACELINK_HOME": str(home), **extra}


class PausedRun:
    """`placelink run` (with ``args``) paused by the fault hook just after it took the run lock."""

    def __init__(self, home: Path, pause: Path, *args: str, wait_for_lock: bool = True):
        self.fifos = pause
        self.fifos.mkdir()
        os.mkfifo(self.fifos / "locked")
        os.mkfifo(self.fifos / "go")
        self.process = subprocess.Popen(
            [PLACELINK, "run", *args],
            env=hub_env(home, PLACELINK_FAULT_PAUSE_AFTER_RUN_LOCK=str(self.fifos)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.locked() if wait_for_lock else None

    def locked(self) -> int:
        """Once it holds the lock (and waits to be told to go): its pid, as it wrote it."""
        return int(_in_thread(lambda: (self.fifos / "locked").read_text()).strip())

    def go(self) -> subprocess.CompletedProcess:
        _in_thread(lambda: (self.fifos / "go").write_text("go\n"))
        out, err = self.process.communicate(timeout=SAFETY)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)


def _in_thread(action):
    """``action()`` (a FIFO open that blocks until the other end opens), failing instead of hanging."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(action()), daemon=True)
    worker.start()
    worker.join(SAFETY)
    assert result, "the other process never reached the FIFO"
    return result[0]


def published_tables(settings: Settings) -> list[str]:
    con = duckdb.connect(str(settings.published), read_only=True)
    try:
        return [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables"
            ).fetchall()
        ]
    finally:
        con.close()


@pytest.fixture(scope="module")
def four_runs(small_place, tmp_path_factory) -> dict:
    """One hub, four `placelink run`s, two of them whole (a whole run is most of this module's
    time), and what each test below looks at, recorded as it happened:

    1. ``killed`` takes the lock and is killed there (SIGKILL: no clean-up);
    2. ``first`` takes the lock after it and pauses;
    3. ``refused``, without --wait, is refused at once;
    4. ``waiting``, with --wait, says it waits; ``first`` goes on and publishes; ``waiting`` then
       takes the lock and pauses (so the file ``first`` published is read with no run writing),
       then goes on and publishes too.
    """
    root = tmp_path_factory.mktemp("run_lock")
    settings = small_place.stage_hub(
        root / "hub", datasets=["ae_attendances", "family_support_enrolments"]
    )
    seen: dict = {"settings": settings}

    killed = PausedRun(settings.home, root / "pause-killed")
    seen["killed"] = killed.pid
    seen["locked while paused"] = is_locked(settings.home)
    os.kill(killed.pid, signal.SIGKILL)
    killed.process.wait(timeout=SAFETY)
    seen["holder after the kill"] = current_holder(settings.home)
    seen["locked after the kill"] = is_locked(settings.home)

    first = PausedRun(settings.home, root / "pause-first")
    seen["first"] = first.pid
    seen["holder"] = current_holder(settings.home)
    seen["refused"] = subprocess.run(
        [PLACELINK, "run"],
        env=hub_env(settings.home),
        capture_output=True,
        text=True,
        timeout=SAFETY,
    )
    seen["written by the refused run"] = [
        path.name for path in (settings.warehouse, settings.published) if path.exists()
    ]
    waiting = PausedRun(settings.home, root / "pause-waiting", "--wait", wait_for_lock=False)
    seen["waiting says"] = _in_thread(waiting.process.stderr.readline)

    seen["first done"] = first.go()
    waiting.locked()
    seen["published by first"] = published_tables(settings)
    seen["waiting done"] = waiting.go()
    seen["locked at the end"] = is_locked(settings.home)
    seen["holder at the end"] = current_holder(settings.home)
    return seen


def test_a_second_run_is_refused_at_once_naming_the_first_and_the_first_publishes(four_runs):
    first_pid, holder, second = four_runs["first"], four_runs["holder"], four_runs["refused"]
    assert holder is not None and holder.pid == first_pid and holder.run_id

    assert second.returncode == EXIT_LOCKED, second.stderr
    assert f"run {holder.run_id}" in second.stderr and f"pid {first_pid}" in second.stderr
    assert "placelink run --wait" in second.stderr and "Traceback" not in second.stderr
    assert "Could not set lock" not in second.stdout + second.stderr
    assert four_runs["written by the refused run"] == []  # the refused one wrote nothing

    done = four_runs["first done"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"pipeline run {holder.run_id} succeeded" in done.stdout
    assert "effects" in four_runs["published by first"]
    assert not four_runs["locked at the end"] and four_runs["holder at the end"] is None


def test_run_with_wait_starts_when_the_run_holding_the_lock_ends(four_runs):
    settings = four_runs["settings"]
    waiting = four_runs["waiting says"]  # it says so once it found the lock held
    assert waiting.startswith("waiting:") and f"pid {four_runs['first']}" in waiting

    assert four_runs["first done"].returncode == 0
    second = four_runs["waiting done"]
    assert second.returncode == 0, second.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(settings.home / "dagster")) as instance:
        runs = sorted(
            instance.get_runs(), key=lambda r: instance.get_run_record_by_id(r.run_id).start_time
        )
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
        first_record, second_record = (instance.get_run_record_by_id(r.run_id) for r in runs)
        assert (
            first_record.end_time <= second_record.start_time
        )  # one after the other, never together


def test_a_killed_run_leaves_no_lock_behind(four_runs):
    assert four_runs["locked while paused"]
    # its note is stale; the lock is not
    assert four_runs["holder after the kill"].pid == four_runs["killed"]
    assert not four_runs["locked after the kill"]

    after = four_runs["first done"]  # the next run took the lock, ran and published
    assert after.returncode == 0, after.stderr[-3000:]
    assert "effects" in four_runs["published by first"]


def _hold_lock_in_another_process(home: Path, run_id: str) -> subprocess.Popen:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pipelines.core.run_lock import run_lock\n"
            f"with run_lock({str(home)!r}, 'a test holder', run_id={run_id!r}):\n"
            "    print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert _in_thread(holder.stdout.readline) == "held\n"
    return holder


def test_the_lock_is_reentrant_in_its_process_and_refuses_others_until_released(tmp_path):
    home = tmp_path / "hub"
    with run_lock(home, "outer"):
        with run_lock(home, "inner", run_id="r-2") as inner:
            assert inner.pid == os.getpid() and inner.command == "outer" and inner.run_id == "r-2"
        assert is_locked(home)  # the inner block leaves it held
    assert not is_locked(home)

    holder = _hold_lock_in_another_process(home, "r-1")
    try:
        with pytest.raises(RunLockBusy) as refused:
            with run_lock(home, "second"):
                pass
        assert (
            "run r-1 (a test holder" in str(refused.value)
            and refused.value.holder.pid == holder.pid
        )
        with pytest.raises(RunLockBusy, match="after waiting"):
            with run_lock(home, "second", wait=0.01):
                pass
    finally:
        holder.communicate("", timeout=SAFETY)
    with run_lock(home, "second") as mine:
        assert current_holder(home) == mine


@dg.asset
def warehouse_writer(placelink: PlacelinkResource) -> dg.MaterializeResult:
    with placelink.warehouse() as con:
        con.execute("CREATE OR REPLACE TABLE hub.written AS SELECT 1 AS n")
    return dg.MaterializeResult(metadata={"written": True})


def test_a_dagster_run_holds_the_lock_and_one_that_finds_it_taken_says_who_has_it(
    tmp_path, monkeypatch
):
    home = tmp_path / "hub"
    resource = PlacelinkResource(home=str(home))
    result = dg.materialize([warehouse_writer], resources={"placelink": resource})
    assert result.success and not is_locked(home)

    monkeypatch.setenv("PLACELINK_RUN_LOCK_WAIT_SECONDS", "0.01")
    holder = _hold_lock_in_another_process(home, "r-1")
    try:
        busy = dg.materialize(
            [warehouse_writer], resources={"placelink": resource}, raise_on_error=False
        )
    finally:
        holder.communicate("", timeout=SAFETY)
    assert not busy.success
    failure = next(e for e in busy.all_events if e.is_failure)
    assert "run r-1 (a test holder" in str(failure.event_specific_data)
    assert "Could not set lock" not in str(failure.event_specific_data)


def test_the_local_instance_queues_one_run_at_a_time_and_an_old_dagster_yaml_is_brought_up_to_it(
    tmp_path,
):
    from pipelines.orchestration.jobs import WAREHOUSE_TAG, refresh_job, retention_job
    from pipelines.orchestration.run import dagster_instance, ensure_dagster_home

    settings = Settings.from_env({"PLACELINK_HOME": str(tmp_path / "hub")})
    folder = settings.home / "dagster"
    folder.mkdir(parents=True)
    # what an earlier version wrote, or a hand-made one: the default queue lets 10 runs start at once
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    warned: list[str] = []
    assert ensure_dagster_home(settings, warn=warned.append) == folder
    assert warned and "let runs overlap" in warned[0]
    assert yaml.safe_load((folder / "dagster.yaml").read_text())["telemetry"] == {
        "enabled": False
    }  # kept
    with dagster_instance(settings) as instance:
        queue = instance.run_coordinator.get_run_queue_config()
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert queue.max_concurrent_runs == 1
        assert any(
            rule["key"] == WAREHOUSE_TAG and rule["limit"] == 1
            for rule in queue.tag_concurrency_limits
        )
    assert refresh_job.tags[WAREHOUSE_TAG] and retention_job.tags[WAREHOUSE_TAG]
    warned.clear()
    ensure_dagster_home(settings, warn=warned.append)
    assert not warned  # once fixed, left alone


def test_a_deployments_dagster_yaml_is_never_rewritten_but_a_loose_queue_is_named(tmp_path):
    from pipelines.orchestration.run import ensure_dagster_home, queue_problem

    assert (
        queue_problem(yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())) is None
    )
    deployment = tmp_path / "dagster"
    deployment.mkdir()
    loose = "run_queue:\n  max_concurrent_runs: 4\n"
    (deployment / "dagster.yaml").write_text(loose)
    settings = Settings.from_env(
        {"PLACELINK_HOME": str(tmp_path / "hub"), "DAGSTER_HOME": str(deployment)}
    )
    warned: list[str] = []
    ensure_dagster_home(settings, warn=warned.append)
    assert (deployment / "dagster.yaml").read_text() == loose
    assert "allows 4 runs at once" in warned[0]


PER_STEP_DEFINITIONS = """
import os

import dagster as dg

from pipelines.orchestration.definitions import holding_the_run_lock
from assets.resources import PlacelinkResource
from pipelines.core.run_lock import current_holder, is_locked


def _holder(context, placelink):
    home = placelink.settings().home
    holder = current_holder(home)
    # the run's own process holds the lock (not this step's process), for this run
    assert is_locked(home) and holder.run_id == context.run_id and holder.pid != os.getpid()
    return {"holder": holder.pid, "step": os.getpid()}


@dg.asset
def first_step(context, placelink: PlacelinkResource) -> dict:
    return _holder(context, placelink)


@dg.asset
def second_step(context, first_step: dict, placelink: PlacelinkResource) -> dict:
    here = _holder(context, placelink)
    assert here["holder"] == first_step["holder"] and here["step"] != first_step["step"]
    return here


defs = dg.Definitions(assets=[first_step, second_step], resources={"placelink": PlacelinkResource()},
                      executor=holding_the_run_lock(dg.multiprocess_executor.configured({"max_concurrent": 1})))
"""


def test_a_run_with_a_process_per_step_holds_the_lock_from_its_first_step_to_its_last(tmp_path):
    home = tmp_path / "hub"
    definitions = tmp_path / "per_step_definitions.py"
    definitions.write_text(PER_STEP_DEFINITIONS, encoding="utf-8")
    (tmp_path / "dagster").mkdir()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-f",
            str(definitions),
            "-j",
            "__ASSET_JOB",
        ],
        env=hub_env(home, DAGSTER_HOME=str(tmp_path / "dagster")),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SAFETY,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "RUN_SUCCESS" in run.stdout + run.stderr
    assert not is_locked(home) and current_holder(home) is None


PAUSING_DEFINITIONS = """
import os
from pathlib import Path

import dagster as dg

from pipelines.orchestration.definitions import holding_the_run_lock
from assets.resources import PlacelinkResource


@dg.asset
def writes_the_warehouse(placelink: PlacelinkResource) -> None:
    pause = os.environ.get("TEST_PAUSE")
    if pause:  # say "locked", then wait for "go": the test's barrier, never a sleep
        (Path(pause) / "locked").write_text(str(os.getpid()))
        (Path(pause) / "go").read_text()
    with placelink.warehouse() as con:
        con.execute("CREATE TABLE IF NOT EXISTS hub.writes (pid INTEGER)")
        con.execute("INSERT INTO hub.writes VALUES (?)", [os.getpid()])


defs = dg.Definitions(assets=[writes_the_warehouse], resources={"placelink": PlacelinkResource()},
                      executor=holding_the_run_lock(dg.in_process_executor))
"""


def test_two_dagster_runs_launched_together_run_one_after_the_other_and_both_succeed(tmp_path):
    home = tmp_path / "hub"
    definitions = tmp_path / "pausing_definitions.py"
    definitions.write_text(PAUSING_DEFINITIONS, encoding="utf-8")
    (tmp_path / "dagster").mkdir()
    pause = tmp_path / "pause"
    pause.mkdir()
    os.mkfifo(pause / "locked")
    os.mkfifo(pause / "go")
    command = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-f",
        str(definitions),
        "-j",
        "__ASSET_JOB",
    ]
    env = hub_env(home, DAGSTER_HOME=str(tmp_path / "dagster"))
    first = subprocess.Popen(
        command,
        env={**env, "TEST_PAUSE": str(pause)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first_pid = int(_in_thread(lambda: (pause / "locked").read_text()))
    second = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )

    def until_waiting() -> str:
        seen = []
        for line in second.stdout:
            seen.append(line)
            if "waiting for the hub's run lock" in line:
                return line
        return "".join(seen[-30:])

    waiting = _in_thread(until_waiting)
    assert "waiting for the hub's run lock" in waiting and f"pid {first_pid}" in waiting, waiting

    _in_thread(lambda: (pause / "go").write_text("go"))
    first_out, _ = first.communicate(timeout=SAFETY)
    second_out, _ = second.communicate(timeout=SAFETY)
    assert first.returncode == 0, first_out[-3000:]
    assert second.returncode == 0, second_out[-3000:]
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM hub.writes").fetchone()[0] == 2
    finally:
        con.close()
