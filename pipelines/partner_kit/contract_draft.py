"""A first draft of a new partner's data-sharing agreement, from what it will send.

``placelink contracts new`` writes it (issue 17, *Bring your own partner*): the IG officer names
the partner, the dataset, the identifiers the partner holds (``given_name``, ``date_of_birth``,
``postcode`` ...) and the payload columns; the draft lists exactly the hub items the kit makes of
those identifiers (:data:`pipelines.partner_kit.features.IDENTITY_FEATURES`, so it cannot ask for
an item the kit cannot compute or leave one out), each with its reason, plus the payload.

What only people can decide (the purpose, the lawful basis, the common-law duty of
confidentiality, whether the data is special category, retention) is written as
:data:`~pipelines.governance.contracts.TO_COMPLETE`: an agreement holding one is invalid, so
the draft can be neither signed nor enforced until the IG officer has written every one. The
hub's side (recipient, its signing roles) is copied from an agreement the hub already holds when
one is given, since it is the same hub for every flow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipelines.core.column_types import LOGICAL_TYPES, YEAR_OF_BIRTH
from pipelines.governance.contracts import TO_COMPLETE, Contract, Dataset, DateFormat
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.features import (
    IDENTITY_FEATURES,
    POSTAL_CODE_UNORDERED,
    POSTAL_CODE_VARIANTS,
)

# Identity items that are not keyed tokens: how the contract classifies them.
_CLASSIFIED = {"sex": "quasi_identifier", YEAR_OF_BIRTH: "quasi_identifier"}
_AREAS = ("lsoa_code", "ward_code")
# Raw identifiers a partner can hold, from the kit's registry (family_id groups a family).
IDENTIFIERS = tuple(dict.fromkeys(s for f in IDENTITY_FEATURES.values() for s in f.sources))


@dataclass(frozen=True)
class PayloadColumn:
    """A non-identifying column the partner sends as it is (a referral date, a service type)."""

    name: str
    logical_type: str = "string"
    required: bool = False

    @classmethod
    def parse(cls, text: str) -> PayloadColumn:
        """``name``, ``name:type`` or ``name:type:required``; raises PartnerKitError saying what
        is wrong."""
        parts = [p.strip() for p in text.split(":")]
        name, logical_type = parts[0], parts[1] if len(parts) > 1 and parts[1] else "string"
        required = len(parts) > 2 and parts[2] == "required"
        if (
            not name.isidentifier()
            or name != name.lower()
            or len(parts) > 3
            or (len(parts) == 3 and not required)
        ):
            raise PartnerKitError(
                f"payload column {text!r}: write it as name, name:type or name:type:required, "
                "with a lower-case name of letters, digits and underscores (referral_date:date:required)"
            )
        if logical_type not in LOGICAL_TYPES:
            raise PartnerKitError(
                f"payload column {name}: type {logical_type!r} is not one of "
                f"{', '.join(LOGICAL_TYPES)}"
            )
        if name in IDENTITY_FEATURES or name in IDENTIFIERS or name == "record_token":
            raise PartnerKitError(
                f"payload column {name}: that is an identifier or a hub item, not payload; list "
                "identifiers with --identifiers"
            )
        return cls(name, logical_type, required)


def _item(name: str, classification: str, reason: str, **extra) -> dict:
    return {
        "name": name,
        "logicalType": "integer" if name == YEAR_OF_BIRTH else "string",
        "classification": classification,
        "required": False,
        **extra,
        "customProperties": [{"property": "reason", "value": reason}],
    }


def identity_items(identifiers: Iterable[str]) -> list[dict]:
    """The contract items the kit makes of the raw ``identifiers``, in the registry's order, each
    with its reason. Raises PartnerKitError for an identifier the kit does not know."""
    wanted = list(dict.fromkeys(identifiers))
    unknown = [i for i in wanted if i not in IDENTIFIERS]
    if unknown:
        raise PartnerKitError(
            f"identifier(s) {', '.join(repr(u) for u in unknown)} are not ones the partner kit "
            f"tokenises (it takes: {', '.join(IDENTIFIERS)}); other columns are payload (--payload)"
        )
    return [
        _identity_item(feature)
        for feature in IDENTITY_FEATURES.values()
        if all(source in wanted for source in feature.sources)
    ]


def _identity_item(feature) -> dict:
    """The contract item for one of the kit's identity features, with its reason."""
    if feature.name in _AREAS:
        return _item(
            feature.name,
            "area",
            f"Outcomes by area: the {feature.description}, derived by the partner.",
        )
    classification = _CLASSIFIED.get(feature.name, "token")
    # "Keyed token of the date of birth"; a description that says keyed already keeps its words.
    keyed = classification == "token" and "keyed" not in feature.description.lower()
    what = "Keyed " if keyed else ""
    return _item(
        feature.name,
        classification,
        f"{what}{feature.description}: evidence for linkage"
        + (" and an outcome breakdown." if classification != "token" else "."),
    )


def held_identifiers(dataset: Dataset) -> set[str]:
    """The raw identifiers a dataset's agreement already shares something of: the sources of
    every identity item it lists (``given_name_bloom`` shares the given name)."""
    return {
        source
        for item in dataset.items
        if item.name in IDENTITY_FEATURES
        for source in IDENTITY_FEATURES[item.name].sources
    }


def items_not_listed(dataset: Dataset) -> list[str]:
    """Identity items the kit could make from identifiers the dataset already shares, but which
    its agreement does not list (so the partner does not send them): newer linkage evidence, such
    as ``full_name_bloom``, that an agreement written before it cannot carry. Keyed tokens only."""
    held, listed = held_identifiers(dataset), set(dataset.columns)
    return [
        feature.name
        for feature in IDENTITY_FEATURES.values()
        if feature.name not in listed
        and set(feature.sources) <= held
        # Keyed tokens only: a clear value (year of birth, sex, an area) is a disclosure choice.
        and feature.name not in _CLASSIFIED
        and feature.name not in _AREAS
        and offered(feature.name, dataset.postcode_format)
    ]


def offered(item: str, postcode_format: str | None) -> bool:
    """Whether a draft lists, and ``contracts check`` suggests, ``item`` for a dataset whose
    postcodes are written as ``postcode_format``: the tokens made only from another country's
    postal codes are empty for a UK partner, so they are offered only under ``any``."""
    return item not in _OTHER_COUNTRY_ONLY or postcode_format == "any"


_OTHER_COUNTRY_ONLY = (POSTAL_CODE_UNORDERED, POSTAL_CODE_VARIANTS)


def items_to_add(contract: Contract, names: Sequence[str], dataset: str | None = None) -> dict:
    """{dataset: [item, ...]}: the contract items for the kit's identity features ``names``, for
    each of the agreement's datasets that shares every identifier the item is made of and does
    not list it yet (or for ``dataset`` only). An amendment may add evidence made of identifiers
    already shared, never a new identifier: that is a new agreement's question. Raises
    PartnerKitError, saying why, for a name that is not an item the kit makes, an unknown dataset,
    or a name no dataset can take."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        raise PartnerKitError("name at least one item to add (full_name_bloom)")
    unknown = [n for n in wanted if n not in IDENTITY_FEATURES]
    if unknown:
        raise PartnerKitError(
            f"{', '.join(repr(u) for u in unknown)}: not an item the partner kit makes (it makes: "
            f"{', '.join(IDENTITY_FEATURES)}); payload columns are added by editing the agreement"
        )
    if dataset is not None and dataset not in contract.datasets:
        raise PartnerKitError(
            f"{contract.id} has no dataset {dataset!r} (it has: {', '.join(contract.datasets)})"
        )
    chosen = [contract.datasets[dataset]] if dataset else list(contract.datasets.values())
    added: dict[str, list[dict]] = {}
    for name in wanted:
        feature = IDENTITY_FEATURES[name]
        took = False
        reasons = []
        for ds in chosen:
            if name in ds.columns:
                reasons.append(f"{ds.name} lists it already")
                continue
            missing = [s for s in feature.sources if s not in held_identifiers(ds)]
            if missing:
                reasons.append(f"{ds.name} shares nothing made of {', '.join(missing)}")
                continue
            added.setdefault(ds.name, []).append(_identity_item(feature))
            took = True
        if not took and all(r.endswith("lists it already") for r in reasons):
            raise PartnerKitError(
                f"{name}: {contract.id} lists it already"
                + (f" for {dataset}" if dataset else " in every dataset")
                + "; nothing to add"
            )
        if not took:
            raise PartnerKitError(
                f"{name} (made of {' and '.join(feature.sources)}) cannot be added to {contract.id}: "
                f"{'; '.join(reasons)}. An amendment adds evidence made of identifiers the "
                "agreement already shares; a new identifier needs a new agreement "
                "(placelink contracts new)"
            )
    return added


def draft_agreement(
    contract_id: str,
    partner_id: str,
    dataset: str,
    identifiers: Sequence[str],
    payload: Sequence[PayloadColumn],
    today: dt.date,
    *,
    provider: str | None = None,
    hub: Contract | None = None,
    date_formats: Sequence[str] = (),
    postcode_format: str | None = None,
    frequency: str = "monthly",
    years: int = 3,
) -> dict:
    """The draft agreement as an ODCS document (see the module's docstring). In force from
    ``today`` for ``years``, reviewed after one; delivered every ``frequency`` by day 15."""
    if not identifiers:
        raise PartnerKitError(
            "a new agreement needs at least one identifier (--identifiers), or the hub "
            "cannot link its records to anyone"
        )
    for declared in date_formats:
        try:
            DateFormat.parse(declared)
        except ValueError as exc:
            raise PartnerKitError(f"date format {declared!r}: {exc}") from None
    if not (contract_id and contract_id.replace("-", "").isalnum() and contract_id.islower()):
        raise PartnerKitError(
            f"agreement id {contract_id!r}: use lower-case letters, digits and hyphens "
            "(clinic-referrals); it names the file"
        )
    if not dataset.isidentifier() or dataset != dataset.lower():
        raise PartnerKitError(
            f"dataset {dataset!r}: use lower-case letters, digits and underscores (clinic_referrals); "
            "it names the hub's landing table"
        )
    items = [
        _item(
            "record_token",
            "token",
            "Stable pseudonym of the source record, so a corrected record replaces the earlier "
            "one and errors can be traced back by the partner (who alone holds the lookup).",
            unique=True,
        )
        | {"required": True},
        *(item for item in identity_items(identifiers) if offered(item["name"], postcode_format)),
    ]
    for column in payload:
        items.append(
            {
                "name": column.name,
                "logicalType": column.logical_type,
                "classification": "payload",
                "required": column.required,
                "customProperties": [
                    {
                        "property": "reason",
                        "value": f"{TO_COMPLETE}: why the hub needs {column.name}",
                    }
                ],
            }
        )
    schema: dict = {
        "name": dataset,
        "physicalName": dataset,
        "physicalType": "table",
        "description": f"{TO_COMPLETE}: what one row of {dataset} is",
        "properties": items,
    }
    custom = []
    if date_formats:
        custom.append(
            {
                "property": "dateFormats",
                "value": date_formats[0] if len(date_formats) == 1 else list(date_formats),
            }
        )
    if postcode_format is not None:
        if "postcode" not in identifiers:
            raise PartnerKitError(
                "a postcode format (--postcode-format) needs postcode among the --identifiers"
            )
        custom.append({"property": "postcodeFormat", "value": postcode_format})
    if custom:
        schema["customProperties"] = custom
    hub_terms = hub.terms if hub is not None else None
    recipient = (
        hub_terms.recipient.model_dump()
        if hub_terms is not None
        else {"name": f"{TO_COMPLETE}: the hub's organisation", "role": "controller"}
    )
    signatures = [{"role": "information_governance_lead", "party": "provider"}]
    signatures += (
        [r.model_dump() for r in hub_terms.required_signatures if r.party == "recipient"]
        if hub_terms is not None
        else [{"role": "siro", "party": "recipient"}, {"role": "dpo", "party": "recipient"}]
    )

    def later(years: int) -> str:
        try:
            return today.replace(year=today.year + years).isoformat()
        except ValueError:  # 29 February
            return today.replace(year=today.year + years, day=28).isoformat()

    provider_name = provider or f"{TO_COMPLETE}: the legal name of {partner_id}"
    purpose = f"{TO_COMPLETE}: what the partnership will learn from {dataset}, and why it needs it"
    terms = {
        "partner_id": partner_id,
        "provider": {"name": provider_name, "role": "controller"},
        "recipient": recipient,
        "controllership": f"{TO_COMPLETE}: joint or separate",
        "purpose": purpose,
        "prohibited_uses": [
            "No re-identification attempts",
            "Aggregates only leave the hub",
        ],
        "lawful_basis_article6": f"{TO_COMPLETE}: the UK GDPR Article 6 basis, e.g. 6(1)(e) ...",
        "special_category_data": f"{TO_COMPLETE}: true (health or care data: add "
        "article9_condition) or false",
        "legal_gateway": f"{TO_COMPLETE}: the power under which the partner shares",
        "common_law_duty_of_confidentiality": f"{TO_COMPLETE}: how the duty of confidence is met",
        "national_data_opt_out_applies": f"{TO_COMPLETE}: true or false",
        "dpia_reference": f"{TO_COMPLETE}: the DPIA's reference",
        "retention": {
            "period_months": f"{TO_COMPLETE}: months the hub keeps each extract",
            "deletion_method": "Hub deletes the vaulted envelope and all derived rows, and "
            "records the deletion in the audit log",
        },
        "valid_from": today.isoformat(),
        "review_by": later(1),
        "expires": later(years),
        "delivery": {"frequency": frequency, "due_day": 15, "kind": "full"},
        "signing_key_fingerprint": None,
        "approval_status": "draft",
        "required_signatures": signatures,
        "approvals": [],
    }
    return {
        "apiVersion": "v3.0.2",
        "kind": "DataContract",
        "id": contract_id,
        "name": f"{provider or partner_id}: {dataset} to the place hub",
        "version": "1.0.0",
        "status": "active",
        "description": {
            "purpose": purpose,
            "limitations": "No re-identification attempts. Aggregates only leave the hub.",
            "usage": "Linked by the hub on keyed tokens; outcomes published only after "
            "disclosure control.",
        },
        "schema": [schema],
        "customProperties": [{"property": "dataSharingAgreement", "value": terms}],
    }
