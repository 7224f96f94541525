"""Renewing a data-sharing agreement before it expires.

A renewal is a new version of the agreement with later dates. The dates are signed content, so
the change voids every signature (docs/governance.md): the new version starts as a draft with no
approvals, and every role the agreement names signs it again (``placelink contracts approve``,
:func:`pipelines.governance.approvals.sign_contract`), which makes it approved. The next run
records the new version in ``hub.contract_status`` and audits the change; extracts already
landed under the old version stay as they are.

The version being replaced is kept, word for word with its signatures, in the folder's
``superseded/`` subfolder (which the hub does not read as agreements), so what was agreed and
signed before stays on file beside the audit's ``contract_renewed`` event.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import yaml

from pipelines.governance.approvals import key_lines, replace_block, set_status
from pipelines.governance.audit import AuditLog
from pipelines.governance.contracts import Contract, ContractError, load_contract

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# Where a renewal keeps the version it replaces, inside the agreements' folder: not ``*.yaml`` in
# the folder itself, so never read as an agreement in force.
SUPERSEDED = "superseded"


def next_version(version: str) -> str:
    """The version label a renewal gets: the next minor version of ``X.Y.Z`` (``1.0.0`` →
    ``1.1.0``). Raises :class:`ContractError` for a label that is not ``X.Y.Z``."""
    match = _SEMVER.match(version)
    if match is None:
        raise ContractError(
            f"version {version!r} is not X.Y.Z, so the renewal's version cannot be chosen. "
            "Fix: give the new version explicitly"
        )
    major, minor, _ = (int(p) for p in match.groups())
    return f"{major}.{minor + 1}.0"


def renewed_terms(contract: Contract, years: int = 3) -> tuple[dt.date, dt.date]:
    """(review_by, expires) of a renewal for ``years`` more: both dates moved on by ``years``
    (29 February becomes 28 February)."""

    def later(day: dt.date) -> dt.date:
        try:
            return day.replace(year=day.year + years)
        except ValueError:
            return day.replace(year=day.year + years, day=28)

    return later(contract.terms.review_by), later(contract.terms.expires)


def _set_line(text: str, key: str, value: str, *, top_level: bool) -> str:
    found = [m for m in key_lines(text, key) if not top_level or not m.group("indent")]
    if len(found) != 1:
        where = "at the top of the file" if top_level else "in the agreement terms"
        raise ContractError(f"expected one '{key}:' line {where}, found {len(found)}")
    match = found[0]
    return text[: match.start()] + f"{match.group('indent')}{key}: {value}" + text[match.end() :]


def superseded_path(path: Path, contract: Contract) -> Path:
    """Where a renewal keeps ``contract`` (the version in ``path`` it replaces)."""
    return Path(path).parent / SUPERSEDED / f"{contract.id}-{contract.version}.yaml"


def renew_agreement(
    path: Path, expires: dt.date, review_by: dt.date, version: str | None = None
) -> Contract:
    """Rewrite the agreement in ``path`` as its renewal: ``version`` (default:
    :func:`next_version`), the new ``review_by`` and ``expires``, ``approval_status: draft`` and no
    approvals; every other line (and comment) of the file is kept, and the old version is kept
    as it was in :func:`superseded_path`. Returns the renewed, unsigned agreement. Raises
    :class:`ContractError`, leaving the file as it was, when ``expires`` is not later than
    today's end date, ``review_by`` is after ``expires``, the version is not new, or the rewritten
    file is not a valid agreement."""
    path = Path(path)
    old = load_contract(path)
    if expires <= old.terms.expires:
        raise ContractError(
            f"{path.name}: a renewal of {old.label} must end after {old.terms.expires} (given {expires}). "
            "Fix: give a later expires"
        )
    if review_by > expires:
        raise ContractError(
            f"{path.name}: the renewal's review date {review_by} is after its end date {expires}. "
            "Fix: give a review date on or before the end date"
        )
    version = version or next_version(old.version)
    kept = superseded_path(path, old)
    if version == old.version or kept.with_name(f"{old.id}-{version}.yaml").exists():
        raise ContractError(
            f"{path.name}: version {version} of {old.id} already exists, so the renewal needs a new "
            "version label. Fix: give a later --version"
        )
    text = path.read_text(encoding="utf-8")
    text = _set_line(text, "version", yaml.safe_dump(version).splitlines()[0], top_level=True)
    text = _set_line(text, "review_by", f"'{review_by.isoformat()}'", top_level=False)
    text = _set_line(text, "expires", f"'{expires.isoformat()}'", top_level=False)
    text = set_status(text, "draft")
    text = replace_block(text, "approvals", "approval_status", [])
    partial = path.with_name(f".{path.name}.renewal")
    partial.write_text(text, encoding="utf-8")
    try:
        load_contract(partial)
    except ContractError as exc:
        partial.unlink()
        raise ContractError(
            f"{path.name}: the renewal of {old.label} would not be a valid agreement ({exc}); "
            "the file was left as it was. Fix: renew it by hand"
        ) from None
    if not kept.exists():  # a run killed after the copy and before the replace made it already
        kept.parent.mkdir(parents=True, exist_ok=True)
        copy = kept.with_name(f".{kept.name}.partial")
        copy.write_bytes(path.read_bytes())
        copy.replace(kept)
    partial.replace(path)
    return load_contract(path)


def audit_renewal(audit: AuditLog, old: Contract, new: Contract, at: dt.datetime) -> dict:
    """The ``contract_renewed`` event: which agreement, from which version and end date to which,
    the replaced version's signed content, and where that version is kept (names, dates and
    hashes only)."""
    return audit.append(
        "contract_renewed",
        at=at,
        contract=new.id,
        file=new.path.name,
        from_version=old.version,
        to_version=new.version,
        from_expires=old.terms.expires.isoformat(),
        expires=new.terms.expires.isoformat(),
        review_by=new.terms.review_by.isoformat(),
        superseded_content_sha256=old.content_sha256,
        superseded_file=f"{SUPERSEDED}/{superseded_path(new.path, old).name}",
    )
