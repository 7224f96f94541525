"""What an agreement says, as opposed to how it is worded: the content approvers sign.

Every field of a contract file falls in one of three classes (:func:`classify`):

* **significant** - the terms themselves: purpose, prohibited uses, lawful basis, parties,
  who must sign, data items and how they are classified, retention, dates, DPIA, the
  partner's signing key, and any field this module does not know (an unknown change should
  be read by a person, not waved through);
* **status** - ``approval_status``: a suspension or reinstatement is recorded and audited,
  but it does not change what was agreed;
* **editorial** - wording and records: reasons, descriptions, title, version label, review
  date, the signatures themselves.

The **signed content** of a contract is its significant projection: the parsed YAML with
every non-significant leaf removed, lists of named entries (data items, datasets, custom
properties) turned into mappings by name so their order does not matter, dates written as
ISO strings, serialised as canonical JSON (keys sorted, no spaces, UTF-8). Approvers sign
the SHA-256 of those bytes (:mod:`pipelines.governance.approvals`). ``placelink contracts diff`` uses
the same projection: a change is governance-significant exactly when it changes the signed
content, so "diff says significant" and "the signatures are void" can never disagree.

No imports from the rest of placelink: the contract loader, the diff and the approvals all
build on this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

DSA_PROPERTY = "dataSharingAgreement"
# A dataset's custom property saying how the partner's own system writes dates: the kit reads
# them with it, nothing shared changes, so it is editorial (pipelines.governance.contracts).
DATE_FORMAT_PROPERTY = "dateFormats"
# Likewise how its postcodes are written: UK postcodes only ("uk") or any country's ("any").
POSTCODE_FORMAT_PROPERTY = "postcodeFormat"
SIGNIFICANT, STATUS, EDITORIAL = "significant", "status", "editorial"

# DSA term -> (class, topic)
TERMS: dict[str, tuple[str, str]] = {
    "purpose": (SIGNIFICANT, "purpose"),
    "prohibited_uses": (SIGNIFICANT, "purpose (prohibited uses)"),
    "lawful_basis_article6": (SIGNIFICANT, "lawful basis"),
    "article9_condition": (SIGNIFICANT, "lawful basis (Article 9 condition)"),
    "special_category_data": (SIGNIFICANT, "lawful basis (special category data)"),
    "legal_gateway": (SIGNIFICANT, "lawful basis (legal gateway)"),
    "common_law_duty_of_confidentiality": (SIGNIFICANT, "confidentiality basis"),
    "partner_id": (SIGNIFICANT, "parties"),
    "provider": (SIGNIFICANT, "parties"),
    "recipient": (SIGNIFICANT, "parties"),
    "controllership": (SIGNIFICANT, "parties (controllership)"),
    "national_data_opt_out_applies": (SIGNIFICANT, "National Data Opt-out"),
    "retention": (SIGNIFICANT, "retention"),
    "valid_from": (SIGNIFICANT, "validity dates"),
    "expires": (SIGNIFICANT, "validity dates"),
    "dpia_reference": (SIGNIFICANT, "DPIA"),
    "signing_key_fingerprint": (SIGNIFICANT, "partner's signing key"),
    "required_signatures": (SIGNIFICANT, "who must sign"),
    # When deliveries are due: what the partner commits to send, so a change is reviewed (issue 21).
    "delivery": (SIGNIFICANT, "delivery cadence"),
    "approval_status": (STATUS, "approval status"),
    "review_by": (EDITORIAL, "review date"),
    "approvals": (EDITORIAL, "signatures"),
    "approvers": (EDITORIAL, "approvals record (text)"),
}
EDITORIAL_TOP = {
    "version": "version label",
    "name": "title",
    "status": "ODCS status",
    "apiVersion": "ODCS version",
    "kind": "ODCS kind",
    "domain": "domain",
    "tags": "tags",
    "authoritativeDefinitions": "links",
}
ITEM_FIELDS = {
    "classification": (SIGNIFICANT, "data item classification"),
    "logicalType": (SIGNIFICANT, "data item type"),
    "physicalType": (SIGNIFICANT, "data item type"),
    "allowedValues": (SIGNIFICANT, "data item allowed values"),
    "reason": (EDITORIAL, "data item reason (wording)"),
    "description": (EDITORIAL, "data item description"),
    "required": (EDITORIAL, "data item expectations"),
    "unique": (EDITORIAL, "data item expectations"),
    "businessName": (EDITORIAL, "data item description"),
    "examples": (EDITORIAL, "data item description"),
}


def classify(path: tuple[str, ...], kind: str = "changed") -> tuple[str, str]:
    """The class (significant, status or editorial) and topic of the field at ``path``
    (keys from the top of the normalised document; ``kind``: added, removed or changed)."""
    head = path[0]
    if head == "customProperties":
        if len(path) >= 4 and path[1] == DSA_PROPERTY and path[2] == "value":
            return TERMS.get(path[3], (SIGNIFICANT, f"DSA term '{path[3]}' (not a known term)"))
        if len(path) >= 2 and path[1] == DSA_PROPERTY:
            return SIGNIFICANT, "data-sharing agreement terms"
        return SIGNIFICANT, "contract custom property"
    if head == "id":
        return SIGNIFICANT, "agreement id (a different agreement)"
    if head == "description":
        sub = path[1] if len(path) > 1 else ""
        if sub in ("purpose", "limitations"):
            return SIGNIFICANT, "purpose" if sub == "purpose" else "purpose (limitations)"
        return EDITORIAL, "description"
    if head == "schema":
        if len(path) == 2:
            return (
                SIGNIFICANT,
                "new dataset"
                if kind == "added"
                else "dataset removed"
                if kind == "removed"
                else "dataset definition",
            )
        if len(path) >= 4 and path[2] == "properties":
            if len(path) == 4:
                return (
                    SIGNIFICANT,
                    "new data item"
                    if kind == "added"
                    else "data item removed"
                    if kind == "removed"
                    else "data item definition",
                )
            field = (
                (path[5] if len(path) >= 6 else "customProperties")
                if path[4] == "customProperties"
                else path[4]
            )
            return ITEM_FIELDS.get(field, (SIGNIFICANT, f"data item field '{field}'"))
        if len(path) == 3 and path[2] in ("description", "businessName", "physicalName"):
            return EDITORIAL, "dataset description"
        if len(path) >= 4 and path[2] == "customProperties" and path[3] == DATE_FORMAT_PROPERTY:
            return EDITORIAL, "partner's raw date format"
        if len(path) >= 4 and path[2] == "customProperties" and path[3] == POSTCODE_FORMAT_PROPERTY:
            return EDITORIAL, "partner's raw postcode format"
        return SIGNIFICANT, "dataset definition"
    if head in EDITORIAL_TOP:
        return EDITORIAL, EDITORIAL_TOP[head]
    return SIGNIFICANT, f"field '{head}' (not a known editorial field)"


def _keyed(items: list) -> dict | None:
    """A list of mappings named by 'name' or 'property', as a dict by that name; else None."""
    for key in ("name", "property"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            names = [str(i[key]) for i in items]
            if len(set(names)) == len(names):
                return dict(zip(names, items))
    return None


def normalise(value: Any) -> Any:
    """The document as compared and signed: named lists become mappings by name (their order
    carries no meaning), dates become ISO strings, mapping keys become strings."""
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        keyed = _keyed(value)
        if keyed is not None:
            return {k: normalise(v) for k, v in keyed.items()}
        return [normalise(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


_ABSENT = object()


def project(value: Any, path: tuple[str, ...] = ()) -> Any:
    """The significant part of a normalised value found at ``path``; ``_ABSENT`` if none.

    A non-empty mapping is walked; anything else (text, numbers, lists of text, an empty
    mapping) is a leaf, kept only when its path is significant.
    """
    if isinstance(value, dict) and value:
        kept = {}
        for key, item in value.items():
            projected = project(item, path + (key,))
            if projected is not _ABSENT:
                kept[key] = projected
        return kept if kept else _ABSENT
    if not path:
        return _ABSENT
    return value if classify(path)[0] == SIGNIFICANT else _ABSENT


def significant_leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """Paths of the significant leaves under ``path`` (for naming what changed)."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from significant_leaves(item, path + (key,))
    elif path and classify(path)[0] == SIGNIFICANT:
        yield path


def same_significance(old: Any, new: Any, path: tuple[str, ...]) -> bool:
    """Whether two normalised values at ``path`` agree on everything significant (missing is
    ``_ABSENT``)."""
    return project(old, path) == project(new, path)


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no insignificant spaces, UTF-8: the same bytes on every machine for the
    values contracts hold (text, integers, booleans, null, lists and mappings)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def signed_content(document: dict) -> bytes:
    """The bytes approvers sign the digest of: the canonical JSON of the significant projection."""
    projected = project(normalise(document))
    return canonical_json({} if projected is _ABSENT else projected)


def content_digest(document: dict) -> str:
    """``sha256:`` + hex SHA-256 of :func:`signed_content`."""
    return "sha256:" + hashlib.sha256(signed_content(document)).hexdigest()


def absent() -> Any:
    """The marker for "no value here" used by :func:`project` and the diff."""
    return _ABSENT
