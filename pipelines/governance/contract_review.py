"""What an IG officer reads: an agreement in plain English, and what changed between two versions.

:func:`compare_files` classifies every change as *governance-significant* (it changes the
content approvers sign: purpose, lawful basis, parties, who must sign, data items, retention,
opt-out, validity, DPIA ...), a *status* change (approval status) or *editorial* (wording of
reasons and descriptions, names, version label, review date, the signatures). The classes
come from :mod:`pipelines.governance.contract_content`, so a change is significant exactly when it voids
the signatures. Changed text is shown in full, word by word.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.governance.contract_content import (
    EDITORIAL,
    SIGNIFICANT,
    STATUS,
    absent,
    classify,
    content_digest,
    normalise,
    same_significance,
    significant_leaves,
)
from pipelines.governance.contracts import CLASSIFICATIONS, DSA_PROPERTY, Contract, ContractError
from pipelines.governance.flows import FlowHistory, flow_status

_CLASS_NAMES = {
    "token": "keyed tokens (pseudonyms the hub cannot reverse)",
    "quasi_identifier": "quasi-identifiers",
    "area": "area codes",
    "payload": "payload",
}


def _wrap(text: str, indent: str = "  ") -> str:
    text = " ".join(str(text).split())
    hanging = indent + ("  " if text.startswith("- ") else "")
    return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=hanging)


def describe(
    contract: Contract, on: dt.date, history: FlowHistory | None = None, full: bool = False
) -> str:
    """The agreement as an IG officer would explain it, from the terms in the file."""
    t = contract.terms
    flow = flow_status(contract, on)
    lines = [f"Agreement {contract.label} ({contract.path.name})", _wrap(contract.name, ""), ""]
    state = "in force today" if flow.in_use else f"NOT in force today: {flow.reason}"
    lines.append(f"Status: {flow.status.replace('_', ' ')} ({state})")
    if not flow.in_use:
        lines.append(
            "  Data already received under it is left out of linkage and of every published table."
        )
    lines += [
        "",
        "Who:",
        _wrap(
            f"{t.provider.name} ({t.provider.role.replace('_', ' ')}) shares data with "
            f"{t.recipient.name} ({t.recipient.role.replace('_', ' ')}); they are "
            f"{t.controllership} controllers. Partner id in extracts: '{t.partner_id}'."
        ),
        "Why (purpose):",
        _wrap(t.purpose),
        "Not to be used for:",
    ]
    lines += [_wrap(f"- {use}") for use in t.prohibited_uses]
    lines += ["Lawful basis:", _wrap(f"UK GDPR Article {t.lawful_basis_article6}.")]
    if t.special_category_data:
        lines.append(
            _wrap(
                f"Includes health or social-care (special category) data; Article 9 "
                f"condition: {t.article9_condition}."
            )
        )
    else:
        lines.append("  No special category (health or social-care) data.")
    lines += [
        "Legal gateway / statutory power:",
        _wrap(t.legal_gateway),
        "Common-law duty of confidentiality:",
        _wrap(t.common_law_duty_of_confidentiality),
        "National Data Opt-out:",
        _wrap(
            "applies: the partner kit removes the records of people who opted out, before "
            "tokenising, so they never leave the partner."
            if t.national_data_opt_out_applies
            else "does not apply to this flow."
        ),
        f"DPIA: {t.dpia_reference}",
        "Retention:",
        _wrap(
            f"each extract is kept for {t.retention.period_months} months after the hub "
            f"receives it, then deleted by the daily retention job: {t.retention.deletion_method}."
        ),
        f"Dates: valid from {t.valid_from}, review by {t.review_by}, expires {t.expires} "
        f"({(t.expires - on).days} days from {on}).",
        *_delivery_lines(contract),
        f"Partner's signing key fingerprint: {t.signing_key_fingerprint or 'not registered yet'}",
    ]
    lines += signature_lines(contract)
    if history is not None:
        lines += [
            "What has flowed:",
            f"  {history.deliveries} extract(s) accepted ({history.rows:,} rows), last on "
            f"{history.last_accepted or 'never'}; {history.quarantined} quarantined; "
            f"{history.extracts_deleted} deleted by retention.",
        ]
    lines += ["", f"What may be sent ({len(contract.datasets)} dataset(s)):"]
    for dataset in contract.datasets.values():
        lines.append(f"  {dataset.name}: {dataset.description}")
        for classification in CLASSIFICATIONS:
            items = [i for i in dataset.items if i.classification == classification]
            if not items:
                continue
            if classification == "token" and not full:
                lines.append(
                    _wrap(
                        f"{_CLASS_NAMES[classification]}: "
                        + ", ".join(i.name for i in items)
                        + " (reasons: --full)",
                        "    ",
                    )
                )
                continue
            lines.append(f"    {_CLASS_NAMES[classification]}:")
            for item in items:
                values = f" [{', '.join(item.allowed_values)}]" if item.allowed_values else ""
                lines.append(
                    _wrap(f"{item.name} ({item.logical_type}{values}): {item.reason}", "      ")
                )
    return "\n".join(lines)


def signature_lines(contract: Contract) -> list[str]:
    """Who must sign, who has (when, with which registered key), and signatures that do not count."""
    approval = contract.approval
    lines = [f"Signatures (over the signed content {contract.content_sha256[:19]}...):"]
    if approval is None:
        return lines + ["  not checked (no approver registry given)"]
    met = approval.met
    for requirement in approval.required:
        check = met.get(requirement)
        lines.append(
            _wrap(
                f"{approval.labels[requirement]}: "
                + (f"signed by {check.signer.name} on {check.signed_on}" if check else "NOT SIGNED")
            )
        )
    lines += [_wrap(f"does not count: {c.who}, {c.signed_on}: {c.problem}") for c in approval.void]
    lines.append(_wrap(approval.summary()))
    return lines


def _delivery_lines(contract: Contract) -> list[str]:
    """When extracts are due, per dataset (one line when every dataset has the same cadence)."""
    if contract.terms.delivery is None:
        return ["Deliveries: no cadence agreed (a late or missing extract is not reported)."]
    schedules = {name: contract.delivery_schedule(name) for name in contract.datasets}
    if len(set(schedules.values())) == 1:
        return ["Deliveries:", _wrap(f"{next(iter(schedules.values())).describe()}.")]
    return ["Deliveries:"] + [
        _wrap(f"{name}: {schedule.describe()}.") for name, schedule in schedules.items()
    ]


# ---------------------------------------------------------------- diff


@dataclass(frozen=True)
class Change:
    """One difference between two versions of an agreement.

    ``category`` is ``significant`` (it changes the signed content: re-approval needed),
    ``status`` (the approval status: audited, signatures stand) or ``editorial``.
    """

    category: str
    topic: str
    where: str
    kind: str  # added | removed | changed
    old: Any = None
    new: Any = None
    path: tuple[str, ...] = ()

    @property
    def significant(self) -> bool:
        return self.category == SIGNIFICANT

    def describe(self) -> str:
        """One line: what changed where (the full old and new text: :func:`change_details`)."""
        if self.kind == "added":
            return f"{self.topic}: {self.where} added"
        if self.kind == "removed":
            return f"{self.topic}: {self.where} removed"
        return f"{self.topic}: {self.where} changed"

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "category": self.category,
            "significant": self.significant,
            "topic": self.topic,
            "where": self.where,
            "path": list(self.path),
            "kind": self.kind,
            "old": _plain(self.old),
            "new": _plain(self.new),
        }
        if isinstance(self.old, str) and isinstance(self.new, str):
            record["word_diff"] = [
                {"op": op, "text": text} for op, text in word_diff(self.old, self.new)
            ]
        elif _is_text_list(self.old) and _is_text_list(self.new):
            record["items"] = [
                {
                    "op": op,
                    "text": text,
                    **({"word_diff": [{"op": o, "text": t} for o, t in words]} if words else {}),
                }
                for op, text, words in list_diff(self.old, self.new)
            ]
        return record


def _plain(value: Any) -> Any:
    return None if value is absent() else value


def _is_text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _words(text: str) -> list[str]:
    return str(text).split()


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """Word by word (difflib): ``[(op, text)]`` with op ``equal``, ``removed`` or ``added``;
    whitespace is not significant in contract text (YAML folds it)."""
    a, b = _words(old), _words(new)
    parts: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(("equal", " ".join(a[i1:i2])))
            continue
        if op in ("delete", "replace"):
            parts.append(("removed", " ".join(a[i1:i2])))
        if op in ("insert", "replace"):
            parts.append(("added", " ".join(b[j1:j2])))
    return parts


def render_word_diff(parts: list[tuple[str, str]]) -> str:
    """``[-removed words-]{+added words+}`` around the words that changed (git's plain word diff)."""
    marks = {"equal": "{}", "removed": "[-{}-]", "added": "{{+{}+}}"}
    return " ".join(marks[op].format(text) for op, text in parts)


def list_diff(
    old: list[str], new: list[str]
) -> list[tuple[str, str, list[tuple[str, str]] | None]]:
    """Items of a list of texts: (``removed``/``added``/``changed``/``unchanged``, text, word diff
    of a changed item)."""
    out: list[tuple[str, str, list[tuple[str, str]] | None]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            out += [("unchanged", item, None) for item in old[i1:i2]]
        elif op == "replace" and i2 - i1 == j2 - j1:
            out += [("changed", b, word_diff(a, b)) for a, b in zip(old[i1:i2], new[j1:j2])]
        else:
            out += [("removed", item, None) for item in old[i1:i2]]
            out += [("added", item, None) for item in new[j1:j2]]
    return out


def _block(value: Any) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=10_000).rstrip()


def _wrapped(text: str, indent: str) -> list[str]:
    """Wrapped at 100 columns on spaces, never cut: every word is kept."""
    lines = []
    for paragraph in str(text).splitlines() or [""]:
        lines += textwrap.wrap(
            paragraph,
            width=100,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        ) or [indent.rstrip()]
    return lines


def change_details(change: Change, indent: str = "      ") -> list[str]:
    """The full old and new values of a change: a word diff of changed text, every item of a
    changed list, the whole of an added or removed part. Nothing is shortened."""
    old, new = change.old, change.new
    if change.kind == "added":
        return [
            f"{indent}new: " + line.lstrip() if n == 0 else line
            for n, line in enumerate(_wrapped(_block(new), indent + "     "))
        ]
    if change.kind == "removed":
        return [
            f"{indent}was: " + line.lstrip() if n == 0 else line
            for n, line in enumerate(_wrapped(_block(old), indent + "     "))
        ]
    if isinstance(old, str) and isinstance(new, str):
        return _wrapped(render_word_diff(word_diff(old, new)), indent)
    if _is_text_list(old) and _is_text_list(new):
        lines = []
        signs = {"removed": "- ", "added": "+ ", "changed": "~ ", "unchanged": "  "}
        for op, text, words in list_diff(old, new):
            body = render_word_diff(words) if words else text
            wrapped = _wrapped(body, indent + "  ")
            lines += [indent + signs[op] + wrapped[0].lstrip()] + wrapped[1:]
        return lines
    return _wrapped("was: " + _block(old), indent) + _wrapped("now: " + _block(new), indent)


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
        raise ContractError(
            f"{Path(path).name}: not valid YAML{where}; fix it before comparing"
        ) from None
    except OSError as exc:
        raise ContractError(f"{path}: cannot be read ({exc.strerror})") from None
    if not isinstance(document, dict):
        raise ContractError(f"{Path(path).name}: not an ODCS contract (a YAML mapping)")
    return document


def _walk(
    old: Any, new: Any, path: tuple[str, ...], out: list[tuple[tuple[str, ...], str, Any, Any]]
) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if key not in new:
                out.append((path + (key,), "removed", old[key], absent()))
            elif key not in old:
                out.append((path + (key,), "added", absent(), new[key]))
            else:
                _walk(old[key], new[key], path + (key,), out)
    elif old != new:
        out.append((path, "changed", old, new))


def _categorise(path: tuple[str, ...], kind: str, old: Any, new: Any) -> tuple[str, str]:
    """Significant exactly when the signed content differs under ``path``; the topic names
    the first significant field that differs when the part as a whole is editorial."""
    category, topic = classify(path, kind)
    if not same_significance(old, new, path):
        if category != SIGNIFICANT:
            for value in (new, old):
                leaf = next(significant_leaves(value, path), None)
                if leaf is not None:
                    return SIGNIFICANT, classify(leaf, kind)[1]
        return SIGNIFICANT, topic
    return (STATUS if category == STATUS else EDITORIAL), topic


@dataclass(frozen=True)
class Comparison:
    """Two versions of an agreement: every change, and the digests of their signed content."""

    old_name: str
    new_name: str
    changes: list[Change]
    old_content: str
    new_content: str

    @property
    def signatures_void(self) -> bool:
        return self.old_content != self.new_content

    def of(self, category: str) -> list[Change]:
        return [c for c in self.changes if c.category == category]


def _as_written(document: Any, path: tuple[str, ...]) -> Any:
    """The value at a normalised ``path`` as the file writes it (named lists as lists), for display."""
    value = document
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list):
            value = next(
                (
                    item
                    for item in value
                    if isinstance(item, dict)
                    and key in (str(item.get("name")), str(item.get("property")))
                ),
                None,
            )
        else:
            return None
    return value


def compare_documents(
    old: dict, new: dict, old_name: str = "old", new_name: str = "new"
) -> Comparison:
    """Every difference between two parsed contract documents, significant ones first."""
    a, b = normalise(old), normalise(new)
    raw: list[tuple[tuple[str, ...], str, Any, Any]] = []
    _walk(a, b, (), raw)
    changes = []
    for path, kind, before, after in raw:
        category, topic = _categorise(path, kind, before, after)
        # Added and removed parts are shown as written; changed leaves are plain values anyway.
        shown_old = _as_written(old, path) if kind == "removed" else before
        shown_new = _as_written(new, path) if kind == "added" else after
        changes.append(Change(category, topic, _where(path), kind, shown_old, shown_new, path))
    order = {SIGNIFICANT: 0, STATUS: 1, EDITORIAL: 2}
    changes.sort(key=lambda c: (order[c.category], c.topic))
    return Comparison(old_name, new_name, changes, content_digest(old), content_digest(new))


def compare_contracts(old_path: Path, new_path: Path) -> list[Change]:
    """Every difference between two contract files, significant ones first."""
    return compare_files(old_path, new_path).changes


def compare_files(old_path: Path, new_path: Path) -> Comparison:
    return compare_documents(_read(old_path), _read(new_path), str(old_path), str(new_path))


def format_changes(comparison: Comparison) -> str:
    """The diff an IG officer reads: each change with its full old and new text."""
    if not comparison.changes:
        return f"{comparison.old_name} and {comparison.new_name} are the same agreement, word for word."
    lines = [
        f"Comparing {comparison.old_name} -> {comparison.new_name}",
        "  (word changes: [-removed-] {+added+})",
    ]
    sections = [
        (
            SIGNIFICANT,
            "Governance-significant changes ({n}): they change the signed content, "
            "so the approvals are void and the flow is held until the agreement is re-signed",
        ),
        (STATUS, "Status changes ({n}): recorded and audited; the signatures stand"),
        (EDITORIAL, "Editorial changes ({n}): the signatures stand"),
    ]
    for category, title in sections:
        changes = comparison.of(category)
        if not changes and category == STATUS:
            continue
        lines += ["", title.format(n=len(changes))]
        mark = "!" if category == SIGNIFICANT else "-"
        for change in changes:
            lines.append(f"  {mark} {change.describe()}")
            lines += change_details(change)
        if not changes:
            lines.append("  none")
    lines += [
        "",
        "Signed content: "
        + (
            f"changed ({comparison.old_content[:19]}... -> {comparison.new_content[:19]}...): "
            "every signature on the old version is void"
            if comparison.signatures_void
            else f"unchanged ({comparison.new_content[:19]}...): signatures on the old version still hold"
        ),
    ]
    return "\n".join(lines)


def comparison_json(
    comparison: Comparison, new_problems: list[str] | None = None
) -> dict[str, Any]:
    """The same comparison for tools (``placelink contracts diff --format json``)."""
    return {
        "old": comparison.old_name,
        "new": comparison.new_name,
        "signed_content": {
            "old": comparison.old_content,
            "new": comparison.new_content,
            "signatures_void": comparison.signatures_void,
        },
        "summary": {
            category: len(comparison.of(category)) for category in (SIGNIFICANT, STATUS, EDITORIAL)
        },
        "changes": [c.to_json() for c in comparison.changes],
        "new_is_valid": not new_problems,
        "new_problems": new_problems or [],
    }
