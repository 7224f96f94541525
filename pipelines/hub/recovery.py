"""Before a run receives anything new, it finishes or undoes what a killed run left half done.

For each delivery journal left (pipelines.hub.journal), the warehouse says whether its commit
happened (``hub.deliveries.delivery_id``):

* committed: the rest is finished (the inbox file noted as received if the inbox cannot be
  changed, the audit event written once, the journal removed);
* an accepted delivery not committed: undone. Its envelope goes back to the inbox (or the
  vault's copy is removed), and this run checks it again as if it had just arrived;
* a held delivery not committed: finished if the file is already in quarantine (the reason
  is put beside it), else undone (the hidden reason removed; this run checks the file again).

Then what older versions or a kill inside a step could leave is tidied: a hidden reason with
no held file is removed (audited, naming the file it was about), a held file whose reason was
never renamed gets it, half-written copies and journal files are removed, and an accepted
delivery whose envelope never left the inbox (killed between the commit and the move, before
this journal existed) is moved where its record says. Every repair is audited
(``ingest_recovered``, ``stale_reason_removed``); docs/ingest-states.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipelines.core.stored_paths import resolve_stored, stored_path
from pipelines.hub.delivery_states import (
    Flow,
    _discard,
    _recorded,
    drive_hold,
    extract_accepted_event,
    finish_landed,
    roll_back_accept,
)
from pipelines.hub.inbox import delivery_kind, open_delivery, printable_name
from pipelines.hub.journal import Entry, ReceivedLedger, sync_folder
from pipelines.hub.quarantine import REASON_SUFFIX, pending_reason, reason_path

_PENDING_SUFFIX = REASON_SUFFIX + ".tmp"


def recover(flow: Flow) -> list[dict]:
    """Finish or undo every delivery a killed run left; returns the ``ingest_recovered`` events."""
    events = []
    for stale in flow.journal.stale_temporaries():
        _discard(stale)
    for entry in flow.journal.entries():
        events.append(_recover_delivery(flow, entry))
        flow.journal.step("recovered")
    events += _tidy_quarantine(flow)
    _tidy_vault(flow)
    events += _finish_legacy_accepts(flow)
    ReceivedLedger(flow.home).prune(flow.home / "inbox")
    return events


def _recover_delivery(flow: Flow, entry: Entry) -> dict:
    recorded = _recorded(flow, entry)
    target = flow.path(entry.target)
    if entry.outcome == "accept":
        action = (
            "finished: the delivery had landed; its audit event is written once"
            if recorded
            else None
        )
    elif recorded or os.path.lexists(target) or not entry.source.startswith("inbox/"):
        action = "finished: the file is held in quarantine with its reason"
    else:
        action = None
    if action is None:
        action = (
            "undone: nothing had landed; " + roll_back_accept(flow, entry)
            if entry.outcome == "accept"
            else "undone: the file had not left the inbox and is checked again"
        )
    event = flow.audit.append(
        "ingest_recovered",
        file=entry.label,
        delivery_id=entry.id,
        outcome="accepted" if entry.outcome == "accept" else "held",
        stopped_after=entry.state,
        action=action,
    )
    if action.startswith("undone"):
        if entry.outcome == "hold":
            _discard(pending_reason(target))
        flow.journal.finish(entry)
    elif entry.outcome == "accept":
        finish_landed(flow, entry)
    elif not drive_hold(flow, entry):
        flow.journal.finish(entry)
    return event


def _tidy_quarantine(flow: Flow) -> list[dict]:
    """Hidden reasons a kill left: renamed beside their held file, or removed if it has none."""
    quarantine = flow.home / "quarantine"
    events = []
    if not quarantine.is_dir():
        return events
    for path in sorted(quarantine.iterdir()):
        name = path.name
        if not name.startswith("."):
            continue
        if name.endswith(".tmp") and not name.endswith(_PENDING_SUFFIX):
            _discard(path)  # a reason half written (write_durably's temporary)
            continue
        if not name.endswith(_PENDING_SUFFIX):
            continue
        held = quarantine / name[1:].removesuffix(_PENDING_SUFFIX)
        about = _reason_file_name(path)
        if os.path.lexists(held) and not os.path.lexists(reason_path(held)):
            os.replace(path, reason_path(held))
            sync_folder(quarantine)
            events.append(
                flow.audit.append(
                    "ingest_recovered",
                    file=about or printable_name(held.name),
                    held_as=held.name,
                    outcome="held",
                    action="finished: the held file's reason was put beside it",
                )
            )
            continue
        _discard(path)
        fields = {"file": about} if about else {}
        why = (
            "with no held file beside it: the file it was about was never moved into quarantine (it was "
            "checked again)"
            if not os.path.lexists(held)
            else "beside a held file that already has its reason"
        )
        events.append(
            flow.audit.append(
                "stale_reason_removed",
                **fields,
                temporary=printable_name(name),
                reason=f"a temporary reason file a stopped run left, {why}",
            )
        )
    return events


def _reason_file_name(path: Path) -> str | None:
    """The printable name of the delivery a (temporary) reason file is about, if it says."""
    try:
        with open_delivery(path) as handle:
            reason = json.loads(handle.read(1 << 20))
    except (OSError, ValueError):
        return None
    return (
        printable_name(reason["file"])
        if isinstance(reason, dict) and isinstance(reason.get("file"), str)
        else None
    )


def _tidy_vault(flow: Flow) -> None:
    """Half-made copies (``.<name>.partial``) a killed copy left: the original is still in the inbox."""
    vault = flow.home / "vault"
    if vault.is_dir():
        for partial in vault.glob("*/.*.partial"):
            _discard(partial)


def _finish_legacy_accepts(flow: Flow) -> list[dict]:
    """A delivery recorded accepted whose envelope is still in the inbox and missing from the vault
    (a run of an older version killed between its commit and its move): moved where the record
    says, and its extract_accepted event written if it never was."""
    rows = flow.con.execute(
        "SELECT file_name, extract_id, stored_as, contract_id, contract_version, dataset, row_count, "
        "reporting_period, delivery_kind FROM hub.deliveries WHERE status = 'accepted' AND kind = 'extract' "
        "AND delivery_id IS NULL AND stored_as IS NOT NULL"
    ).fetchall()
    missing = [row for row in rows if not os.path.lexists(resolve_stored(row[2], flow.home))]
    if not missing:
        return []
    inbox = flow.home / "inbox"
    audited = {
        e.get("extract_id") for e in flow.audit.events() if e.get("event") == "extract_accepted"
    }
    events = []
    for (
        file_name,
        extract_id,
        stored_as,
        contract,
        version,
        dataset,
        rows_,
        period,
        kind,
    ) in missing:
        candidates = [inbox / name for name in dict.fromkeys((file_name, Path(stored_as).name))]
        source = next(
            (
                c
                for c in candidates
                if os.path.lexists(c) and delivery_kind(c) is None and _envelope_id(c) == extract_id
            ),
            None,
        )
        if source is None:
            continue
        target = resolve_stored(stored_as, flow.home)
        target.parent.mkdir(parents=True, exist_ok=True)
        events.append(
            flow.audit.append(
                "ingest_recovered",
                file=file_name,
                extract_id=extract_id,
                outcome="accepted",
                action="finished: the accepted envelope was still in the inbox; moved to the vault as recorded",
            )
        )
        os.rename(source, target)
        sync_folder(target.parent)
        if extract_id not in audited:
            event = extract_accepted_event(
                file_name,
                extract_id,
                contract,
                version,
                dataset,
                rows_,
                period,
                kind or "full",
                stored_as=stored_path(target, flow.home),
            )
            flow.audit.append(event.pop("event"), **event)
    return events


def _envelope_id(path: Path) -> str | None:
    from pipelines.exchange.envelope import read_header

    try:
        with open_delivery(path) as stream:
            return read_header(stream).header.envelope_id
    except Exception:  # noqa: BLE001 - recovery names what it can; an unreadable header names nothing
        return None
