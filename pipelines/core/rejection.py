"""Why a delivery was held, in the shape every rejection takes: check, expected, found, what to do.

Raised by the hub's arrival checks (:mod:`pipelines.hub.ingest`) and by the quality gate
(:mod:`pipelines.quality.validate`), which runs before a delivery lands; the hub writes it
beside the held file (:mod:`pipelines.hub.quarantine`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rejection:
    """Why a delivery was held: which check failed, what was expected and found, what to do."""

    check: str
    expected: str
    found: str
    action: str
    contract: str | None = None

    def message(self, file_name: str) -> str:
        under = f" under contract {self.contract}" if self.contract else ""
        return (
            f"extract {file_name} rejected{under}: check '{self.check}' failed: expected "
            f"{self.expected}; found {self.found}. What to do: {self.action}"
        )


class ExtractRejected(Exception):
    def __init__(self, rejection: Rejection):
        super().__init__(rejection.check)
        self.rejection = rejection

    def __reduce__(self):
        # Raised in the quality worker process too: pickle the rejection, not the message.
        return type(self), (self.rejection,)
