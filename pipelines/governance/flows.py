"""Which data flows the hub may use today, and which extracts each flow brought.

A *flow* is everything delivered under one contract. Its landed data is linked and
published only while the contract is in force (approved and within its validity
window). A suspended, terminated, expired or invalid contract keeps its rows in
``landing`` (nothing a partner sent is deleted except by retention) but the next run
leaves them out of linkage, and so out of every model and published table; the
published file's ``_about`` says which flows were left out and why.

The hub remembers the status it saw for each contract (``hub.contract_status``) and
writes an audit event whenever it changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from pipelines.core.stages import stage
from pipelines.core.warehouse import table_exists
from pipelines.governance.audit import AuditLog
from pipelines.governance.contracts import Contract, ContractError
from pipelines.governance.linkage_changes import record_acceptance


@dataclass(frozen=True)
class FlowStatus:
    """The state of one contract's flow on a given day."""

    contract_id: str
    version: str | None
    partner_id: str | None
    status: str
    in_use: bool
    reason: str
    file: str
    content_sha256: str | None = None
    signatures: str | None = None  # e.g. "signed by 3 of 4 required roles; missing: ..."

    @property
    def label(self) -> str:
        return f"{self.contract_id} v{self.version}" if self.version else self.contract_id


def flow_status(contract: Contract, on: dt.date) -> FlowStatus:
    """In use only when approved, signed off by every required role over its current content,
    and within ``valid_from``..``expires`` on ``on``. An approved agreement that lacks a valid
    signature is ``unsigned``: its flow is held until it is (re-)signed."""
    in_force, why = contract.in_force(on)
    status = contract.terms.approval_status
    if status == "approved" and not contract.signed_off:
        status = "unsigned"
    elif status == "approved" and on > contract.terms.expires:
        status = "expired"
    elif status == "approved" and on < contract.terms.valid_from:
        status = "not_yet_valid"
    signatures = (
        contract.approval.summary() if contract.approval is not None else "signatures not checked"
    )
    return FlowStatus(
        contract.id,
        contract.version,
        contract.partner_id,
        status,
        in_force,
        why,
        contract.path.name,
        contract.content_sha256,
        signatures,
    )


def flow_statuses(
    contracts: dict[str, Contract], problems: dict[str, ContractError], on: dt.date
) -> dict[str, FlowStatus]:
    """Every contract by id, valid or not; an invalid contract's flow is held (not in use)."""
    statuses = {cid: flow_status(c, on) for cid, c in contracts.items()}
    for claimed_id, error in problems.items():
        statuses.setdefault(
            claimed_id,
            FlowStatus(
                claimed_id,
                None,
                None,
                "invalid",
                False,
                f"the contract file is invalid, so its flow is held: {str(error).splitlines()[0]}",
                str(error).split(":", 1)[0],
            ),
        )
    return statuses


def flows_in_use(contracts: dict[str, Contract], on: dt.date) -> dict[str, Contract]:
    """The contracts whose landed data may be linked and published on ``on``."""
    return {cid: c for cid, c in contracts.items() if c.in_force(on)[0]}


def landed_rows(con: duckdb.DuckDBPyConnection, contract: Contract) -> int:
    return sum(
        con.execute(f"SELECT count(*) FROM landing.{name}").fetchone()[0]
        for name in contract.datasets
        if table_exists(con, "landing", name)
    )


@stage("governance: contract status and retention")
def record_flow_statuses(
    con: duckdb.DuckDBPyConnection,
    statuses: dict[str, FlowStatus],
    contracts: dict[str, Contract],
    audit: AuditLog,
    now: dt.datetime,
) -> list[dict]:
    """Store each contract's status and audit every change since the last run.

    Also audits, for every flow not in use that still has landed rows, that this run
    leaves those rows out of linkage and publication. Returns the excluded flows as
    they go into the published file's ``_about``.
    """
    before = {
        row[0]: row[1:]
        for row in con.execute(
            "SELECT contract_id, contract_version, status, in_use, content_sha256 FROM hub.contract_status"
        ).fetchall()
    }
    # A contract file that was removed is no longer an agreement the hub can use.
    for contract_id, (version, status, _, _) in before.items():
        if contract_id not in statuses and status != "missing":
            statuses = {
                **statuses,
                contract_id: FlowStatus(
                    contract_id,
                    version,
                    None,
                    "missing",
                    False,
                    "the contract file is no longer in the contracts folder",
                    "",
                ),
            }
    excluded: list[dict] = []
    for contract_id, flow in sorted(statuses.items()):
        previous = before.get(contract_id)
        if previous is None:
            audit.append(
                "contract_status_recorded",
                at=now,
                contract=contract_id,
                contract_version=flow.version,
                status=flow.status,
                in_use=flow.in_use,
                reason=flow.reason,
                content_sha256=flow.content_sha256,
                signatures=flow.signatures,
            )
        elif (previous[1], previous[0]) != (flow.status, flow.version):
            audit.append(
                "contract_status_changed",
                at=now,
                contract=contract_id,
                contract_version=flow.version,
                previous_version=previous[0],
                previous_status=previous[1],
                status=flow.status,
                in_use=flow.in_use,
                reason=flow.reason,
                content_sha256=flow.content_sha256,
                signatures=flow.signatures,
            )
            if bool(previous[2]) != flow.in_use:
                # The flow's records leave (or rejoin) linkage, so the link rate may move sharply: a
                # known change, accepted for the next linkage run (pipelines.linkage.accepted_changes).
                record_acceptance(
                    audit,
                    f"agreement {contract_id} is now {flow.status} (was {previous[1]}): its "
                    f"records {'rejoin' if flow.in_use else 'leave'} linkage",
                    contract=contract_id,
                )
        elif flow.content_sha256 and previous[3] and previous[3] != flow.content_sha256:
            # New terms under the same version label and status (a draft being edited, say).
            audit.append(
                "contract_content_changed",
                at=now,
                contract=contract_id,
                contract_version=flow.version,
                previous_content_sha256=previous[3],
                content_sha256=flow.content_sha256,
                status=flow.status,
                signatures=flow.signatures,
            )
        con.execute("DELETE FROM hub.contract_status WHERE contract_id = ?", [contract_id])
        con.execute(
            "INSERT INTO hub.contract_status (contract_id, contract_version, partner_id, status, in_use, "
            "reason, file, seen_at, content_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                contract_id,
                flow.version,
                flow.partner_id,
                flow.status,
                flow.in_use,
                flow.reason,
                flow.file,
                now.replace(tzinfo=None),
                flow.content_sha256,
            ],
        )
        if not flow.in_use:
            contract = contracts.get(contract_id)
            rows = landed_rows(con, contract) if contract else None
            if rows:
                audit.append(
                    "flow_excluded",
                    at=now,
                    contract=contract_id,
                    contract_version=flow.version,
                    status=flow.status,
                    landed_rows=rows,
                    reason=f"{flow.reason}: its landed rows are left out of linkage and "
                    "of every published table until the agreement is in force again",
                )
            excluded.append(
                {
                    "contract_id": contract_id,
                    "contract_version": flow.version,
                    "status": flow.status,
                    "reason": flow.reason,
                    "landed_rows": rows,
                }
            )
    return excluded


def excluded_flows(
    statuses: dict[str, FlowStatus], con: duckdb.DuckDBPyConnection | None = None
) -> list[dict]:
    """The flows not in use, as recorded in the published file's ``_about``; with ``con``,
    also agreements whose file was removed since an earlier run."""
    flows = [
        {k: v for k, v in asdict(f).items() if k in ("contract_id", "version", "status", "reason")}
        for f in statuses.values()
        if not f.in_use
    ]
    if con is not None and table_exists(con, "hub", "contract_status"):
        flows += [
            {"contract_id": cid, "version": version, "status": "missing", "reason": reason}
            for cid, version, reason in con.execute(
                "SELECT contract_id, contract_version, reason FROM hub.contract_status "
                "WHERE status = 'missing'"
            ).fetchall()
            if cid not in statuses
        ]
    return sorted(flows, key=lambda f: f["contract_id"])


def deleted_extracts(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Extract ids removed by retention (no longer behind any published figure)."""
    if not table_exists(con, "hub", "retention_deletions"):
        return set()
    return {
        row[0] for row in con.execute("SELECT extract_id FROM hub.retention_deletions").fetchall()
    }


def extract_lineage(con: duckdb.DuckDBPyConnection, in_use: dict[str, Contract]) -> list[dict]:
    """The accepted extracts a publication is built from, in the order they were received: those
    of flows in use (``flows_in_use``) that retention has not deleted; withdrawal lists are not."""
    deleted = deleted_extracts(con)
    return [
        dict(zip(("contract_id", "contract_version", "dataset", "extract_id", "rows"), row))
        for row in con.execute("""
                   SELECT contract_id, contract_version, dataset, extract_id, row_count
                   FROM hub.deliveries WHERE status = 'accepted' AND kind IS DISTINCT FROM 'withdrawal'
                   ORDER BY received_at, file_name
               """).fetchall()
        if row[0] in in_use and row[3] not in deleted
    ]


@dataclass
class FlowHistory:
    """What flowed under one contract, read from the audit log (counts only)."""

    deliveries: int = 0
    rows: int = 0
    last_accepted: str | None = None
    quarantined: int = 0
    last_quarantined: str | None = None
    extracts_deleted: int = 0
    withdrawals: int = 0  # withdrawal lists accepted
    records_withdrawn: int = 0  # records they removed from the hub


def _contract_id(value) -> str | None:
    # Events name a contract by id or by label ("id vX.Y.Z").
    if not isinstance(value, str) or not value:
        return None
    return value.split(" v", 1)[0]


def flow_history(audit: AuditLog) -> dict[str, FlowHistory]:
    """Deliveries, rows, last accepted and quarantined extracts per contract id."""
    history: dict[str, FlowHistory] = {}
    for event in audit.events():
        contract_id = _contract_id(event.get("contract"))
        if contract_id is None:
            continue
        h = history.setdefault(contract_id, FlowHistory())
        if event["event"] == "extract_accepted":
            h.deliveries += 1
            h.rows += int(event.get("rows") or 0)
            h.last_accepted = event["at"]
        elif event["event"] == "extract_quarantined":
            h.quarantined += 1
            h.last_quarantined = event["at"]
        elif event["event"] == "retention_deleted":
            h.extracts_deleted += 1
        elif event["event"] == "records_withdrawn":
            h.withdrawals += 1
            h.records_withdrawn += int(event.get("landing_rows_deleted") or 0)
    return history


def linked_contracts(con: duckdb.DuckDBPyConnection, contracts: dict[str, Contract]) -> list[str]:
    """The agreements (``id vX.Y.Z``) whose records this linkage run matched, for its audit event."""
    if not table_exists(con, "hub", "record_identity"):
        return []
    by_dataset = {name: c for c in contracts.values() for name in c.datasets}
    datasets = {
        row[0] for row in con.execute("SELECT DISTINCT dataset FROM hub.record_identity").fetchall()
    }
    return sorted({by_dataset[d].label for d in datasets if d in by_dataset})


def uses_contract(event: dict, contract_id: str) -> bool:
    """Whether an event used the agreement's data without being about it: a linkage run that
    matched its records, a publication that relied on them (they list agreements in ``contracts``)."""
    return any(
        _contract_id(label) == contract_id
        for label in event.get("contracts") or []
        if isinstance(label, str)
    )


def contract_events(audit: AuditLog, contract_id: str) -> list[dict]:
    """Every audit event about one contract (status, signatures, deliveries, quarantines, exclusions,
    withdrawals, deletions) and every linkage run and publication that used its data, oldest first."""
    return [
        e
        for e in audit.events()
        if _contract_id(e.get("contract")) == contract_id or uses_contract(e, contract_id)
    ]


def published_dependants(published: Path) -> dict[str, list[tuple[str, str]]]:
    """Contract id -> [(published table, 'source' or 'linkage')], read from ``_lineage``."""
    path = Path(published)
    if not path.exists():
        return {}
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return {}  # being replaced right now; the register says "unknown"
    try:
        if not table_exists(con, "main", "_lineage"):
            return {}
        dependants: dict[str, list[tuple[str, str]]] = {}
        for cid, table, direct in con.execute("""
                SELECT contract_id, published_table, bool_or(relation = 'source')
                FROM _lineage GROUP BY ALL ORDER BY contract_id, published_table""").fetchall():
            dependants.setdefault(cid, []).append((table, "source" if direct else "linkage"))
        return dependants
    finally:
        con.close()
