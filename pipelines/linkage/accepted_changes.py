"""Known changes of the link rate, accepted for the next run (issue 20).

The blocking linkage check fails when the link rate moves sharply from the last run that
passed, and a failed run is never the baseline, so a *legitimate* move (retention deleting a
whole dataset, a new partner's first extract) would fail every later run. Such a change is
accepted instead of waved through with an environment variable:

- an operator runs ``placelink linkage accept-change --reason "..."``: one
  ``linkage_change_accepted`` audit event with who, why and the shift the last (failed) run
  measured;
- retention that deletes the last extract of a dataset writes the same event itself
  (actor: the run, reason: which dataset went).

The audit log is the record: the next linkage run reads the events no run has used yet
(:func:`pending_changes`), lets a link-rate move pass when one covers it, and records the ids it
used in ``hub.linkage_runs.accepted_changes``, so each acceptance clears one run and the baseline
moves to that run's link rate. Counts and rates only: no identifier or key.
"""

from __future__ import annotations

import json

import duckdb

from pipelines.core.warehouse import table_exists
from pipelines.governance.audit import AuditLog

# The acceptance itself is an audit event that governance writes too (a flow leaving linkage,
# retention emptying a dataset): pipelines.governance.linkage_changes.
from pipelines.governance.linkage_changes import EVENT, AcceptedChange


def used_change_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Ids of accepted changes some linkage run already used."""
    if not table_exists(con, "hub", "linkage_runs"):
        return set()
    columns = {
        c
        for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE "
            "table_schema = 'hub' AND table_name = 'linkage_runs'"
        ).fetchall()
    }
    if "accepted_changes" not in columns:
        return set()
    used: set[str] = set()
    for (ids,) in con.execute(
        "SELECT accepted_changes FROM hub.linkage_runs WHERE accepted_changes IS NOT NULL"
    ).fetchall():
        used.update(json.loads(ids))
    return used


def pending_changes(con: duckdb.DuckDBPyConnection, audit: AuditLog) -> list[AcceptedChange]:
    """Accepted changes in the audit log that no linkage run has used yet, oldest first."""
    used = used_change_ids(con)
    return [
        AcceptedChange.from_event(e)
        for e in audit.events()
        if e.get("event") == EVENT and e.get("change_id") and e["change_id"] not in used
    ]


def last_measured_shift(con: duckdb.DuckDBPyConnection) -> tuple[float, float] | None:
    """(baseline, measured link rate) of the latest linkage run, if that run failed on a move of the
    link rate; None if the latest run passed or linkage never ran."""
    if not table_exists(con, "hub", "linkage_runs"):
        return None
    columns = {
        c
        for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE "
            "table_schema = 'hub' AND table_name = 'linkage_runs'"
        ).fetchall()
    }
    if "previous_link_rate" not in columns:
        return None
    rows = con.execute(
        "SELECT check_passed, previous_link_rate, link_rate FROM hub.linkage_runs "
        "ORDER BY run_at DESC, rowid DESC LIMIT 1"
    ).fetchall()
    if not rows or rows[0][0] is not False or rows[0][1] is None:
        return None
    return float(rows[0][1]), float(rows[0][2])
