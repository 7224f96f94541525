"""Named stress profiles: which fields each partner's file has and how often each is wrong.

Rates are per record of the second file against the person's true identity (the first file
gets the same kinds of error at half the rate: both partners make mistakes). Where a rate
comes from a study it says so:

- [Lam2024] Lam, Boyd, Linacre, Blackburn, Harron. Generating synthetic identifiers to support
  development and evaluation of data linkage methods. IJPDS 9(1), 2024 (ALSPAC, two collection
  points): surnames disagree for 18% of people and forenames for 12%, varying by ethnic group.
- [Harron2017] Harron, Hagger-Johnson, Gilbert, Goldstein. Utilising identifier error variation
  in linkage of large administrative data sources. BMC Med Res Methodol 17:23, 2017 (HES vs
  PDS): sex and date of birth wrong or missing in 0.11% of records, postcode in 53%.
- [Just2016] Just, Marc, Munns, Sandefer. Why patient matching is a challenge. Perspect Health
  Inf Manag 13:1e, 2016 (398,939 records with confirmed duplicates): most name mismatches are
  misspellings (53% of first-name and 34% of last-name mismatches), then swapped first/last,
  first/middle and last/middle names.
- [Issue17A] issue 17's external benchmark A: of the pairs a token model without name-swap
  evidence missed (recall 0.861), 30% had given and family names transposed, 35% both names
  different, 27% one name different: about 4%, 5% and 4% of true pairs.

Profiles resembling the issue's two external benchmarks are ``a_like`` and ``b_like``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipelines.partner_kit.features import IDENTIFIERS

# Shares of people by the Faker locale their names come from. Minority groups are
# over-represented (about a tenth each) so that recall can be measured for each.
ORIGINS: dict[str, float] = {
    "en_GB": 0.50,  # British
    "en_IN": 0.10,  # Indian (South Asian)
    "en_PK": 0.10,  # Pakistani: Arabic-origin names, romanised
    "pl_PL": 0.10,  # Polish
    "zh_CN": 0.10,  # Chinese, romanised (pinyin)
    "en_NG": 0.10,  # Nigerian (West African)
}

ALL_FIELDS = (*IDENTIFIERS, "address_line", "uprn")


@dataclass(frozen=True)
class Errors:
    """How often a record is recorded wrongly, per record (see the module docstring)."""

    typo: float = 0.03  # one keying error in a name (each name separately)
    nickname: float = 0.03  # a known-as given name
    transliteration: float = 0.06  # another romanisation (MOHAMMED/MUHAMMAD), for names from
    # languages written in another script (en_IN, en_PK, zh_CN); ASCII-only systems drop
    # Polish letters (Ł -> L) in the same share of records
    transposed: float = 0.01  # given and family names the other way round
    transposed_zh_factor: float = 3.0  # Chinese names are written family name first more often
    both_names: float = 0.01  # both names different (a typo or variant in each)
    surname_change: float = 0.015  # a former or married surname (adults)
    double_barrel: float = 0.015  # a second surname added, or one part of a double one dropped
    middle_name: float = 0.05  # a middle name written into the given name, or dropped
    initial_only: float = 0.0  # the given name as its initial only
    dob_swap: float = 0.01  # day and month swapped (where both are <= 12)
    dob_year: float = 0.005  # year one out
    dob_digits: float = 0.003  # two digits of the day or of the year transposed
    dob_other: float = 0.005  # another part wrong
    dob_missing: float = 0.01
    moved: float = 0.10  # an old postcode and address
    postcode_missing: float = 0.03
    postcode_placeholder: float = 0.0  # one value for "not known" (a valid-looking postcode)
    postcode_typo: float = 0.0  # two neighbouring characters of the postcode swapped (keying)
    postcode_digit: float = 0.0  # one digit of the postcode keyed as another
    sex_missing: float = 0.005
    nhs_missing: float = 0.05


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    people: int = 4000
    in_first: float = 0.75  # share of people in the first file
    in_second: float = 0.75  # ... and in the second (independently: about 56% in both)
    duplicates: float = 0.02  # people recorded twice in one file
    first_fields: tuple[str, ...] = (
        "nhs_number",
        "given_name",
        "family_name",
        "date_of_birth",
        "sex",
        "postcode",
    )
    second_fields: tuple[str, ...] = (
        "nhs_number",
        "given_name",
        "family_name",
        "date_of_birth",
        "sex",
        "postcode",
    )
    errors: Errors = field(default_factory=Errors)
    origins: dict[str, float] = field(default_factory=lambda: dict(ORIGINS))
    # Postcodes are another country's (4-digit postal codes, as in Australia or Switzerland):
    # the same homes as a UK postcode would mark, with no sector or district.
    postcodes_abroad: bool = False
    # The second partner sends only the postcode district (the outward code, NS2): all it may
    # share, or all its system recorded.
    second_district_only: bool = False


NAMES_DOB_POSTCODE = ("given_name", "family_name", "date_of_birth", "postcode")
NAMES_DOB_SEX = ("given_name", "family_name", "date_of_birth", "sex")
NO_NHS = ("given_name", "family_name", "date_of_birth", "sex", "postcode")

_BASE = Errors()


def _profile(name: str, description: str, **changes) -> Profile:
    errors = changes.pop("errors", {})
    return Profile(name, description, errors=dataclasses.replace(_BASE, **errors), **changes)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        _profile(
            "baseline", "every field, the demo's kind of noise: the reference point for the others"
        ),
        _profile(
            "transposed_names",
            "given and family names transposed in 8% of records [Just2016; Issue17A]",
            errors={"transposed": 0.08},
        ),
        _profile(
            "both_names_changed",
            "both names different in 8% of records: a typo or variant in each "
            "[Issue17A: 35% of missed pairs]",
            errors={"both_names": 0.08},
        ),
        _profile(
            "partner_without_postcode",
            "the second partner sends no postcode at all",
            second_fields=("nhs_number", "given_name", "family_name", "date_of_birth", "sex"),
        ),
        _profile(
            "placeholder_postcode",
            "80% of the second partner's postcodes are one placeholder value",
            errors={"postcode_placeholder": 0.80},
        ),
        _profile(
            "no_sex",
            "neither partner records sex",
            first_fields=("nhs_number", "given_name", "family_name", "date_of_birth", "postcode"),
            second_fields=("nhs_number", "given_name", "family_name", "date_of_birth", "postcode"),
        ),
        _profile(
            "no_nhs_number",
            "neither partner records an NHS number",
            first_fields=NO_NHS,
            second_fields=NO_NHS,
        ),
        _profile(
            "heavy_typos",
            "names disagree as often as between two collection points of a cohort: "
            "forenames 12%, surnames 18% [Lam2024], mostly misspellings [Just2016]; dates and "
            "postcodes as often as in HES against PDS [Harron2017: postcode 53%]",
            errors={"typo": 0.10, "surname_change": 0.05, "moved": 0.50, "dob_other": 0.005},
        ),
        _profile(
            "initials_only",
            "the given name is only an initial in 10% of records",
            errors={"initial_only": 0.10},
        ),
        _profile(
            "a_like",
            "like issue 17's benchmark A: two files of a few thousand records, names, date of "
            "birth and postcode, no sex or NHS number; names transposed ~4%, both names different ~5%, "
            "one name different ~8% of pairs [Issue17A]",
            people=5000,
            first_fields=NAMES_DOB_POSTCODE,
            second_fields=NAMES_DOB_POSTCODE,
            errors={"transposed": 0.04, "both_names": 0.05, "typo": 0.04, "nickname": 0.04},
        ),
        _profile(
            "b_like",
            "like issue 17's benchmark B: about 10,000 records, names, date of birth and sex; "
            "the first file has no address, nearly all the second's postcodes are one placeholder",
            people=7000,
            first_fields=NAMES_DOB_SEX,
            second_fields=(*NAMES_DOB_SEX, "postcode"),
            errors={"postcode_placeholder": 0.95},
        ),
        _profile(
            "postcodes_abroad",
            "names, date of birth and postcode, no sex or NHS number, and the postcodes are "
            "another country's 4-digit postal codes (no sector or district), as FEBRL's are",
            first_fields=NAMES_DOB_POSTCODE,
            second_fields=NAMES_DOB_POSTCODE,
            postcodes_abroad=True,
        ),
        _profile(
            "postcodes_abroad_typos",
            "as postcodes_abroad, and 3% of records have two neighbouring digits of the postal "
            "code swapped (6062 / 6602) and 3% one digit keyed as another (6062 / 6082), the "
            "names' keying-error rate applied to the code",
            first_fields=NAMES_DOB_POSTCODE,
            second_fields=NAMES_DOB_POSTCODE,
            postcodes_abroad=True,
            errors={"postcode_typo": 0.03, "postcode_digit": 0.03},
        ),
        _profile(
            "postcode_district_only",
            "names, date of birth and postcode, no sex or NHS number; the second partner sends "
            "only the postcode district (outward code), as a partner limited to it would",
            first_fields=NAMES_DOB_POSTCODE,
            second_fields=NAMES_DOB_POSTCODE,
            second_district_only=True,
        ),
        _profile(
            "council_address",
            "the second partner is a council that also sends the first line of the "
            "address and the UPRN; no NHS numbers",
            first_fields=(*NO_NHS, "address_line", "uprn"),
            second_fields=(*NO_NHS, "address_line", "uprn"),
            errors={"moved": 0.20},
        ),
    )
}
