"""Ingest in a child process that kills itself at a step (``PLACELINK_FAULT=ingest:<step>``).

The children come from one forkserver that imported ingest once, for the whole session: each
child is a fresh process (no thread or open file of the test's), as ``python -c`` gave, without
paying the import of ingest and what it brings (Polars, DuckDB, pandas, the contracts' schema)
again. Kept apart from the test module so the forkserver imports no pytest.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from pathlib import Path

# Imported here so the forkserver has them before it forks (set_forkserver_preload below).
from pipelines.core.settings import Settings
from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import hub_audit_log
from pipelines.hub.ingest import receive_inbox
from pipelines.linkage.person_keys import forget_identities

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])


def _receive_killed(env: dict[str, str], now: str, log: str) -> None:
    """The child: this environment, output to ``log``, then ingest as a scheduled run does it."""
    os.environ.clear()
    os.environ.update(env)
    with open(log, "ab") as output:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    settings = Settings.from_env()
    contracts, problems = load_hub_contracts(settings)
    con = connect(settings)
    receive_inbox(
        settings,
        con,
        contracts,
        problems,
        hub_audit_log(settings),
        now=dt.datetime.fromisoformat(now),
        erase_identities=forget_identities,
    )
    con.close()


def receive_killed(env: dict[str, str], now: dt.datetime, log: Path, timeout: float) -> int | None:
    """Run ingest in a forked child with ``env`` as its whole environment; its exit code
    (negative: the signal that ended it), or None if it was still running after ``timeout``."""
    child = _CONTEXT.Process(target=_receive_killed, args=(env, now.isoformat(), str(log)))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        return None
    return child.exitcode
