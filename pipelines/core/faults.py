"""The test hook that kills ingest at a named step (``PLACELINK_FAULT=ingest:<step>``).

Kept in core so that :class:`pipelines.core.settings.Settings` can validate the variable when a
process starts without importing the hub; :mod:`pipelines.hub.journal` kills the process at the
step it names (:meth:`pipelines.hub.journal.Journal.step`). Production leaves it unset.
"""

from __future__ import annotations

# Every boundary at which PLACELINK_FAULT can kill ingest, in the order a delivery meets them.
# The one list: Settings validates PLACELINK_FAULT against it, and the tests kill at each.
INGEST_STEPS = (
    "received",  # extract_received audited; nothing decided yet
    "checked",  # accepted by every check: journal says where in the vault it goes
    "vault-copied",  # (inbox the hub cannot change) a copy under a hidden name in the vault
    "vaulted",  # the envelope is in the vault; nothing has landed
    "landed",  # rows, delivery record and pending audit event committed
    "accept-audited",  # extract_accepted written; the pending event not yet cleared
    "held",  # journal says it is held, why and where
    "reason-written",  # the reason under its hidden temporary name in quarantine
    "moved",  # the held file in quarantine; its reason still temporary
    "reason-placed",  # the reason beside the held file
    "hold-recorded",  # delivery record and pending audit event committed
    "hold-audited",  # extract_quarantined written; the pending event not yet cleared
    "cleared",  # the pending event cleared; the journal file not yet removed
    "recovered",  # recovery finished one delivery a killed run left
)
FAULT_VARIABLE = "PLACELINK_FAULT"


def parse_fault(value: str) -> str | None:
    """The step named by ``PLACELINK_FAULT`` (``ingest:<step>``), None if unset; ValueError if it
    names no step (a typo would make a fault test pass without ever killing anything)."""
    value = value.strip()
    if not value:
        return None
    area, _, step = value.partition(":")
    if area != "ingest" or step not in INGEST_STEPS:
        raise ValueError(
            f"{FAULT_VARIABLE} is {value!r}: use ingest:<step>, one of {', '.join(INGEST_STEPS)} "
            "(a test hook: it kills the process there; leave it unset in production)"
        )
    return step
