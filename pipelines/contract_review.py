"""What an IG officer reads: an agreement in plain English, and what changed between two versions.

:func:`compare_contracts` classifies every change as *governance-significant* (purpose,
lawful basis, parties, data items, retention, opt-out, validity, status ...) or
*editorial* (wording of reasons and descriptions, names, version label, approvers
record). A change to a field it does not know is treated as significant: an unknown
change should be read by a person, not waved through.
"""
from __future__ import annotations

import datetime as dt
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.contracts import CLASSIFICATIONS, DSA_PROPERTY, Contract, ContractError
from pipelines.governance import FlowHistory, flow_status

_CLASS_NAMES = {"token": "keyed tokens (pseudonyms the hub cannot reverse)",
                "quasi_identifier": "quasi-identifiers", "area": "area codes", "payload": "payload"}


def _wrap(text: str, indent: str = "  ") -> str:
    text = " ".join(str(text).split())
    hanging = indent + ("  " if text.startswith("- ") else "")
    return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=hanging)


def describe(contract: Contract, on: dt.date, history: FlowHistory | None = None,
             full: bool = False) -> str:
    """The agreement as an IG officer would explain it, from the terms in the file."""
    t = contract.terms
    flow = flow_status(contract, on)
    lines = [f"Agreement {contract.label} ({contract.path.name})", _wrap(contract.name, ""), ""]
    state = "in force today" if flow.in_use else f"NOT in force today: {flow.reason}"
    lines.append(f"Status: {flow.status.replace('_', ' ')} ({state})")
    if not flow.in_use:
        lines.append("  Data already received under it is left out of linkage and of every published table.")
    lines += ["", "Who:",
              _wrap(f"{t.provider.name} ({t.provider.role.replace('_', ' ')}) shares data with "
                    f"{t.recipient.name} ({t.recipient.role.replace('_', ' ')}); they are "
                    f"{t.controllership} controllers. Partner id in extracts: '{t.partner_id}'."),
              "Why (purpose):", _wrap(t.purpose), "Not to be used for:"]
    lines += [_wrap(f"- {use}") for use in t.prohibited_uses]
    lines += ["Lawful basis:", _wrap(f"UK GDPR Article {t.lawful_basis_article6}.")]
    if t.special_category_data:
        lines.append(_wrap(f"Includes health or social-care (special category) data; Article 9 "
                           f"condition: {t.article9_condition}."))
    else:
        lines.append("  No special category (health or social-care) data.")
    lines += ["Legal gateway / statutory power:", _wrap(t.legal_gateway),
              "Common-law duty of confidentiality:", _wrap(t.common_law_duty_of_confidentiality),
              "National Data Opt-out:",
              _wrap("applies: the partner kit removes the records of people who opted out, before "
                    "tokenising, so they never leave the partner." if t.national_data_opt_out_applies
                    else "does not apply to this flow."),
              f"DPIA: {t.dpia_reference}",
              "Retention:",
              _wrap(f"each extract is kept for {t.retention.period_months} months after the hub "
                    f"receives it, then deleted by the daily retention job: {t.retention.deletion_method}."),
              f"Dates: valid from {t.valid_from}, review by {t.review_by}, expires {t.expires} "
              f"({(t.expires - on).days} days from {on}).",
              *_delivery_lines(contract),
              f"Partner's signing key fingerprint: {t.signing_key_fingerprint or 'not registered yet'}",
              "Approved by:"]
    lines += [f"  - {a.name}, {a.role}, on {a.date}" for a in t.approvers] or ["  nobody yet"]
    if history is not None:
        lines += ["What has flowed:",
                  f"  {history.deliveries} extract(s) accepted ({history.rows:,} rows), last on "
                  f"{history.last_accepted or 'never'}; {history.quarantined} quarantined; "
                  f"{history.extracts_deleted} deleted by retention."]
    lines += ["", f"What may be sent ({len(contract.datasets)} dataset(s)):"]
    for dataset in contract.datasets.values():
        lines.append(f"  {dataset.name}: {dataset.description}")
        for classification in CLASSIFICATIONS:
            items = [i for i in dataset.items if i.classification == classification]
            if not items:
                continue
            if classification == "token" and not full:
                lines.append(_wrap(f"{_CLASS_NAMES[classification]}: " + ", ".join(i.name for i in items)
                                   + " (reasons: --full)", "    "))
                continue
            lines.append(f"    {_CLASS_NAMES[classification]}:")
            for item in items:
                values = f" [{', '.join(item.allowed_values)}]" if item.allowed_values else ""
                lines.append(_wrap(f"{item.name} ({item.logical_type}{values}): {item.reason}", "      "))
    return "\n".join(lines)


def _delivery_lines(contract: Contract) -> list[str]:
    """When extracts are due, per dataset (one line when every dataset has the same cadence)."""
    if contract.terms.delivery is None:
        return ["Deliveries: no cadence agreed (a late or missing extract is not reported)."]
    schedules = {name: contract.delivery_schedule(name) for name in contract.datasets}
    if len(set(schedules.values())) == 1:
        return ["Deliveries:", _wrap(f"{next(iter(schedules.values())).describe()}.")]
    return ["Deliveries:"] + [_wrap(f"{name}: {schedule.describe()}.") for name, schedule in schedules.items()]


# ---------------------------------------------------------------- diff

@dataclass(frozen=True)
class Change:
    significant: bool
    topic: str
    where: str
    kind: str  # added | removed | changed
    old: Any = None
    new: Any = None

    def describe(self) -> str:
        if self.kind == "added":
            return f"{self.topic}: {self.where} added" + (f": {_short(self.new)}" if _is_leaf(self.new) else "")
        if self.kind == "removed":
            return f"{self.topic}: {self.where} removed" + (f" (was {_short(self.old)})" if _is_leaf(self.old) else "")
        return f"{self.topic}: {self.where} changed from {_short(self.old)} to {_short(self.new)}"


def _is_leaf(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _short(value: Any, width: int = 90) -> str:
    text = " ".join(str(value).split()) if _is_leaf(value) else yaml.safe_dump(value, default_flow_style=True,
                                                                                width=10_000).strip()
    text = text if len(text) <= width else text[: width - 3] + "..."
    return repr(text) if isinstance(value, str) else text


# DSA term -> (significant?, topic)
_TERMS = {
    "purpose": (True, "purpose"),
    "prohibited_uses": (True, "purpose (prohibited uses)"),
    "lawful_basis_article6": (True, "lawful basis"),
    "article9_condition": (True, "lawful basis (Article 9 condition)"),
    "special_category_data": (True, "lawful basis (special category data)"),
    "legal_gateway": (True, "lawful basis (legal gateway)"),
    "common_law_duty_of_confidentiality": (True, "confidentiality basis"),
    "partner_id": (True, "parties"),
    "provider": (True, "parties"),
    "recipient": (True, "parties"),
    "controllership": (True, "parties (controllership)"),
    "national_data_opt_out_applies": (True, "National Data Opt-out"),
    "retention": (True, "retention"),
    "approval_status": (True, "approval status"),
    "valid_from": (True, "validity dates"),
    "expires": (True, "validity dates"),
    "dpia_reference": (True, "DPIA"),
    "signing_key_fingerprint": (True, "partner's signing key"),
    "review_by": (False, "review date"),
    "approvers": (False, "approvals record"),
    # When deliveries are due: what the partner commits to send, so a change is reviewed (issue 21).
    "delivery": (True, "delivery cadence"),
}
_EDITORIAL_TOP = {"version": "version label", "name": "title", "status": "ODCS status",
                  "apiVersion": "ODCS version", "kind": "ODCS kind", "domain": "domain",
                  "tags": "tags", "authoritativeDefinitions": "links"}
_ITEM_FIELDS = {"classification": (True, "data item classification"),
                "logicalType": (True, "data item type"),
                "physicalType": (True, "data item type"),
                "allowedValues": (True, "data item allowed values"),
                "reason": (False, "data item reason (wording)"),
                "description": (False, "data item description"),
                "required": (False, "data item expectations"),
                "unique": (False, "data item expectations"),
                "businessName": (False, "data item description"),
                "examples": (False, "data item description")}


def _classify(path: tuple[str, ...], kind: str) -> tuple[bool, str]:
    head = path[0]
    if head == "customProperties":
        if len(path) >= 4 and path[1] == DSA_PROPERTY and path[2] == "value":
            return _TERMS.get(path[3], (True, f"DSA term '{path[3]}' (not a known term)"))
        if len(path) >= 2 and path[1] == DSA_PROPERTY:
            return True, "data-sharing agreement terms"
        return True, "contract custom property"
    if head == "id":
        return True, "agreement id (a different agreement)"
    if head == "description":
        sub = path[1] if len(path) > 1 else ""
        if sub in ("purpose", "limitations"):
            return True, "purpose" if sub == "purpose" else "purpose (limitations)"
        return False, "description"
    if head == "schema":
        if len(path) == 2:
            return True, "new dataset" if kind == "added" else "dataset removed"
        if len(path) >= 4 and path[2] == "properties":
            if len(path) == 4:
                return True, "new data item" if kind == "added" else "data item removed"
            if path[4] == "customProperties":
                field = path[5] if len(path) >= 6 else "customProperties"
            else:
                field = path[4]
            return _ITEM_FIELDS.get(field, (True, f"data item field '{field}'"))
        if len(path) == 3 and path[2] in ("description", "businessName", "physicalName"):
            return False, "dataset description"
        return True, "dataset definition"
    if head in _EDITORIAL_TOP:
        return False, _EDITORIAL_TOP[head]
    return True, f"field '{head}' (not a known editorial field)"


def _keyed(items: list) -> dict | None:
    """A list of mappings named by 'name' or 'property', as a dict by that name; else None."""
    for key in ("name", "property"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            names = [str(i[key]) for i in items]
            if len(set(names)) == len(names):
                return dict(zip(names, items))
    return None


def _walk(old: Any, new: Any, path: tuple[str, ...], out: list[tuple[tuple[str, ...], str, Any, Any]]) -> None:
    if isinstance(old, list) and isinstance(new, list):
        old_k, new_k = _keyed(old), _keyed(new)
        if old_k is not None and new_k is not None:
            old, new = old_k, new_k
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if key not in new:
                out.append((path + (str(key),), "removed", old[key], None))
            elif key not in old:
                out.append((path + (str(key),), "added", None, new[key]))
            else:
                _walk(old[key], new[key], path + (str(key),), out)
    elif old != new:
        out.append((path, "changed", old, new))


def _where(path: tuple[str, ...]) -> str:
    if path[:3] == ("customProperties", DSA_PROPERTY, "value"):
        rest = path[3:]
        return "DSA term '" + ".".join(rest) + "'" if rest else "DSA terms"
    if path[0] == "schema" and len(path) >= 2:
        where = f"dataset '{path[1]}'"
        if len(path) >= 4 and path[2] == "properties":
            where = f"data item '{path[1]}.{path[3]}'"
            rest = [p for p in path[4:] if p not in ("customProperties", "value")]
            if rest:
                where += " " + ".".join(rest)
        elif len(path) > 2:
            where += " " + ".".join(path[2:])
        return where
    return "'" + ".".join(path) + "'"


def _read(path: Path) -> dict:
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ContractError(f"{Path(path).name}: not valid YAML{where}; fix it before comparing") from None
    except OSError as exc:
        raise ContractError(f"{path}: cannot be read ({exc.strerror})") from None
    if not isinstance(document, dict):
        raise ContractError(f"{Path(path).name}: not an ODCS contract (a YAML mapping)")
    return document


def compare_contracts(old_path: Path, new_path: Path) -> list[Change]:
    """Every difference between two contract files, significant ones first."""
    raw: list[tuple[tuple[str, ...], str, Any, Any]] = []
    _walk(_read(old_path), _read(new_path), (), raw)
    changes = []
    for path, kind, old, new in raw:
        significant, topic = _classify(path, kind)
        changes.append(Change(significant, topic, _where(path), kind, old, new))
    return sorted(changes, key=lambda c: (not c.significant, c.topic))


def format_changes(changes: list[Change], old_name: str, new_name: str) -> str:
    if not changes:
        return f"{old_name} and {new_name} are the same agreement, word for word."
    significant = [c for c in changes if c.significant]
    editorial = [c for c in changes if not c.significant]
    lines = [f"Comparing {old_name} -> {new_name}", "",
             f"Governance-significant changes ({len(significant)}): need IG review and re-approval"]
    lines += [f"  ! {c.describe()}" for c in significant] or ["  none"]
    lines += ["", f"Editorial changes ({len(editorial)}):"]
    lines += [f"  - {c.describe()}" for c in editorial] or ["  none"]
    return "\n".join(lines)
