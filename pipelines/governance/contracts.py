"""Data-sharing agreements as code: ODCS v3 contracts with DSA terms.

A contract file is an Open Data Contract Standard v3 document, validated with the
``open-data-contract-standard`` models and its JSON Schema, with the data-sharing
agreement (DSA) terms in a ``customProperties`` entry named ``dataSharingAgreement``,
validated by :class:`AgreementTerms`. Each ODCS schema object is one dataset the
partner may deliver; each property is one data item with a classification and a
reason (data minimisation).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal, Protocol

import jsonschema
import yaml
from open_data_contract_standard.model import OpenDataContractStandard
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from pipelines.governance.contract_content import (
    DATE_FORMAT_PROPERTY,
    DSA_PROPERTY,
    POSTCODE_FORMAT_PROPERTY,
    content_digest,
)


class SignOff(Protocol):
    """What a contract keeps of its checked signatures: whether they are complete and, if not,
    what is missing (:class:`pipelines.governance.approvals.ApprovalCheck`, which imports this
    module: the approvals are checked over contracts, not the other way round)."""

    @property
    def complete(self) -> bool: ...

    def shortfall(self) -> str: ...


CLASSIFICATIONS = ("token", "quasi_identifier", "area", "payload")
APPROVAL_STATUSES = ("draft", "approved", "suspended", "expired", "terminated")
ARTICLE6_BASES = {
    "6(1)(a)": "consent",
    "6(1)(b)": "contract",
    "6(1)(c)": "legal obligation",
    "6(1)(d)": "vital interests",
    "6(1)(e)": "public task",
    "6(1)(f)": "legitimate interests",
}
ARTICLE9_CONDITIONS = {f"9(2)({letter})" for letter in "abcdefghij"}
# Who may sign an agreement off (pipelines.governance.approvals): a role at the provider or the recipient.
SIGNING_ROLES = {
    "caldicott_guardian": "Caldicott Guardian",
    "siro": "Senior Information Risk Owner",
    "dpo": "Data Protection Officer",
    "information_governance_lead": "Information Governance Lead",
}
PARTIES = ("provider", "recipient")
# libyaml's safe loader when PyYAML has it (the same documents, several times faster).
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DELIVERY_FREQUENCIES = ("monthly", "quarterly")
DELIVERY_KINDS = ("full", "delta")


class ContractError(ValueError):
    """A contract file that cannot be used; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Party(_Strict):
    name: str
    role: Literal["controller", "joint_controller", "processor"]


class Retention(_Strict):
    period_months: int
    deletion_method: str

    @field_validator("period_months")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("retention period must be a positive number of months")
        return value


class Approver(_Strict):
    """The text record of approvers that agreements carried before approvals were signatures:
    still read, never trusted (``contracts check`` warns)."""

    name: str
    role: str
    date: dt.date


class RequiredSignature(_Strict):
    """A role that must sign the agreement off: e.g. the provider's Caldicott Guardian."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["caldicott_guardian", "siro", "dpo", "information_governance_lead"]
    party: Literal["provider", "recipient"]

    @property
    def role_name(self) -> str:
        return SIGNING_ROLES[self.role]


class ApprovalSignature(_Strict):
    """One approver's signature over the agreement's signed content (pipelines.governance.approvals).

    ``signed_at`` is kept as the exact text that was signed."""

    role: str
    party: str
    name: str
    key: str
    signed_at: str
    content_sha256: str
    signature: str


def _due_day(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= 28:
        raise ValueError(f"due_day {value} is not a day that every month has (1 to 28)")
    return value


class DatasetDelivery(_Strict):
    """A dataset's own cadence where it differs from the agreement's (any term may be left out)."""

    frequency: Literal["monthly", "quarterly"] | None = None
    due_day: int | None = None
    kind: Literal["full", "delta"] | None = None

    @field_validator("due_day")
    @classmethod
    def _every_month_has_it(cls, value: int | None) -> int | None:
        return _due_day(value)


class DeliveryTerms(_Strict):
    """When the partner delivers (issue 21): every month (or quarter), the period's extract is due
    by ``due_day`` of the month after it ends; ``kind`` says whether a regular delivery is a full
    snapshot of the partner's records or a delta (the records new or changed since the last one).
    ``datasets`` overrides any of these for one dataset."""

    frequency: Literal["monthly", "quarterly"]
    due_day: int
    kind: Literal["full", "delta"] = "full"
    datasets: dict[str, DatasetDelivery] = {}

    @field_validator("due_day")
    @classmethod
    def _every_month_has_it(cls, value: int) -> int:
        return _due_day(value)


@dataclass(frozen=True)
class DeliverySchedule:
    """One dataset's cadence: ``frequency``, the ``due_day`` of the month after the period, ``kind``."""

    frequency: str
    due_day: int
    kind: str

    def describe(self) -> str:
        what = (
            "a full snapshot"
            if self.kind == "full"
            else "a delta (records new or changed since the last one)"
        )
        return f"{self.frequency}, as {what}, due by day {self.due_day} of the month after the period ends"


class AgreementTerms(_Strict):
    """The DSA terms an IG officer signs off, carried in the contract's customProperties."""

    partner_id: str
    provider: Party
    recipient: Party
    controllership: Literal["joint", "separate"]
    purpose: str
    prohibited_uses: list[str]
    lawful_basis_article6: str
    # Health or social-care data is special category data (UK GDPR Art. 9): the agreement
    # must say so explicitly, and then an Article 9(2) condition is required.
    special_category_data: bool
    article9_condition: str | None = None
    legal_gateway: str
    common_law_duty_of_confidentiality: str
    national_data_opt_out_applies: bool
    dpia_reference: str
    retention: Retention
    valid_from: dt.date
    review_by: dt.date
    expires: dt.date
    signing_key_fingerprint: str | None = None
    approval_status: Literal["draft", "approved", "suspended", "expired", "terminated"]
    # Who must sign (both sides), and their signatures; approval is these, not a list of names.
    required_signatures: list[RequiredSignature]
    approvals: list[ApprovalSignature] = []
    approvers: list[Approver] = []

    @field_validator("approvals", "approvers", mode="before")
    @classmethod
    def _empty_list(cls, value):
        return [] if value is None else value  # "approvals:" with nothing under it

    # Optional: when deliveries are due (a missing or late delivery is then reported).
    delivery: DeliveryTerms | None = None

    @field_validator("lawful_basis_article6")
    @classmethod
    def _article6(cls, value: str) -> str:
        if not any(value.strip().startswith(code) for code in ARTICLE6_BASES):
            allowed = ", ".join(f"{code} {name}" for code, name in ARTICLE6_BASES.items())
            raise ValueError(
                f"'{value}' is not a UK GDPR Article 6 lawful basis (use one of: {allowed})"
            )
        return value

    @field_validator("article9_condition")
    @classmethod
    def _article9(cls, value: str | None) -> str | None:
        if value is not None and not any(value.strip().startswith(c) for c in ARTICLE9_CONDITIONS):
            raise ValueError(
                f"'{value}' is not a UK GDPR Article 9(2) condition (e.g. '9(2)(h) health or social care')"
            )
        return value

    @model_validator(mode="after")
    def _terms_agree(self) -> AgreementTerms:
        # Checked together so `contracts check` reports every problem in one pass.
        problems = []
        if self.special_category_data and not self.article9_condition:
            problems.append(
                "special_category_data is true (health or social-care data) but "
                "article9_condition is missing"
            )
        parties = {r.party for r in self.required_signatures}
        if set(PARTIES) - parties:
            problems.append(
                "required_signatures names no role at the "
                + " or ".join(sorted(set(PARTIES) - parties))
                + ": both sides sign an agreement off"
            )
        pairs = [(r.role, r.party) for r in self.required_signatures]
        if len(set(pairs)) != len(pairs):
            problems.append("required_signatures lists the same role of the same party twice")
        if self.expires <= self.valid_from:
            problems.append(
                f"expires ({self.expires}) must be after valid_from ({self.valid_from})"
            )
        elif not (self.valid_from <= self.review_by <= self.expires):
            problems.append(
                f"review_by ({self.review_by}) must fall between valid_from and expires"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


@dataclass(frozen=True)
class DataItem:
    """One column the partner may send: name, type, classification and why it is needed."""

    name: str
    logical_type: str
    classification: str
    required: bool
    unique: bool
    reason: str
    allowed_values: tuple[str, ...] | None = None


# How a date may be written in a partner's raw extract: the parts a declared format is made
# of, each with the strftime directive that reads it and the shape its text must have.
# Two-digit years are refused: 01/02/03 cannot say which century a date of birth is in.
_DATE_PARTS = {
    "yyyy": ("%Y", r"\d{4}"),
    "month": ("%B", r"[A-Za-z]{3,9}"),
    "mon": ("%b", r"[A-Za-z]{3}"),
    "mm": ("%m", r"\d{1,2}"),
    "dd": ("%d", r"\d{1,2}"),
}
_DATE_SEPARATORS = "/-. "


@dataclass(frozen=True)
class DateFormat:
    """A date format a partner's raw extract may use (declared in the contract, e.g.
    ``dd/mm/yyyy``): ``strftime`` reads it, and only text of the ``shape`` (a regex) is read."""

    declared: str
    strftime: str
    shape: str

    @classmethod
    def parse(cls, declared: str) -> DateFormat:
        """``dd/mm/yyyy``, ``yyyy-mm-dd``, ``dd-mon-yyyy``, ``dd month yyyy``, ``yyyymmdd`` ...;
        raises ValueError saying what is wrong."""
        text, strftime, shape, seen = str(declared).strip().lower(), "", "", []
        while text:
            part = next((p for p in _DATE_PARTS if text.startswith(p)), None)
            if part is not None:
                directive, pattern = _DATE_PARTS[part]
                strftime, shape = strftime + directive, shape + pattern
                seen.append("month" if part in ("mm", "mon", "month") else part)
                text = text[len(part) :]
            elif text[0] in _DATE_SEPARATORS:
                strftime, shape = strftime + text[0], shape + re.escape(text[0])
                text = text[1:]
            elif text.startswith("yy"):
                raise ValueError(
                    "two-digit years (yy) cannot tell 1925 from 2025: ask for four-digit "
                    "years (yyyy)"
                )
            else:
                raise ValueError(
                    f"'{text[0]}' is neither a date part (dd, mm, mon, month, yyyy) nor a "
                    f"separator ({' '.join(repr(c) for c in _DATE_SEPARATORS)})"
                )
        if not any(c in declared for c in _DATE_SEPARATORS):
            # Without separators (yyyymmdd) only fixed widths tell where a part ends.
            shape = shape.replace(r"\d{1,2}", r"\d{2}")
        if sorted(seen) != ["dd", "month", "yyyy"]:
            raise ValueError(
                "a date format has each of day (dd), month (mm, mon or month) and year "
                "(yyyy) exactly once"
            )
        return cls(declared=str(declared).strip(), strftime=strftime, shape=f"^{shape}$")


ISO_DATE = DateFormat("yyyy-mm-dd", "%Y-%m-%d", r"^\d{4}-\d{2}-\d{2}$")
# A dataset's postcodeFormat: UK postcodes only, or postal codes of any country too.
POSTCODE_FORMATS = ("uk", "any")


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    items: tuple[DataItem, ...]
    # How dates are written in the partner's raw extract (besides ISO yyyy-mm-dd, always read).
    date_formats: tuple[DateFormat, ...] = ()
    # How its postcodes are written: "uk" (UK postcodes only), "any" (any country's postal
    # codes), or None (not declared: the kit reads them as "any" when most are another
    # country's, else as "uk"; pipelines.partner_kit.features).
    postcode_format: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(item.name for item in self.items)

    def item(self, name: str) -> DataItem:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(name)

    def columns_classified(self, *classifications: str) -> tuple[str, ...]:
        return tuple(i.name for i in self.items if i.classification in classifications)


@dataclass(frozen=True)
class Contract:
    """A validated data-sharing agreement: who may send what, why, and until when."""

    id: str
    version: str
    name: str
    path: Path
    terms: AgreementTerms
    datasets: dict[str, Dataset] = field(default_factory=dict)
    # sha256 of the signed content (pipelines.governance.contract_content): what every approver signs.
    content_sha256: str = ""
    # The signatures as checked against the hub's approver registry; None when not checked.
    approval: SignOff | None = field(default=None, compare=False)

    @property
    def partner_id(self) -> str:
        return self.terms.partner_id

    @property
    def label(self) -> str:
        return f"{self.id} v{self.version}"

    def dataset(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            raise ContractError(
                f"contract {self.label} ({self.path.name}) has no dataset '{name}' "
                f"(datasets: {', '.join(sorted(self.datasets))})"
            ) from None

    @property
    def signed_off(self) -> bool:
        """Every required role has a valid signature over the current content (checked against
        the hub's approver registry when the contract was loaded)."""
        return self.approval is not None and self.approval.complete

    def delivery_schedule(self, dataset: str) -> DeliverySchedule | None:
        """When ``dataset`` is due, from the agreement's ``delivery`` term; None if it sets none."""
        terms = self.terms.delivery
        if terms is None:
            return None
        own = terms.datasets.get(dataset) or DatasetDelivery()
        return DeliverySchedule(
            own.frequency or terms.frequency, own.due_day or terms.due_day, own.kind or terms.kind
        )

    def in_force(self, on: dt.date) -> tuple[bool, str]:
        """Whether extracts may be accepted on ``on``, and why not if they may not."""
        t = self.terms
        if t.approval_status != "approved":
            return False, f"approval status is '{t.approval_status}', not 'approved'"
        if self.approval is None:
            return (
                False,
                "its approval signatures were not checked against the hub's approver registry",
            )
        if not self.approval.complete:
            return False, self.approval.shortfall()
        if on < t.valid_from:
            return False, f"not valid until {t.valid_from}"
        if on > t.expires:
            return False, f"expired on {t.expires}"
        return True, "approved and within its validity window"


@cache
def _odcs_json_schema() -> dict:
    text = resources.files("open_data_contract_standard").joinpath("schema.json").read_text()
    return json.loads(text)


def _where(error: jsonschema.ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


# What to do about each DSA term, shown with the error so an IG officer can fix the file.
TERM_FIXES = {
    "partner_id": "the short partner id the partner kit writes in every extract, e.g. 'nhs'",
    "provider": "the organisation sending the data: {name: ..., role: controller}",
    "recipient": "the organisation receiving the data: {name: ..., role: controller}",
    "controllership": "'joint' or 'separate' controllers",
    "purpose": "the specific purpose the data is shared for, in one or two sentences",
    "prohibited_uses": "a list of what the data may NOT be used for",
    "lawful_basis_article6": "one of " + ", ".join(f"'{c} {n}'" for c, n in ARTICLE6_BASES.items()),
    "special_category_data": "true for health or social-care data (then give article9_condition), else false",
    "article9_condition": "an Article 9(2) condition such as '9(2)(h) health or social care' "
    "or '9(2)(g) substantial public interest'",
    "legal_gateway": "the statutory power or legal gateway that permits the sharing",
    "common_law_duty_of_confidentiality": "how the common-law duty of confidentiality is satisfied "
    "(consent, s.251 support, de-identified at source, not applicable because ...)",
    "national_data_opt_out_applies": "true if the National Data Opt-out must be applied at source, else false",
    "dpia_reference": "the reference of the DPIA that covers this flow, e.g. 'DPIA-ORG-2026-001'",
    "retention": "{period_months: N, deletion_method: ...}",
    "retention.period_months": "a whole number of months, more than 0",
    "retention.deletion_method": "how the hub deletes the data at the end of retention",
    "valid_from": "the first date extracts may be accepted, as YYYY-MM-DD",
    "review_by": "the date the agreement must be reviewed, between valid_from and expires",
    "expires": "the last date extracts may be accepted, after valid_from, as YYYY-MM-DD",
    "approval_status": "one of " + ", ".join(APPROVAL_STATUSES),
    "required_signatures": "a list of {role, party} that must sign, with role one of "
    + ", ".join(SIGNING_ROLES)
    + " and party provider or recipient, e.g. "
    "[{role: caldicott_guardian, party: provider}, {role: siro, party: recipient}]",
    "approvals": "the signatures written by `placelink contracts approve` (do not edit them by hand)",
    "approvers": "nothing: approvals are signatures now (`placelink contracts approve`); remove it",
    "delivery": "{frequency: monthly or quarterly, due_day: 1-28 (day of the month after the period), "
    "kind: full or delta, datasets: {DATASET: {any of those}}}, or leave it out",
}


def _term_problems(path: Path, error: dict) -> list[str]:
    loc = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
    lines = []
    for message in error["msg"].removeprefix("Value error, ").split("\n"):
        key = loc or next(
            (
                k
                for k in ("article9_condition", "review_by", "expires", "required_signatures")
                if k in message
            ),
            "",
        )
        if error["type"] == "missing":
            message = "required term is missing"
        elif error["type"] == "extra_forbidden":
            message = "is not a DSA term (check the spelling)"
        fix = TERM_FIXES.get(key) or TERM_FIXES.get(key.split(".")[0])
        where = f"DSA term '{key}'" if key else "DSA terms"
        lines.append(
            f"{path.name}: {where}: {message}" + (f". Fix: set it to {fix}" if fix else "")
        )
    return lines


# A value a drafted agreement leaves for the IG officer to write (``placelink contracts new``): an
# agreement holding one is invalid, so it can be neither signed nor enforced.
TO_COMPLETE = "TO COMPLETE"


def _unwritten(node, where: str = ""):
    """Where in a contract document a value still starts with :data:`TO_COMPLETE` (a list item is
    named by its ``name`` or ``property``)."""
    if isinstance(node, str):
        if node.strip().startswith(TO_COMPLETE):
            yield where or "(the document)"
    elif isinstance(node, dict) and set(node) == {"property", "value"}:
        yield from _unwritten(node["value"], where)  # a custom property: named by its property
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _unwritten(value, f"{where}/{key}" if where else str(key))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            label = n
            if isinstance(value, dict):
                label = value.get("name") or value.get("property") or n
            yield from _unwritten(value, f"{where}/{label}")


def load_contract(path: Path) -> Contract:
    """Read and validate one contract file; raise :class:`ContractError` naming the file and field.

    A file whose text was validated before in this process is not validated again (the same
    text at the same path gives the same contract): a run reads the agreements in most of its
    steps, and the ODCS schema check took about a second for the demo's three on the loaded
    2-core machine (issue 24), every time."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ContractError(f"{path.name}: cannot be read ({exc.strerror})") from None
    return _validated_contract(path, text)


@lru_cache(maxsize=256)
def _validated_contract(path: Path, text: str) -> Contract:
    # lru_cache keeps only what returned: a file that failed is checked again next time.
    try:
        document = yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ContractError(
            f"{path.name}: not valid YAML{where}: {getattr(exc, 'problem', exc)}. "
            "Fix the YAML syntax and run `placelink contracts check`."
        ) from None
    if not isinstance(document, dict):
        raise ContractError(
            f"{path.name}: expected an ODCS contract (a YAML mapping), found {type(document).__name__}"
        )
    unwritten = list(_unwritten(document))
    if unwritten:
        raise ContractError(
            f"{path.name}: {len(unwritten)} term(s) not written yet (marked {TO_COMPLETE}): "
            f"{', '.join(unwritten)}. Fix: write each one in place of its marker (the draft from "
            "`placelink contracts new` leaves them to the IG officer) and run `placelink contracts check`"
        )

    errors = sorted(
        jsonschema.Draft201909Validator(_odcs_json_schema()).iter_errors(document),
        key=lambda e: list(e.absolute_path),
    )
    if errors:
        first = errors[0]
        raise ContractError(
            f"{path.name}: field '{_where(first)}' does not follow ODCS v3: {first.message}. "
            "Fix: add or correct that field as the Open Data Contract Standard v3 "
            "defines it (compare with another file in contracts/)"
        )
    try:
        odcs = OpenDataContractStandard.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ContractError(
            f"{path.name}: field '{'/'.join(map(str, first['loc']))}' {first['msg']}"
        ) from None

    dsa = next(
        (cp.value for cp in odcs.customProperties or [] if cp.property == DSA_PROPERTY), None
    )
    if dsa is None:
        raise ContractError(
            f"{path.name}: no data-sharing agreement terms: add a customProperties entry "
            f"with property '{DSA_PROPERTY}'"
        )
    try:
        terms = AgreementTerms.model_validate(dsa)
    except ValidationError as exc:
        raise ContractError(
            "\n".join(line for error in exc.errors() for line in _term_problems(path, error))
        ) from None

    datasets: dict[str, Dataset] = {}
    item_problems: list[str] = []
    for obj in odcs.schema_ or []:
        items = []
        for prop in obj.properties or []:
            custom = {cp.property: cp.value for cp in prop.customProperties or []}
            if prop.classification not in CLASSIFICATIONS:
                item_problems.append(
                    f"{path.name}: data item '{obj.name}.{prop.name}' has classification "
                    f"'{prop.classification}'. Fix: use one of {', '.join(CLASSIFICATIONS)}"
                )
                continue
            if not custom.get("reason"):
                item_problems.append(
                    f"{path.name}: data item '{obj.name}.{prop.name}' has no 'reason' customProperty. "
                    "Fix: add one saying why the item is needed (data minimisation)"
                )
                continue
            allowed = custom.get("allowedValues")
            items.append(
                DataItem(
                    name=prop.name,
                    logical_type=prop.logicalType or "string",
                    classification=prop.classification,
                    required=bool(prop.required),
                    unique=bool(prop.unique),
                    reason=str(custom["reason"]),
                    allowed_values=tuple(allowed) if allowed else None,
                )
            )
        formats, problem = _date_formats(obj)
        if problem:
            item_problems.append(
                f"{path.name}: dataset '{obj.name}' customProperty "
                f"'{DATE_FORMAT_PROPERTY}': {problem}"
            )
        postcode_format = {cp.property: cp.value for cp in obj.customProperties or []}.get(
            POSTCODE_FORMAT_PROPERTY
        )
        if postcode_format is not None and postcode_format not in POSTCODE_FORMATS:
            item_problems.append(
                f"{path.name}: dataset '{obj.name}' customProperty "
                f"'{POSTCODE_FORMAT_PROPERTY}' is {postcode_format!r}. Fix: 'uk' (UK postcodes "
                "only) or 'any' (postal codes of any country too), or leave it out"
            )
            postcode_format = None
        datasets[obj.name] = Dataset(
            name=obj.name,
            description=obj.description or "",
            items=tuple(items),
            date_formats=formats,
            postcode_format=postcode_format,
        )
    if item_problems:
        raise ContractError("\n".join(item_problems))
    unknown = sorted(set(terms.delivery.datasets) - set(datasets)) if terms.delivery else []
    if unknown:
        raise ContractError(
            f"{path.name}: DSA term 'delivery.datasets' names {', '.join(unknown)}, which the "
            f"contract does not list under 'schema' (datasets: {', '.join(datasets)}). Fix: "
            "use the dataset names of the schema, or remove the entry"
        )
    if not datasets:
        raise ContractError(
            f"{path.name}: the contract lists no datasets under 'schema'. "
            "Fix: add one schema object per dataset the partner may send"
        )
    return Contract(
        id=odcs.id,
        version=odcs.version,
        name=odcs.name or odcs.id,
        path=path,
        terms=terms,
        datasets=datasets,
        content_sha256=content_digest(document),
    )


def _date_formats(obj) -> tuple[tuple[DateFormat, ...], str | None]:
    """The dataset's declared raw date formats (a string or a list), or the problem with them."""
    custom = {cp.property: cp.value for cp in obj.customProperties or []}
    declared = custom.get(DATE_FORMAT_PROPERTY)
    if declared is None:
        return (), None
    declared = [declared] if isinstance(declared, str) else declared
    if (
        not isinstance(declared, list)
        or not declared
        or not all(isinstance(d, str) for d in declared)
    ):
        return (), "give one format such as 'dd/mm/yyyy', or a list of them"
    formats = []
    for text in declared:
        try:
            formats.append(DateFormat.parse(text))
        except ValueError as exc:
            return (), f"'{text}': {exc}"
    shapes = [f.shape for f in [ISO_DATE, *formats]]
    if len(set(shapes)) != len(shapes):
        return (), (
            "two formats read the same text differently (such as dd/mm/yyyy and mm/dd/yyyy) "
            "or repeat one: keep the one the partner's system writes"
        )
    return tuple(formats), None


class ApprovalChecker(Protocol):
    """What checks a contract's signatures: :class:`pipelines.governance.approvals.ApproverRegistry`."""

    def check(self, contract: Contract) -> SignOff: ...


def load_contracts(
    folder: Path, approvers: ApprovalChecker | None = None
) -> tuple[dict[str, Contract], dict[Path, ContractError]]:
    """Load every ``*.yaml`` contract in ``folder``; invalid ones are returned, not raised,
    so one bad agreement holds only its own flow.

    With ``approvers`` (the hub's approver registry), each contract's signatures are checked
    and kept on it (``Contract.approval``); without, no contract counts as signed off.
    """
    contracts: dict[str, Contract] = {}
    problems: dict[Path, ContractError] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            contract = load_contract(path)
        except ContractError as exc:
            problems[path] = exc
            continue
        if approvers is not None:
            contract = replace(contract, approval=approvers.check(contract))
        if contract.id in contracts:
            problems[path] = ContractError(
                f"{path.name}: contract id '{contract.id}' is also used by {contracts[contract.id].path.name}"
            )
            continue
        contracts[contract.id] = contract
    return contracts, problems


def declared_datasets(path: Path) -> list[str]:
    """The dataset names a contract file declares, read leniently (no validation).

    Used for contracts that fail validation: their flow is held, but the tables it fed
    must stay known so the rest of the pipeline still loads and runs. [] if unreadable.
    """
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []
    schema = document.get("schema") if isinstance(document, dict) else None
    if not isinstance(schema, list):
        return []
    return [
        str(obj["name"])
        for obj in schema
        if isinstance(obj, dict) and isinstance(obj.get("name"), str) and obj["name"].isidentifier()
    ]


def claimed_id(path: Path) -> str:
    """The id an invalid contract file claims (its file name if it claims none)."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
        if isinstance(document, dict) and isinstance(document.get("id"), str):
            return document["id"]
    except (OSError, yaml.YAMLError):
        pass
    return path.stem
