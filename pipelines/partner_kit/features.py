"""The identity features a partner may send the hub, and how each is computed.

A contract lists, per dataset, which of these features the partner sends (data
minimisation); :func:`compute_identity_features` computes exactly those, from the raw
identity columns, normalising each raw column once. Payload columns are not features:
they pass through typed (see ``readers.parse_payload``).

The registry :data:`IDENTITY_FEATURES` is the single place to look up what a hub
column is made of. Exact-agreement tokens are of the canonical form (given names with
nicknames resolved); phonetic codes and Bloom filters are of the name as written
(normalised), so a typo'd nickname still scores partial agreement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import jellyfish
import polars as pl
import pyarrow as pa

from pipelines.core.column_types import ARROW_TYPES
from pipelines.governance.contracts import Contract, Dataset, DateFormat
from pipelines.partner_kit.bloom import (
    ADDRESS_HASHES,
    bloom_encode_full_names,
    bloom_encode_names,
)
from pipelines.partner_kit.errors import PartnerKitError
from pipelines.partner_kit.normalise import (
    EARLIEST_DATE_OF_BIRTH,
    Factorised,
    address_lines,
    canonical_given_names,
    clean_names,
    district_only_postcodes,
    format_postcodes,
    name_parts,
    other_country_postcodes,
    parse_iso_dates,
    postal_code_characters,
    postal_code_variants,
    postcode_districts,
    postcode_sectors,
    sex_codes,
    valid_nhs_numbers,
    valid_uprns,
)
from pipelines.partner_kit.steps import step
from pipelines.partner_kit.tokens import LinkageKey, token_array, tokenise

# Hub columns looked up from the postcode with the partner's postcode lookup.
AREA_FEATURES = ("lsoa_code", "ward_code")

# The identifiers of a raw extract, in the order its identity columns follow record_id.
IDENTIFIERS = ("nhs_number", "given_name", "family_name", "date_of_birth", "sex", "postcode")
IDENTITY_COLUMNS = ("record_id", *IDENTIFIERS)

# The longest value of each raw identity column that can be real; anything longer is a damaged
# or hostile value and counts as invalid. An NHS number with spaces is 12 characters, a UK
# postcode 8; the longest names in England and Wales registers are under 60 characters.
MAX_IDENTIFIER_CHARS = {
    "nhs_number": 32,
    "given_name": 100,
    "family_name": 100,
    "date_of_birth": 32,
    "sex": 32,
    "postcode": 16,
    "family_id": 64,
}
_MAX_OTHER_CHARS = 256


@step("phonetic")
def phonetic_codes(names: pl.Series) -> pl.Series:
    """NYSIIS code of each normalised name (a phonetic code designed for names)."""
    return pl.Series(
        names.name,
        [None if n is None else jellyfish.nysiis(n) for n in names.to_list()],
        dtype=pl.String,
    )


class IdentityInputs:
    """The raw identity columns of one extract, normalised on first use.

    Each raw column is factorised once; normalising, tokenising and encoding work on
    its distinct values (names, dates and postcodes repeat heavily), and
    :meth:`rows` spreads a per-value result back over the rows. ``invalid`` and
    ``missing`` collect, per raw field that was used, how many rows had an unusable
    or a blank value (counts only).
    """

    def __init__(
        self,
        raw: pl.DataFrame,
        *,
        partner_id: str,
        dataset: str,
        key: LinkageKey,
        today: dt.date,
        postcode_lookup: pl.DataFrame | None = None,
        date_formats: tuple[DateFormat, ...] = (),
        postcode_format: str | None = None,
    ) -> None:
        self.raw = raw
        self.partner_id = partner_id
        self.dataset = dataset
        self.key = key
        self.today = today
        self.postcode_lookup = postcode_lookup
        self.date_formats = date_formats
        # The contract's postcodeFormat ("uk" or "any"), or None: decided by the postcodes.
        self.postcode_format = postcode_format
        self.invalid: dict[str, int] = {}
        self.missing: dict[str, int] = {}
        self.postcodes_not_in_lookup = 0
        self._fields: dict[str, Factorised] = {}
        self._parts: dict[str, pl.DataFrame] = {}

    @step("normalise")
    def field(self, column: str) -> Factorised:
        """The raw column factorised (an absent column reads as all blank)."""
        if column not in self._fields:
            raw = (
                self.raw[column]
                if column in self.raw.columns
                else pl.Series(column, [None] * self.raw.height, dtype=pl.String)
            )
            self._fields[column] = Factorised.of(raw.cast(pl.String))
        return self._fields[column]

    @step("normalise")
    def _normalise(self, column: str, transform: Callable[[pl.Series], pl.Series]) -> pl.Series:
        """``transform`` of the column's distinct values, counting blank and unusable rows.

        A value longer than any real one (:data:`MAX_IDENTIFIER_CHARS`) is unusable: counted
        invalid and sent empty, never cut to fit."""
        field = self.field(column)
        too_long = field.distinct.str.len_chars() > MAX_IDENTIFIER_CHARS.get(
            column, _MAX_OTHER_CHARS
        )
        values = transform(field.distinct.zip_with(~too_long, pl.Series([None], dtype=pl.String)))
        blank = field.distinct.str.strip_chars() == ""
        self.missing[column] = field.codes.null_count() + field.count_rows(blank)
        self.invalid[column] = field.count_rows(~blank & values.is_null())
        return values

    def rows(self, column: str, per_distinct: pl.Series) -> pl.Series:
        """Spread values computed per distinct value of ``column`` back over the rows."""
        return self.field(column).expand(per_distinct)

    def token(self, field_name: str, values: pl.Series, *, all_distinct: bool = False) -> pl.Series:
        return tokenise(values, field_name, self.key, all_distinct=all_distinct).alias(field_name)

    def token_array(
        self, field_name: str, values: pl.Series, *, prefix: str = ""
    ) -> pa.Array | pa.ChunkedArray:
        """Tokens of ``prefix + value`` for values that are present and each hashed once."""
        return token_array(values, field_name, self.key, prefix=prefix)

    @cached_property
    @step("normalise")
    def record_id(self) -> pl.Series:
        """Per row (record ids are all different, so there is nothing to share)."""
        values = self.raw["record_id"].cast(pl.String).str.strip_chars().replace("", None)
        self.missing["record_id"] = values.null_count()
        return values

    @cached_property
    def family_id(self) -> pl.Series:
        return self._normalise("family_id", lambda d: d.str.strip_chars().replace("", None))

    @cached_property
    def nhs_number(self) -> pl.Series:
        return self._normalise("nhs_number", valid_nhs_numbers)

    @cached_property
    def given_name(self) -> pl.Series:
        return self._normalise("given_name", clean_names)

    @cached_property
    @step("normalise")
    def given_name_canonical(self) -> pl.Series:
        return canonical_given_names(self.given_name)

    @cached_property
    def family_name(self) -> pl.Series:
        return self._normalise("family_name", clean_names)

    @cached_property
    def date_of_birth(self) -> pl.Series:
        return self._normalise(
            "date_of_birth",
            lambda d: parse_iso_dates(d, EARLIEST_DATE_OF_BIRTH, self.today, self.date_formats),
        )

    @property
    def postcode_format_used(self) -> str:
        """How the postcodes were read: the contract's ``postcodeFormat``, or, where it declares
        none, ``any`` when more than half of the non-blank postcodes are not UK postcodes but
        have the shape of another country's postal code (a partner abroad, or a benchmark's
        data), else ``uk``: a UK partner's occasional partial or foreign postcode is not sent."""
        self.postcode  # noqa: B018 (reading the postcodes decides it)
        return self._postcode_format_used

    @cached_property
    @step("normalise")
    def other_country_postcode_rows(self) -> int:
        """How many rows' postcodes are not UK postcodes but another country's postal code."""
        field = self.field("postcode")
        return field.count_rows(other_country_postcodes(field.distinct))

    @cached_property
    def postcode(self) -> pl.Series:
        """Per distinct raw postcode: the postcode (``AB1 2CD``, or another country's where read
        so), null where there is none. A district sent alone is not counted invalid: it is sent as
        the district (:attr:`postcode_district`)."""
        postcodes = self._postcodes_read
        self.invalid["postcode"] -= self.district_only_postcode_rows
        return postcodes

    @cached_property
    def _postcodes_read(self) -> pl.Series:
        if self.postcode_format == "any":
            self._postcode_format_used = "any"
            return self._normalise("postcode", lambda d: format_postcodes(d, any_country=True))
        uk = self._normalise("postcode", format_postcodes)
        self._postcode_format_used = "uk"
        if self.postcode_format == "uk":
            return uk
        # Undeclared: another country's only if most are. Most UK files are decided by their
        # count of postcodes not in the UK format, without looking at those further.
        present = self.raw.height - self.missing["postcode"]
        if (
            2 * self.invalid["postcode"] <= present
            or 2 * self.other_country_postcode_rows <= present
        ):
            return uk
        self._postcode_format_used = "any"
        return self._normalise("postcode", lambda d: format_postcodes(d, any_country=True))

    @cached_property
    @step("normalise")
    def district_only(self) -> pl.Series:
        """Per distinct raw postcode: the outward code where the value is that alone (``LS6``).
        Only the values not read as a postcode are looked at: in most files, none or a few."""
        distinct = self.field("postcode").distinct
        unread = self._postcodes_read.is_null().arg_true()
        found = pl.repeat(None, len(distinct), dtype=pl.String, eager=True).alias(distinct.name)
        if len(unread):
            found = found.scatter(unread, district_only_postcodes(distinct.gather(unread)))
        return found

    @cached_property
    def district_only_postcode_rows(self) -> int:
        """How many rows send a postcode district alone, with no inward code."""
        return self.field("postcode").count_rows(self.district_only.is_not_null())

    @cached_property
    @step("normalise")
    def postcode_district(self) -> pl.Series:
        """Per distinct raw postcode: the district of the postcode, or the district sent alone."""
        return postcode_districts(self.postcode).fill_null(self.district_only)

    @cached_property
    def sex(self) -> pl.Series:
        return self._normalise("sex", sex_codes)

    @cached_property
    def address_line(self) -> pl.Series:
        return self._normalise("address_line", address_lines)

    @cached_property
    def uprn(self) -> pl.Series:
        return self._normalise("uprn", valid_uprns)

    @step("normalise")
    def name_parts(self, column: str) -> pl.DataFrame:
        """First and last part of each distinct raw name (see ``normalise.name_parts``)."""
        if column not in self._parts:
            self._parts[column] = name_parts(self.field(column).distinct)
        return self._parts[column]

    @cached_property
    @step("normalise")
    def given_name_initial(self) -> pl.Series:
        """Initial of the canonical form of the given name's first part (BOB -> R, for ROBERT)."""
        return canonical_given_names(self.name_parts("given_name")["first"]).str.head(1)

    @cached_property
    @step("normalise")
    def areas(self) -> pl.DataFrame:
        """lsoa_code and ward_code per distinct raw postcode; null where the postcode is unknown,
        and everywhere when there is no postcode lookup (the report says so)."""
        distinct = pl.DataFrame({"postcode": self.postcode})
        if self.postcode_lookup is None:
            return distinct.with_columns(
                lsoa_code=pl.lit(None, pl.String), ward_code=pl.lit(None, pl.String)
            )
        # One row per postcode, or the join would duplicate rows and misalign them.
        lookup = self.postcode_lookup.unique("postcode", keep="first", maintain_order=True)
        areas = distinct.join(lookup, on="postcode", how="left", maintain_order="left")
        self.postcodes_not_in_lookup = self.field("postcode").count_rows(
            areas["postcode"].is_not_null() & areas["lsoa_code"].is_null()
        )
        return areas

    @step("normalise")
    def date_part(self, fmt: str) -> pl.Series:
        return self.date_of_birth.dt.strftime(fmt)


@step("normalise")
def _prefixed(prefix: str, values: pl.Series) -> pl.Series:
    """``prefix|value`` for each value; null where the value is null."""
    return (
        pl.DataFrame({"v": values})
        .select(pl.concat_str(pl.lit(prefix), pl.col("v"), separator="|"))
        .to_series()
    )


@step("normalise")
def _unordered_date(inputs: IdentityInputs) -> pl.Series:
    # Year plus the day and month in sorted order: 1990-03-07 and 1990-07-03 (a
    # day/month swap) give the same string, "1990|03|07".
    frame = pl.DataFrame(
        {"y": inputs.date_part("%Y"), "m": inputs.date_part("%m"), "d": inputs.date_part("%d")}
    )
    return frame.select(
        pl.concat_str(
            pl.col("y"), pl.min_horizontal("m", "d"), pl.max_horizontal("m", "d"), separator="|"
        )
    ).to_series()


@dataclass(frozen=True)
class IdentityFeature:
    """One hub-side identity column: the raw column it is made from, and how.

    ``compute`` returns one value per distinct value of the ``source`` column
    (aligned with ``inputs.field(source).distinct``), or one per row if ``per_row``.
    A token feature also says what it is a token of: ``token_of`` gives the clear
    values (aligned as ``compute``'s) and ``token_prefix`` a text put before each, so
    :meth:`arrow` can hash each distinct value once and hand the tokens straight to
    the file; ``compute`` is then the same tokens through :meth:`IdentityInputs.token`.
    """

    name: str
    source: str
    dtype: pl.DataType
    compute: Callable[[IdentityInputs], pl.Series]
    description: str
    per_row: bool = False
    token_of: Callable[[IdentityInputs], pl.Series] | None = None
    token_prefix: Callable[[IdentityInputs], str] | None = None
    # The field key the token is made under, if not the feature's own (name parts of both
    # fields share one key so the hub can compare them across fields).
    key: str | None = None
    # Further raw columns the feature is made from (the full-name filter reads both names);
    # such a feature is computed per row.
    also: tuple[str, ...] = ()

    @property
    def sources(self) -> tuple[str, ...]:
        """Every raw column the feature is made from: ``source`` first."""
        return (self.source, *self.also)

    def rows(self, inputs: IdentityInputs) -> pl.Series:
        """The feature's value for every row of the extract, typed."""
        values = self.compute(inputs)
        if not self.per_row:
            values = inputs.rows(self.source, values)
        return values.cast(self.dtype).alias(self.name)

    def arrow(self, inputs: IdentityInputs) -> pa.Array:
        """The feature for every row as an Arrow array for the extract file.

        Text and binary values are dictionary-encoded over the source column's
        distinct values: each distinct token is handed to the Parquet writer once,
        with a small index per row, instead of being copied into every row.
        """
        if self.token_of is not None:
            return self._token_arrow(inputs)
        arrow_type = ARROW_TYPES[self.dtype]
        values = self.compute(inputs).cast(self.dtype)
        if self.per_row or self.dtype not in (pl.String, pl.Binary):
            if not self.per_row:
                values = inputs.rows(self.source, values)
            return values.to_arrow().cast(arrow_type)
        # Dictionary of the distinct non-null results (several raw spellings can give
        # one value), and per row the position of its result in that dictionary.
        results = inputs.field(self.source).refactor(values)
        return pa.DictionaryArray.from_arrays(
            results.codes.to_arrow(), results.distinct.to_arrow().cast(arrow_type)
        )

    def _token_arrow(self, inputs: IdentityInputs) -> pa.Array | pa.ChunkedArray:
        values = self.token_of(inputs).cast(pl.String)
        prefix = self.token_prefix(inputs) if self.token_prefix else ""
        key = self.key or self.name
        if not prefix:
            values = values.replace("", None)  # as tokenise: an empty value has no token
        if self.per_row:
            present = values.drop_nulls()
            tokens = inputs.token_array(key, present, prefix=prefix)
            if present.len() == values.len():
                return tokens
            # Not in prepare_extract (it checks every record id is present): place the
            # tokens among the nulls.
            rows = pl.Series(self.name, [None] * values.len(), dtype=pl.String)
            rows = rows.scatter(values.is_not_null().arg_true(), pl.Series(tokens, dtype=pl.String))
            return rows.to_arrow().cast(pa.string())
        # Hash each distinct clear value once (several raw spellings can give one value);
        # each row points at its token in the dictionary.
        clear = inputs.field(self.source).refactor(values)
        tokens = inputs.token_array(key, clear.distinct, prefix=prefix)
        if isinstance(tokens, pa.ChunkedArray):
            tokens = tokens.combine_chunks()
        return pa.DictionaryArray.from_arrays(clear.codes.to_arrow(), tokens)


def _token(
    name: str,
    source: str,
    values: Callable[[IdentityInputs], pl.Series],
    description: str,
    key: str | None = None,
) -> IdentityFeature:
    return IdentityFeature(
        name,
        source,
        pl.String,
        lambda i: i.token(key or name, values(i)).alias(name),
        description,
        token_of=values,
        key=key,
    )


# Only for postal codes of another country (``postcodeFormat: any``): a UK postcode has its
# sector and district for partial agreement, and agreements with UK partners do not list it.
POSTAL_CODE_UNORDERED = "postcode_unordered_token"
# Also only for another country's postal codes: several tokens in one column, space-separated.
POSTAL_CODE_VARIANTS = "postcode_variant_tokens"


def _variant_tokens(inputs: IdentityInputs) -> pl.Series:
    """Per distinct raw postcode: the tokens of :func:`postal_code_variants`, sorted and joined
    by a space (the order says nothing of which character each leaves out); null where none."""
    # One row per variant (a code with none keeps one null row), tokenised, then joined back.
    each = pl.DataFrame({"v": postal_code_variants(inputs.postcode)}).with_row_index("i")
    each = each.explode("v")
    return (
        each.with_columns(t=inputs.token(POSTAL_CODE_VARIANTS, each["v"]))
        .group_by("i", maintain_order=True)
        .agg(pl.col("t").drop_nulls().sort().str.join(" "))["t"]
        .replace("", None)
        .alias(POSTAL_CODE_VARIANTS)
    )


# Name parts and the given name's initial are made under one key for both name fields, so
# the hub can see that one record's given name is another's family name (transposed names).
NAME_PART_KEY = "name_part"


def _year_after(inputs: IdentityInputs) -> pl.Series:
    return (inputs.date_of_birth.dt.year() + 1).cast(pl.String)


_FEATURES = (
    IdentityFeature(
        "record_token",
        "record_id",
        pl.String,
        # record ids are unique within an extract (readers.check_record_ids)
        lambda i: i.token(
            "record_token", _prefixed(f"{i.partner_id}|{i.dataset}", i.record_id), all_distinct=True
        ),
        "token of partner_id|dataset|record_id: stable across deliveries",
        per_row=True,
        token_of=lambda i: i.record_id,
        token_prefix=lambda i: f"{i.partner_id}|{i.dataset}|",
    ),
    _token(
        "nhs_number_token",
        "nhs_number",
        lambda i: i.nhs_number,
        "token of the NHS number, if it passes the mod-11 check",
    ),
    _token(
        "given_name_token",
        "given_name",
        lambda i: i.given_name_canonical,
        "token of the normalised given name, nicknames mapped to a canonical form",
    ),
    _token(
        "given_name_phonetic_token",
        "given_name",
        lambda i: phonetic_codes(i.given_name),
        "token of the NYSIIS code of the normalised given name",
    ),
    IdentityFeature(
        "given_name_bloom",
        "given_name",
        pl.Binary,
        lambda i: bloom_encode_names(i.given_name, "given_name_bloom", i.key),
        "256-bit keyed Bloom filter of the given name's bigrams",
    ),
    _token(
        "family_name_token",
        "family_name",
        lambda i: i.family_name,
        "token of the normalised family name",
    ),
    _token(
        "family_name_phonetic_token",
        "family_name",
        lambda i: phonetic_codes(i.family_name),
        "token of the NYSIIS code of the normalised family name",
    ),
    IdentityFeature(
        "family_name_bloom",
        "family_name",
        pl.Binary,
        lambda i: bloom_encode_names(i.family_name, "family_name_bloom", i.key),
        "256-bit keyed Bloom filter of the family name's bigrams",
    ),
    IdentityFeature(
        "full_name_bloom",
        "given_name",
        pl.Binary,
        lambda i: bloom_encode_full_names(
            i.rows("given_name", i.given_name),
            i.rows("family_name", i.family_name),
            "full_name_bloom",
            i.key,
        ),
        "256-bit keyed Bloom filter of the given and the family name's bigrams together (k = 12), "
        "the same whichever field each name is written in; only where both names are present",
        per_row=True,
        also=("family_name",),
    ),
    _token(
        "date_of_birth_token",
        "date_of_birth",
        lambda i: i.date_part("%Y-%m-%d"),
        "token of the date of birth (YYYY-MM-DD)",
    ),
    _token(
        "dob_year_token", "date_of_birth", lambda i: i.date_part("%Y"), "token of the year of birth"
    ),
    _token(
        "dob_month_token",
        "date_of_birth",
        lambda i: i.date_part("%m"),
        "token of the month of birth",
    ),
    _token(
        "dob_day_token", "date_of_birth", lambda i: i.date_part("%d"), "token of the day of birth"
    ),
    _token(
        "dob_unordered_token",
        "date_of_birth",
        _unordered_date,
        "token of year|min(month, day)|max(month, day): equal under a day/month swap",
    ),
    _token("postcode_token", "postcode", lambda i: i.postcode, "token of the postcode (AB1 2CD)"),
    _token(
        "postcode_sector_token",
        "postcode",
        lambda i: postcode_sectors(i.postcode),
        "token of the postcode sector (AB1 2)",
    ),
    _token(
        "postcode_district_token",
        "postcode",
        lambda i: i.postcode_district,
        "token of the postcode district (AB1)",
    ),
    _token(
        POSTAL_CODE_UNORDERED,
        "postcode",
        lambda i: postal_code_characters(i.postcode),
        "token of another country's postal code with its characters in sorted order (6602: "
        "0266), equal when two characters are transposed; none for a UK postcode",
    ),
    IdentityFeature(
        POSTAL_CODE_VARIANTS,
        "postcode",
        pl.String,
        _variant_tokens,
        "tokens, sorted and space-separated, of another country's postal code and of it with "
        "each character left out in turn (2602: 2602, 602, 202, 262, 260): two codes one keying "
        "error apart (a character changed, added or dropped, two neighbours swapped) share one; "
        "none for a UK postcode",
    ),
    *(
        _token(
            f"{name}_{end}_part_token",
            name,
            lambda i, name=name, end=end: i.name_parts(name)[end],
            f"token of the {end} part of the {name.replace('_', ' ')} as written (MARY-ANNE: "
            f"{'MARY' if end == 'first' else 'ANNE'}), under the key shared by both name fields",
            key=NAME_PART_KEY,
        )
        for name in ("given_name", "family_name")
        for end in ("first", "last")
    ),
    _token(
        "given_name_initial_token",
        "given_name",
        lambda i: i.given_name_initial,
        "token of the initial of the given name (canonical form), under the name-part key",
        key=NAME_PART_KEY,
    ),
    _token(
        "dob_year_next_token",
        "date_of_birth",
        _year_after,
        "token of the year after the year of birth, under the year's key: years one apart agree",
        key="dob_year_token",
    ),
    IdentityFeature(
        "address_line_bloom",
        "address_line",
        pl.Binary,
        lambda i: bloom_encode_names(i.address_line, "address_line_bloom", i.key, ADDRESS_HASHES),
        "256-bit keyed Bloom filter of the first line of the address's bigrams",
    ),
    _token("uprn_token", "uprn", lambda i: i.uprn, "token of the Unique Property Reference Number"),
    IdentityFeature("sex", "sex", pl.String, lambda i: i.sex, "M, F or U"),
    IdentityFeature(
        "year_of_birth",
        "date_of_birth",
        pl.Int16,
        lambda i: i.date_of_birth.dt.year(),
        "year of birth",
    ),
    IdentityFeature(
        "lsoa_code",
        "postcode",
        pl.String,
        lambda i: i.areas["lsoa_code"],
        "LSOA of the postcode, from the postcode lookup",
    ),
    IdentityFeature(
        "ward_code",
        "postcode",
        pl.String,
        lambda i: i.areas["ward_code"],
        "electoral ward of the postcode, from the postcode lookup",
    ),
    IdentityFeature(
        "family_token",
        "family_id",
        pl.String,
        lambda i: i.token("family_token", _prefixed(i.partner_id, i.family_id)),
        "token of partner_id|family_id: groups the members of one family",
        token_of=lambda i: i.family_id,
        token_prefix=lambda i: f"{i.partner_id}|",
    ),
)

IDENTITY_FEATURES: dict[str, IdentityFeature] = {feature.name: feature for feature in _FEATURES}


def contract_features(contract: Contract, dataset: Dataset) -> tuple[IdentityFeature, ...]:
    """The identity features ``dataset`` lists, in contract order.

    Every non-payload data item must be a known feature: the kit will not send a
    column it cannot explain.
    """
    features = []
    for item in dataset.items:
        if item.classification == "payload":
            continue
        feature = IDENTITY_FEATURES.get(item.name)
        if feature is None:
            raise PartnerKitError(
                f"contract {contract.label} ({contract.path.name}), dataset '{dataset.name}': "
                f"data item '{item.name}' (classification {item.classification}) is not a "
                f"feature this partner kit can compute (known: {', '.join(IDENTITY_FEATURES)}). "
                "Ask the IG officer to correct the contract, "
                "or update the partner kit."
            )
        features.append(feature)
    return tuple(features)


def compute_identity_features(
    features: tuple[IdentityFeature, ...], inputs: IdentityInputs
) -> dict[str, pl.Series]:
    """Compute ``features`` for every row of ``inputs``, each typed as its feature says."""
    return {f.name: f.rows(inputs) for f in features}


def compute_identity_columns(
    features: tuple[IdentityFeature, ...], inputs: IdentityInputs
) -> dict[str, pa.Array]:
    """As :func:`compute_identity_features`, as Arrow arrays ready to write
    (see :meth:`IdentityFeature.arrow`)."""
    return {f.name: f.arrow(inputs) for f in features}
