"""The publication guard: a new published file may not silently lose what the last one had (issue 20).

Before the new file is swapped in, it is compared with the file it replaces (its ``_about`` and
``_lineage``): a **source** (a partner's dataset, by contract) that fed the last publication and
feeds nothing now, or a **table** that had rows and now has none (or is gone), is a loss. A loss
is allowed only for a known, audited reason:

- retention deleted the dataset's extracts (``retention_deleted`` events);
- the agreement is not in force (suspended, expired, withdrawn from the contracts folder: the
  ``excluded_flows`` of ``_about``);
- the partner withdrew records of the dataset since the last publication;
- an operator accepted it: ``placelink hub accept-publication --reason "..."`` (one
  ``publication_change_accepted`` audit event, used up by the next publication).

A table's loss is known when a source it relied on was lost for a known reason, or its model was
left out because no agreement provides its data. Any other loss blocks the publication: the
published file stays as it was and the run fails with a message naming the table or source and
what to do. Allowed losses are named in the run's summary and the ``published`` audit event, never
silent. Names and counts only: no value from any table.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipelines.core.warehouse import table_exists
from pipelines.governance.audit import AuditLog

ACCEPT_EVENT = "publication_change_accepted"
ACCEPT_COMMAND = 'placelink hub accept-publication --reason "..."'
# The metadata key of the failure by which the publish step says its publication was blocked,
# and its value: what `placelink run` reads to exit 4 (pipelines/orchestration/run_outcome.py).
OUTCOME_KEY = "placelink_outcome"
BLOCKED = "publication_blocked"


@dataclass(frozen=True)
class LastPublication:
    built_at: str
    sources: set[tuple[str, str]]  # (contract_id, dataset)
    table_rows: dict[str, int]
    table_sources: dict[str, set[tuple[str, str]]]  # published table -> sources it relied on


@dataclass(frozen=True)
class Loss:
    kind: str  # "source" or "table"
    name: str  # contract/dataset, or the table
    before: str  # what the last publication had, e.g. "1,234 rows"
    reason: str | None  # the known reason, or None: unexplained

    def describe(self) -> str:
        what = f"source {self.name}" if self.kind == "source" else f"table {self.name}"
        lost = "contributes nothing now" if self.kind == "source" else "has no rows now"
        return f"{what} ({self.before} in the last publication) {lost}" + (
            f": {self.reason}" if self.reason else ""
        )


def last_publication(path: Path) -> LastPublication | None:
    """What the published file at ``path`` holds (None: there is none yet)."""
    if not path.exists():
        return None
    con = duckdb.connect(str(path), read_only=True)
    try:
        about = dict(con.execute("SELECT key, value FROM _about").fetchall())
        sources = {
            (x["contract_id"], x["dataset"]) for x in json.loads(about.get("lineage") or "[]")
        }
        tables = json.loads(about.get("tables") or "[]")
        rows = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}
        table_sources: dict[str, set[tuple[str, str]]] = {}
        if table_exists(con, "main", "_lineage"):
            for table, contract, dataset in con.execute(
                "SELECT DISTINCT published_table, contract_id, dataset FROM _lineage"
            ).fetchall():
                table_sources.setdefault(table, set()).add((contract, dataset))
    finally:
        con.close()
    return LastPublication(about.get("built_at", "?"), sources, rows, table_sources)


def known_source_reasons(
    con: duckdb.DuckDBPyConnection, excluded: list[dict], since: str
) -> dict[tuple[str, str] | str, str]:
    """Why a source may be missing, by (contract, dataset), or by contract id for a whole agreement."""
    reasons: dict[tuple[str, str] | str, str] = {}
    for flow in excluded:
        reasons[flow["contract_id"]] = (
            f"agreement {flow['contract_id']} is {flow['status']} "
            f"({flow.get('reason') or 'not in force'})"
        )
    if table_exists(con, "hub", "retention_deletions"):
        for contract, dataset, extracts in con.execute(
            "SELECT contract_id, dataset, count(*) FROM hub.retention_deletions GROUP BY 1, 2"
        ).fetchall():
            reasons[(contract, dataset)] = (
                f"retention deleted {extracts} extract(s) of it at the end of the "
                "agreement's retention period (audited: retention_deleted)"
            )
    if table_exists(con, "hub", "deliveries"):
        columns = {
            c
            for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE "
                "table_schema = 'hub' AND table_name = 'deliveries'"
            ).fetchall()
        }
        if "kind" in columns:
            try:
                after = dt.datetime.fromisoformat(since).replace(tzinfo=None)
            except ValueError:
                after = dt.datetime.min
            for contract, dataset in con.execute(
                "SELECT DISTINCT contract_id, dataset FROM hub.deliveries WHERE kind = 'withdrawal' "
                "AND status = 'accepted' AND received_at >= ?",
                [after],
            ).fetchall():
                reasons.setdefault(
                    (contract, dataset),
                    "the partner withdrew records of it since the last "
                    "publication (audited: withdrawal)",
                )
    return reasons


def pending_acceptances(audit: AuditLog) -> list[dict[str, Any]]:
    """``publication_change_accepted`` events that no publication has used yet."""
    used: set[str] = set()
    accepted = []
    for event in audit.events():
        if event.get("event") in ("published", "publication_blocked"):
            used.update(event.get("accepted_changes") or [])
        elif event.get("event") == ACCEPT_EVENT and event.get("change_id"):
            accepted.append(event)
    return [e for e in accepted if e["change_id"] not in used]


def record_acceptance(audit: AuditLog, reason: str) -> dict[str, Any]:
    if not reason.strip():
        raise ValueError(
            "give the reason for accepting the loss (--reason): the IG officer reads it"
        )
    return audit.append(ACCEPT_EVENT, change_id=uuid.uuid4().hex[:16], reason=reason.strip())


def audit_blocked(audit: AuditLog, published: Path, losses: list[Loss]) -> dict[str, Any]:
    """The ``publication_blocked`` audit event: what the publication would have lost, and the
    reasons known for each (none for what blocked it)."""
    return audit.append(
        "publication_blocked",
        file=str(published),
        lost=[{"kind": x.kind, "name": x.name, "known_reason": x.reason} for x in losses],
    )


def find_losses(
    last: LastPublication,
    sources_now: set[tuple[str, str]],
    rows_now: dict[str, int],
    known: dict[tuple[str, str] | str, str],
    models_left_out: dict[str, str],
    accepted: list[dict[str, Any]],
) -> list[Loss]:
    """Every loss from ``last`` to the new file, each with its known reason or None."""
    operator = (
        "; ".join(
            f"accepted by {e.get('actor')}: {e.get('reason')} (audited: {ACCEPT_EVENT})"
            for e in accepted
        )
        or None
    )
    losses: list[Loss] = []
    lost_sources: dict[tuple[str, str], str | None] = {}
    for contract, dataset in sorted(last.sources - sources_now):
        reason = known.get((contract, dataset)) or known.get(contract) or operator
        lost_sources[(contract, dataset)] = reason
        losses.append(Loss("source", f"{contract}/{dataset}", "extracts", reason))
    for table, before in sorted(last.table_rows.items()):
        if not before or rows_now.get(table, 0):
            continue
        relied_on = last.table_sources.get(table, set())
        known_reasons = [lost_sources[s] for s in sorted(relied_on) if lost_sources.get(s)]
        left_out = models_left_out.get(f"publish.{table}") or models_left_out.get(table)
        reason = (
            known_reasons[0]
            if known_reasons
            else (
                f"its model was left out: {left_out}"
                if left_out and table not in rows_now
                else None
            )
        ) or operator
        losses.append(Loss("table", table, f"{before:,} rows", reason))
    return losses


def blocked_message(losses: list[Loss], published: Path, built_at: str) -> str:
    unexplained = [loss for loss in losses if loss.reason is None]
    names = "; ".join(loss.describe() for loss in unexplained)
    return (
        f"publication blocked: {names}. Nothing explains it (no retention deletion, agreement out of force "
        f"or withdrawal), so {published} was left as it was (built {built_at}). Find why: a delivery "
        "held in quarantine (`placelink hub quarantine list`), a partner that did not send "
        "(`placelink hub deliveries --overdue`); fix it and run again. If the loss is right, accept it "
        f"for the next run with `{ACCEPT_COMMAND}` (audited)."
    )
