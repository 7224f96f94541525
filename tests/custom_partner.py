"""A partner the demo does not know: its own contract, written here with only the identifiers
a test asks for (what a new partnership's IG officer would write for a new flow)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml

from pipelines.core.clock import Clock
from pipelines.core.settings import REPO_ROOT

# The hub items each raw identity column gives (partner_kit.features).
IDENTITY_ITEMS = {
    "nhs_number": [("nhs_number_token", "token")],
    "given_name": [
        ("given_name_token", "token"),
        ("given_name_phonetic_token", "token"),
        ("given_name_bloom", "token"),
    ],
    "family_name": [
        ("family_name_token", "token"),
        ("family_name_phonetic_token", "token"),
        ("family_name_bloom", "token"),
    ],
    "date_of_birth": [
        ("date_of_birth_token", "token"),
        ("dob_year_token", "token"),
        ("dob_month_token", "token"),
        ("dob_day_token", "token"),
        ("dob_unordered_token", "token"),
        ("year_of_birth", "quasi_identifier"),
    ],
    "sex": [("sex", "quasi_identifier")],
    "postcode": [
        ("postcode_token", "token"),
        ("postcode_sector_token", "token"),
        ("postcode_district_token", "token"),
        ("lsoa_code", "area"),
        ("ward_code", "area"),
    ],
    "address_line": [("address_line_bloom", "token")],
}
NAMES_AND_DATE_OF_BIRTH = ("given_name", "family_name", "date_of_birth")


def _item(
    name: str, classification: str, logical_type: str = "string", required: bool = False
) -> dict:
    return {
        "name": name,
        "logicalType": logical_type,
        "classification": classification,
        "required": required,
        "customProperties": [
            {"property": "reason", "value": f"Needed for linkage or outcomes ({name})."}
        ],
    }


def write_custom_contract(
    folder: Path,
    *,
    contract_id: str = "clinic-referrals",
    partner_id: str = "clinic",
    dataset: str = "clinic_referrals",
    identity=NAMES_AND_DATE_OF_BIRTH,
    date_formats: str | list[str] | None = None,
    postcode_format: str | None = None,
    today: dt.date | None = None,
) -> Path:
    """A valid ODCS contract for one dataset: ``record_token``, the hub items of the raw
    ``identity`` columns, and a required ``referral_date`` payload; in force from a year
    before ``today`` (default: the hub's clock, PLACELINK_AS_OF in the tests) for three years."""
    today = today or Clock.from_env().today()
    template = yaml.safe_load((REPO_ROOT / "contracts" / "vcs-family-support.yaml").read_text())
    terms = template["customProperties"][0]["value"]
    terms.update(
        partner_id=partner_id,
        signing_key_fingerprint=None,
        valid_from=str(today - dt.timedelta(days=365)),
        review_by=str(today + dt.timedelta(days=365)),
        expires=str(today + dt.timedelta(days=3 * 365)),
    )
    terms["provider"]["name"] = f"{partner_id} (a partner new to the hub)"
    items = [{**_item("record_token", "token", required=True), "unique": True}]
    items += [
        _item(name, classification, "integer" if name == "year_of_birth" else "string")
        for column in identity
        for name, classification in IDENTITY_ITEMS[column]
    ]
    if postcode_format == "any" and "postcode" in identity:
        # Another country's postal codes: the kit also makes the code's characters in sorted order
        # and its forms with one character left out.
        items.append(_item("postcode_unordered_token", "token"))
        items.append(_item("postcode_variant_tokens", "token"))
    items.append(_item("referral_date", "payload", "date", required=True))
    schema = {
        "name": dataset,
        "physicalName": dataset,
        "physicalType": "table",
        "description": "Referrals to a clinic.",
        "properties": items,
    }
    custom = {"dateFormats": date_formats, "postcodeFormat": postcode_format}
    if any(v is not None for v in custom.values()):
        schema["customProperties"] = [
            {"property": k, "value": v} for k, v in custom.items() if v is not None
        ]
    document = {
        **template,
        "id": contract_id,
        "name": f"{partner_id}: {dataset}",
        "schema": [schema],
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{contract_id}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
