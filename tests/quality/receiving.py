"""Receive a hub's inbox as a scheduled run does, then read what it left in the warehouse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.core.warehouse import connect
from pipelines.governance.approvals import load_hub_contracts
from pipelines.governance.audit import AuditLog
from pipelines.hub.ingest import receive_inbox
from pipelines.linkage.person_keys import forget_identities


def receive_then_read(settings, now, read: Callable[[Any], Any]):
    """The receipts by file name, and what ``read`` returns from the warehouse after them."""
    contracts, _ = load_hub_contracts(settings)
    con = connect(settings)
    try:
        receipts = receive_inbox(
            settings,
            con,
            contracts,
            {},
            AuditLog(settings.audit_dir),
            now=now,
            erase_identities=forget_identities,
        )
        return {r.file_name: r for r in receipts}, read(con)
    finally:
        con.close()
