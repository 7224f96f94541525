"""Renewing a data-sharing agreement before it expires.

A renewal is a new version of the agreement with later dates. The dates are signed content, so
the change voids every signature (docs/governance.md): the new version starts as a draft with no
approvals, and every role the agreement names signs it again (``placelink contracts approve``,
:func:`pipelines.governance.approvals.sign_contract`).

Until then the renewal waits in the folder's ``renewals/`` subfolder and the version in force
stays in force: the hub reads only the folder's own ``*.yaml`` as agreements, so starting a
renewal never holds a partner's deliveries. When the last role signs (:func:`complete_renewal`),
the version being replaced is kept, word for word with its signatures, in ``superseded/`` and the
renewal takes its place; the next run records the new version in ``hub.contract_status`` and
audits the change; extracts already landed under the old version stay as they are. Both steps are
audited (``contract_renewal_started``, ``contract_renewed``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import yaml

from pipelines.core.settings import Settings
from pipelines.governance.approvals import (
    ApproverRegistry,
    key_lines,
    load_hub_contracts,
    replace_block,
    set_status,
)
from pipelines.governance.audit import AuditLog
from pipelines.governance.contracts import Contract, ContractError, load_contract

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
# Where a renewal keeps the version it replaces, inside the agreements' folder: not ``*.yaml`` in
# the folder itself, so never read as an agreement in force.
SUPERSEDED = "superseded"
# Where a renewal waits for its signatures, inside the agreements' folder (not read as an agreement).
RENEWALS = "renewals"


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


def renewal_path(path: Path, contract_id: str) -> Path:
    """Where the renewal of the agreement in ``path`` waits for its signatures."""
    return Path(path).parent / RENEWALS / f"{contract_id}.yaml"


def in_force_path(renewal: Path, contract_id: str) -> Path:
    """The agreement a renewal in ``renewals/`` replaces."""
    return Path(renewal).parent.parent / f"{contract_id}.yaml"


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def renew_agreement(
    path: Path, expires: dt.date, review_by: dt.date, version: str | None = None
) -> Contract:
    """Write the renewal of the agreement in ``path`` to :func:`renewal_path`: ``version``
    (default: :func:`next_version`), the new ``review_by`` and ``expires``, ``approval_status:
    draft`` and no approvals; every other line (and comment) of the file is kept, and ``path``
    itself is not touched (it stays in force until :func:`complete_renewal`). Returns the
    renewal, unsigned. Raises :class:`ContractError`, writing nothing, when ``expires`` is not
    later than today's end date, ``review_by`` is after ``expires``, the version is not new, a
    renewal already waits for signatures, or the rewritten file is not a valid agreement."""
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
    version = _new_version(path, old, version, "renewal")
    text = path.read_text(encoding="utf-8")
    text = _set_line(text, "review_by", f"'{review_by.isoformat()}'", top_level=False)
    text = _set_line(text, "expires", f"'{expires.isoformat()}'", top_level=False)
    return _write_waiting(path, old, _unsigned(text, version), "renewal", "renew")


def _unsigned(text: str, version: str) -> str:
    """The agreement's text as the next version: ``version``, a draft, no approvals."""
    text = _set_line(text, "version", yaml.safe_dump(version).splitlines()[0], top_level=True)
    text = set_status(text, "draft")
    return replace_block(text, "approvals", "approval_status", [])


def _write_waiting(path: Path, old: Contract, text: str, what: str, verb: str) -> Contract:
    """``text`` written to :func:`renewal_path` if it is a valid agreement (else ContractError,
    nothing written); the waiting version, loaded."""
    waiting = renewal_path(path, old.id)
    waiting.parent.mkdir(parents=True, exist_ok=True)
    partial = waiting.with_name(f".{waiting.name}.partial")
    partial.write_text(text, encoding="utf-8")
    try:
        load_contract(partial)
    except ContractError as exc:
        partial.unlink()
        raise ContractError(
            f"{path.name}: the {what} of {old.label} would not be a valid agreement ({exc}); "
            f"nothing was written. Fix: {verb} it by hand"
        ) from None
    os.replace(partial, waiting)
    return load_contract(waiting)


def _new_version(path: Path, old: Contract, version: str | None, what: str) -> str:
    """The next version's label (``version``, or :func:`next_version`); raises ContractError
    when a version waits for signatures already or the label is not new."""
    waiting = renewal_path(path, old.id)
    if waiting.exists():
        raise ContractError(
            f"{path.name}: a new version of {old.id} already waits for signatures in "
            f"{RENEWALS}/{waiting.name}. Fix: have it signed (placelink contracts approve), or "
            f"delete that file to start again"
        )
    version = version or next_version(old.version)
    kept = superseded_path(path, old)
    if version == old.version or kept.with_name(f"{old.id}-{version}.yaml").exists():
        raise ContractError(
            f"{path.name}: version {version} of {old.id} already exists, so the {what} needs a "
            "new version label. Fix: give a later --version"
        )
    return version


def _properties_end(text: str, dataset: str) -> tuple[int, str]:
    """(offset just after the last item of ``dataset``'s ``properties`` list, the indentation of
    that list's dashes), found from the YAML's own parse (node positions), so any layout the
    agreement is written in is edited in place."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)

    def value(node, key):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    return v
        return None

    schema = value(root, "schema")
    objects = schema.value if isinstance(schema, yaml.SequenceNode) else []
    found = [o for o in objects if getattr(value(o, "name"), "value", None) == dataset]
    properties = value(found[0], "properties") if len(found) == 1 else None
    if not isinstance(properties, yaml.SequenceNode) or not properties.value:
        raise ContractError(f"expected one dataset {dataset} with a list of properties")
    if properties.flow_style:
        raise ContractError(f"the properties of {dataset} are written as a flow list [...]")
    first, last = properties.value[0], properties.value[-1]
    line = text.splitlines()[first.start_mark.line]
    dash = line.rfind("-", 0, first.start_mark.column)
    if dash < 0 or line[:dash].strip():
        raise ContractError(f"the properties of {dataset} are not one item per '- ' line")
    # The list ends where the next token starts (or at the end of its last line): the new items
    # go at the start of the line the next token is on, if only indentation precedes it there.
    lines = text.splitlines(keepends=True)
    row, column = last.end_mark.line, last.end_mark.column
    if row >= len(lines):
        return len(text), " " * dash
    if lines[row][:column].strip():
        row += 1
    return sum(len(ln) for ln in lines[:row]), " " * dash


def amend_agreement(
    path: Path, added: dict[str, list[dict]], version: str | None = None
) -> Contract:
    """Write the next version of the agreement in ``path`` with data items added (``added``:
    {dataset: [ODCS property, ...]}, appended to each dataset's ``properties``) to
    :func:`renewal_path`, as a draft with no approvals: new items are signed content, so every
    required role signs again, and the version in force stays in force until then (it is put in
    force by :func:`complete_renewal`, as a renewal is). Dates are unchanged; every other line and
    comment is kept. Raises :class:`ContractError`, writing nothing, when a version already waits,
    the label is not new, or the result is not the agreement with exactly these items added."""
    path = Path(path)
    old = load_contract(path)
    version = _new_version(path, old, version, "amendment")
    text = path.read_text(encoding="utf-8")
    text += "" if text.endswith("\n") else "\n"
    # From the end of the file back, so earlier offsets stay right.
    edits = sorted(
        (_properties_end(text, dataset) + (items,) for dataset, items in added.items()),
        key=lambda e: -e[0],
    )
    for at, indent, items in edits:
        block = ""
        for item in items:
            dumped = yaml.safe_dump(item, sort_keys=False, allow_unicode=True, width=100)
            lines = dumped.splitlines()
            block += f"{indent}- {lines[0]}\n" + "".join(f"{indent}  {ln}\n" for ln in lines[1:])
        text = text[:at] + block + text[at:]
    text = _unsigned(text, version)
    expected = yaml.safe_load(path.read_text(encoding="utf-8"))
    expected["version"] = version
    for obj in expected["schema"]:
        if obj.get("name") in added:
            obj["properties"] = obj["properties"] + added[obj["name"]]
    try:
        written = yaml.safe_load(text)
    except yaml.YAMLError:
        written = None
    for doc in (expected, written) if isinstance(written, dict) else ():
        for prop in doc.get("customProperties", []):
            if prop.get("property") == "dataSharingAgreement":
                prop["value"]["approval_status"] = "draft"
                prop["value"]["approvals"] = []
    if written != expected:
        raise ContractError(
            f"{path.name}: the amended text of {old.label} did not read back as the agreement with "
            "those items added; nothing was written. Fix: add the items by hand"
        )
    return _write_waiting(path, old, text, "amendment", "amend")


def _waiting_version(old: Contract, new: Contract) -> dict[str, str]:
    """What both started events say of a version written to ``renewals/``: which agreement, its
    file, and from which version to which."""
    return {
        "contract": new.id,
        "file": f"{RENEWALS}/{new.path.name}",
        "from_version": old.version,
        "to_version": new.version,
    }


def audit_amendment_started(
    audit: AuditLog, old: Contract, new: Contract, added: dict[str, list[dict]], at: dt.datetime
) -> dict:
    """The ``contract_amendment_started`` event: a new version with items added, waiting for
    signatures (names and versions only)."""
    return audit.append(
        "contract_amendment_started",
        at=at,
        **_waiting_version(old, new),
        items_added={dataset: [i["name"] for i in items] for dataset, items in added.items()},
    )


def complete_renewal(renewal: Path, registry: ApproverRegistry) -> tuple[Contract, Contract] | None:
    """Put the renewal in ``renewal`` (a file in ``renewals/``) in force once every required role
    has signed it (checked against ``registry``): the version it replaces is kept in
    :func:`superseded_path`, then the renewal replaces it in one rename. Returns (replaced, now in
    force), or None while signatures are missing. A run killed between the two steps is finished
    by the next call (the copy is made once)."""
    renewal = Path(renewal)
    new = load_contract(renewal)
    if new.terms.approval_status != "approved" or not registry.check(new).complete:
        return None
    path = in_force_path(renewal, new.id)
    old = load_contract(path)
    kept = superseded_path(path, old)
    if not kept.exists():
        _write_atomically(kept, path.read_bytes())
    os.replace(renewal, path)
    return old, load_contract(path)


def waiting_renewals(
    settings: Settings, folder: Path | None = None
) -> dict[str, Contract | ContractError]:
    """Each renewal waiting for signatures in the agreements folder's ``renewals/`` (``folder``,
    default ``settings.contracts_dir``), by agreement id: the renewal, signatures checked against
    the hub's approver registry, or why its file is not a valid agreement."""
    waiting = Path(folder or settings.contracts_dir) / RENEWALS
    if not waiting.is_dir():
        return {}
    valid, problems = load_hub_contracts(settings, waiting)
    return {**problems, **valid}


def signed_so_far(renewal: Contract) -> str:
    """``2 of 4 signed``: how many of the roles the renewal names have signed it."""
    approval = renewal.approval
    if approval is None:
        return "signatures not checked"
    return f"{len(approval.required) - len(approval.missing)} of {len(approval.required)} signed"


def waiting_kind(renewal: Contract) -> str:
    """``amendment`` for a waiting version that ends when the version in force does (items
    added, :func:`amend_agreement`), else ``renewal``."""
    try:
        in_force = load_contract(in_force_path(renewal.path, renewal.id))
    except (ContractError, OSError):
        return "renewal"
    return "amendment" if renewal.terms.expires == in_force.terms.expires else "renewal"


def describe_renewal(renewal: Contract | ContractError) -> str:
    """A waiting renewal in words: its version, end date and signatures so far, or why it is
    invalid."""
    if isinstance(renewal, ContractError):
        return f"renewal in {RENEWALS}/ is invalid: {renewal}"
    return (
        f"{waiting_kind(renewal)} {renewal.version} (expires {renewal.terms.expires}) waiting for "
        "signatures: "
        f"{signed_so_far(renewal)}"
    )


def audit_renewal_started(audit: AuditLog, old: Contract, new: Contract, at: dt.datetime) -> dict:
    """The ``contract_renewal_started`` event: a renewal written, waiting for signatures (names,
    versions and dates only)."""
    return audit.append(
        "contract_renewal_started",
        at=at,
        **_waiting_version(old, new),
        from_expires=old.terms.expires.isoformat(),
        expires=new.terms.expires.isoformat(),
        review_by=new.terms.review_by.isoformat(),
    )


def audit_renewal(audit: AuditLog, old: Contract, new: Contract, at: dt.datetime) -> dict:
    """The ``contract_renewed`` event, when a signed renewal replaces the version in force: which
    agreement, from which version and end date to which, the replaced version's signed content,
    and where that version is kept (names, dates and hashes only)."""
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
