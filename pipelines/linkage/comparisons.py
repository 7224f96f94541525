"""The model's comparisons and blocking rules, built from the columns the records hold.

A partnership's datasets differ: one has no postcode, another no sex or NHS number, a third
sends only names and a date of birth. :func:`comparisons` and :func:`blocking_rules` take
the set of hub columns that hold values (``have``) and leave out every comparison level and
blocking rule that would read a column nobody sends, so a missing field costs only the
evidence it would have given (issue 17). With every column present they are the full model.

Comparisons read like the domain; names fall back from the exact token to the phonetic token
to a Dice similarity of the keyed Bloom encodings (computed in DuckDB with ``bit_count`` on
``BIT`` columns), then to a shared name part (middle names, double-barrelled names) and an
initial. Given and family names written the other way round are recognised from the name-part
tokens the partner kit makes under one key for both fields (docs/linkage-features.md says
what that reveals), and, where they are also written differently (a typo, another
romanisation), from the order-free full-name Bloom filter.
"""

from __future__ import annotations

from collections.abc import Iterable

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import block_on
from splink.blocking_rule_library import CustomRule
from splink.internals.blocking_rule_creator import BlockingRuleCreator

from pipelines.partner_kit.bloom import BLOOM_BITS as FILTER_BITS
from pipelines.partner_kit.bloom import BLOOM_HASHES

# Measured on 2,500 synthetic names (docs/linkage-features.md): unrelated pairs reach
# Dice >= 0.7 in 0.6% of cases and >= 0.8 in 0.02%; one-character typos in 90% and 62%.
# (At 0.6, 12% of unrelated pairs would qualify: the level would carry little evidence.)
DICE_HIGH, DICE_LOW = 0.8, 0.7
# A one-letter change moves two to four of a name's bigrams whatever its length, so Dice falls
# with the name's length: a typo in a 6-letter name keeps Dice >= 0.7 nine times in ten, in a
# 2-4 letter name (LI, WANG: most Chinese family names) four in ten. The names' bigram sets are
# then said to differ by at most this many bigrams, estimated from the filters' popcounts
# (:func:`bigrams_apart`): one substitution is 4, an inserted or dropped letter 3. On synthetic
# names (docs/linkage-benchmark.md, "The Chinese-origin gap"): 75% of one-letter changes to a
# Chinese family name, against 5% of two different ones (Damerau-Levenshtein <= 1: 86% and 5%).
BIGRAMS_APART = 4.5
# ... and only between names of two letters or more (three bigrams) on both sides: two different
# initials are four bigrams apart as well (_J, J_ and _K, K_), and are two different names.
BIGRAMS_AT_LEAST = 2.5
# First line of address: the same line written differently (AVE / AVENUE, a missing flat
# number) keeps most bigrams; a neighbour's line differs only in the house number, so the
# top level asks for the whole filter.
ADDRESS_DICE_SAME, ADDRESS_DICE_SIMILAR = 1.0, 0.8

# Full-name filter (the bigrams of both names, k = 12): the full names alike (Dice >= 0.7) and
# each name at least 0.1 less like its own field's. Over 4,000 synthetic pairs of each kind
# (docs/linkage-features.md): transposed names with one name written differently 99.7%, both
# 93%; not transposed, both names written differently 0.05%; unrelated people of the same name
# origin 0.2%.
FULL_NAME_DICE, FULL_NAME_MARGIN = 0.7, 0.1
FULL_NAME = "full_name_bloom"
# Its clear-text equivalent in the benchmark's reference: the two names' bigrams, sorted and
# joined with this separator (pipelines.tooling.bench.linkage_profiles.full_name_bigrams).
FULL_NAME_CLEAR, BIGRAM_SEPARATOR = "full_name_clear", "|"

# The clear-text benchmark baseline compares the names as written with Jaro-Winkler where the
# hub compares Bloom filters with Dice.
JARO_WINKLER_HIGH, JARO_WINKLER_LOW = 0.92, 0.8

# A Bloom filter's popcount is counted once per record, in a column named with this suffix,
# rather than twice per pair and level: at 1M people that took about a sixth of scoring.
BLOOM_BITS = "_bits"

# Name-part tokens: the first and the last part of a name written with spaces or hyphens
# (MARY ANNE, SMITH-JONES), and the initial of the given name, all under one shared key so
# that a part of one field can be compared with a part of the other.
NAME_PARTS = {
    name: (f"{name}_first_part_token", f"{name}_last_part_token")
    for name in ("given_name", "family_name")
}
GIVEN_INITIAL = "given_name_initial_token"
# Another country's postal code with its characters in sorted order (the partner kit makes it only
# under ``postcodeFormat: any``): two digits keyed the wrong way round still agree.
POSTAL_CODE_UNORDERED = "postcode_unordered_token"
# And its tokens with one character left out in turn, space-separated: two codes one keying
# error apart share one.
POSTAL_CODE_VARIANTS = "postcode_variant_tokens"
_NAMES = ("given_name", "family_name")

# Every hub column the model may read, by the field the partner kit made it from (a column made
# from two fields is under both): the one list of linkage features. Person records select them in
# this order (pipelines.linkage.person_records), and a placeholder value of a field masks all of
# that field's columns (pipelines.linkage.placeholders).
COLUMNS_BY_FIELD: dict[str, tuple[str, ...]] = {
    "nhs_number": ("nhs_number_token",),
    "given_name": (
        "given_name_token",
        "given_name_phonetic_token",
        "given_name_bloom",
        *NAME_PARTS["given_name"],
        GIVEN_INITIAL,
        # Made from both names: listed under each, so a placeholder in either masks it.
        FULL_NAME,
    ),
    "family_name": (
        "family_name_token",
        "family_name_phonetic_token",
        "family_name_bloom",
        *NAME_PARTS["family_name"],
        FULL_NAME,
    ),
    "date_of_birth": (
        "date_of_birth_token",
        "dob_year_token",
        "dob_month_token",
        "dob_day_token",
        "dob_unordered_token",
        "dob_year_next_token",
    ),
    "postcode": (
        "postcode_token",
        "postcode_sector_token",
        "postcode_district_token",
        POSTAL_CODE_UNORDERED,
        POSTAL_CODE_VARIANTS,
    ),
    "address_line": ("address_line_bloom",),
    "uprn": ("uprn_token",),
    "sex": ("sex",),
}
# A set of present columns is a subset of these.
MODEL_COLUMNS = frozenset(c for columns in COLUMNS_BY_FIELD.values() for c in columns)


def dice(column: str, blocking: bool = False) -> str:
    """SQL: the Dice coefficient of a pair's Bloom filters (each record's popcount precomputed);
    ``blocking``: as a blocking rule names the two records' columns (``l.column``)."""
    if blocking:
        left, right = f"l.{column}", f"r.{column}"
        bits_l, bits_r = f"{left}{BLOOM_BITS}", f"{right}{BLOOM_BITS}"
    else:
        left, right = f"{column}_l", f"{column}_r"
        bits_l, bits_r = f"{column}{BLOOM_BITS}_l", f"{column}{BLOOM_BITS}_r"
    return f"(2.0 * bit_count({left} & {right}) / nullif({bits_l} + {bits_r}, 0))"


def _bigrams_in(bits: str, hashes: int) -> str:
    """SQL: about how many distinct bigrams a filter with ``bits`` of its ``m`` bits set holds,
    ``ln(1 - bits/m) / (k ln(1 - 1/m))`` (Swamidass and Baldi 2007; capped one bit short of a
    full filter, which would hold infinitely many)."""
    # Not least(): it skips a NULL, and a missing name must leave the level NULL, as Dice does.
    capped = f"CASE WHEN {bits} >= {FILTER_BITS - 1} THEN {FILTER_BITS - 1} ELSE {bits} END"
    return f"(ln(1 - ({capped}) / {FILTER_BITS}.0) / ({hashes} * ln(1 - 1 / {FILTER_BITS}.0)))"


def bigrams_apart(column: str, hashes: int = BLOOM_HASHES) -> str:
    """SQL: about how many bigrams are in one name and not the other, ``2 |A u B| - |A| - |B|``,
    from the pair's Bloom filters (:mod:`pipelines.partner_kit.bloom`, ``hashes`` bits per
    bigram): the union of two names' bigrams sets the bits of either filter. It reads only the
    popcounts that Dice reads, so the hub learns nothing more about the names."""
    left, right = f"{column}{BLOOM_BITS}_l", f"{column}{BLOOM_BITS}_r"
    union = f"({left} + {right} - bit_count({column}_l & {column}_r))"
    sizes = [_bigrams_in(bits, hashes) for bits in (union, left, right)]
    return f"(2 * {sizes[0]} - {sizes[1]} - {sizes[2]})"


def one_letter_apart(column: str, hashes: int = BLOOM_HASHES) -> str:
    """SQL: two names of two letters or more whose bigrams differ as one letter changed does
    (:func:`bigrams_apart`), both estimated from the filters' popcounts."""
    left, right = f"{column}{BLOOM_BITS}_l", f"{column}{BLOOM_BITS}_r"
    long_enough = " AND ".join(
        f"{_bigrams_in(bits, hashes)} >= {BIGRAMS_AT_LEAST}" for bits in (left, right)
    )
    return f"({bigrams_apart(column, hashes)} <= {BIGRAMS_APART} AND {long_enough})"


def _set_dice(left: str, right: str) -> str:
    """SQL: the Dice coefficient of two lists of distinct values."""
    return f"(2.0 * len(list_intersect({left}, {right})) / nullif(len({left}) + len({right}), 0))"


def clear_dice(column: str, blocking: bool = False) -> str:
    """SQL: the Dice coefficient of a pair's bigram sets, each written as its bigrams joined with
    :data:`BIGRAM_SEPARATOR` (the clear-text reference's equivalent of :func:`dice`)."""
    left, right = (
        f"string_split({f'{side}.{column}' if blocking else f'{column}_{side}'}, '{BIGRAM_SEPARATOR}')"
        for side in "lr"
    )
    return _set_dice(left, right)


def _clear_bigrams(column: str) -> str:
    """SQL: the set of bigrams of a clear name padded with the Bloom filters' boundary character
    (pipelines.partner_kit.bloom.bigrams)."""
    padded = f"('_' || {column} || '_')"
    return (
        f"list_distinct(list_transform(range(length({padded}) - 1), "
        f"lambda i: substr({padded}, i + 1, 2)))"
    )


def _clear_name_dice(name: str) -> str:
    """SQL: Dice of a pair's clear names' bigram sets (what the name's Bloom filters approximate)."""
    return _set_dice(*(_clear_bigrams(f"{name}_clear_{side}") for side in "lr"))


def names_written_differently_and_transposed(similarity: str = "bloom") -> str:
    """SQL: the two full names are alike (Dice of the full-name filters, or of the clear bigrams)
    and each name is clearly less like the same field's name on the other side than the full
    names are alike: given and family names written the other way round, exactly or with a typo
    or another romanisation in one or both. Names alike in their own fields are not (the full
    names are then about as alike as the names), nor siblings (the family names are equal)."""
    if similarity == "clear":
        full = clear_dice(FULL_NAME_CLEAR)
        alike = [_clear_name_dice(n) for n in _NAMES]
    else:
        full = dice(FULL_NAME)
        alike = [dice(f"{n}_bloom") for n in _NAMES]
    return f"{full} >= {FULL_NAME_DICE} AND " + " AND ".join(
        f"{a} <= {full} - {FULL_NAME_MARGIN}" for a in alike
    )


def _full_name_level(name: str, similarity: str, have: frozenset[str]) -> list:
    """The approximate transposed level, weighed on the given name and neutral on the family name
    (as the exact one), where the records hold the full-name filter and both names' filters (or,
    for the clear-text baseline, the clear names)."""
    needed = (
        {FULL_NAME_CLEAR, *(f"{n}_clear" for n in _NAMES)}
        if similarity == "clear"
        else {FULL_NAME, *(f"{n}_bloom" for n in _NAMES)}
    )
    if not needed <= have:
        return []
    level = cll.CustomLevel(
        names_written_differently_and_transposed(similarity),
        label_for_charts="names transposed and written differently",
    )
    return [level if name == "given_name" else level.configure(is_null_level=True)]


def _all(have: Iterable[str] | None) -> frozenset[str]:
    return MODEL_COLUMNS if have is None else frozenset(have)


def _parts_agree(first: str, last: str) -> str:
    """SQL: some part of one side's name is a part of the other's (first or last, either way)."""
    return " OR ".join(f"{a}_l = {b}_r" for a in (first, last) for b in (first, last))


def name_comparison(
    name: str, similarity: str = "bloom", have: Iterable[str] | None = None
) -> cl.CustomComparison:
    """Exact token -> phonetic token -> Bloom Dice >= 0.8 -> Dice >= 0.7 -> short names one
    letter apart (:func:`one_letter_apart`) -> a name part agrees -> (given names) an initial
    agrees where one side has only the initial -> else; the transposed levels as below.

    Levels whose columns are not in ``have`` are left out. ``similarity="clear"`` replaces the
    Dice levels with Jaro-Winkler on ``<name>_clear`` (only for the benchmark's clear-text
    baseline; the hub never holds clear names).
    """
    have = _all(have) | ({f"{name}_clear"} if similarity == "clear" else set())
    token, phonetic, bloom = f"{name}_token", f"{name}_phonetic_token", f"{name}_bloom"
    levels = [cll.NullLevel(token), cll.ExactMatchLevel(token, term_frequency_adjustments=True)]
    if phonetic in have:
        levels.append(
            cll.CustomLevel(f"{phonetic}_l = {phonetic}_r", label_for_charts="phonetic code equal")
        )
    first, last = NAME_PARTS[name]
    given, family = NAME_PARTS["given_name"][0], NAME_PARTS["family_name"][0]
    transposed = given in have and family in have
    swapped: list = []
    if transposed:
        # Given and family names written the other way round: the evidence is counted once, on
        # the given name; on the family name the pair is neither agreement nor disagreement
        # (a null level), so transposed pairs do not water down what "else" means for either.
        level = cll.CustomLevel(
            f"{given}_l = {family}_r AND {family}_l = {given}_r AND {given}_l <> {given}_r",
            label_for_charts="given and family names transposed",
        )
        swapped = [level if name == "given_name" else level.configure(is_null_level=True)]
    # Transposed and written differently (a typo, another romanisation) in one or both. With it,
    # both transposed levels come before the name's own Dice levels: two long unrelated names can
    # reach Dice 0.7, and a transposed pair then lost its evidence to a weak level. Without the
    # full-name filter the order is the one before it, so an older contract links as it did.
    written_differently = _full_name_level(name, similarity, have) if transposed else []
    if written_differently:
        levels += [*swapped, *written_differently]
    if similarity == "bloom" and bloom in have:
        levels += [
            cll.CustomLevel(
                f"{dice(bloom)} >= {DICE_HIGH}", label_for_charts=f"Dice >= {DICE_HIGH}"
            ),
            cll.CustomLevel(f"{dice(bloom)} >= {DICE_LOW}", label_for_charts=f"Dice >= {DICE_LOW}"),
            # Short names one letter apart: below Dice 0.7 (a longer name there is two letters apart).
            cll.CustomLevel(
                one_letter_apart(bloom),
                label_for_charts="short names one letter apart",
            ),
        ]
    elif similarity == "clear" and f"{name}_clear" in have:
        levels += [
            cll.JaroWinklerLevel(f"{name}_clear", JARO_WINKLER_HIGH),
            cll.JaroWinklerLevel(f"{name}_clear", JARO_WINKLER_LOW),
        ]
    if not written_differently:
        levels += swapped
    if transposed and name == "given_name":
        # One name misspelt beyond the full-name level, or a family name entered as the given
        # name: weaker, and only on the given name.
        levels.append(
            cll.CustomLevel(
                f"{given}_l = {family}_r OR {family}_l = {given}_r",
                label_for_charts="one name found in the other field",
            )
        )
    if first in have and last in have:
        levels.append(
            cll.CustomLevel(_parts_agree(first, last), label_for_charts="a name part agrees")
        )
    if name == "given_name" and GIVEN_INITIAL in have and first in have:
        levels.append(
            cll.CustomLevel(
                f"{GIVEN_INITIAL}_l = {GIVEN_INITIAL}_r AND ({first}_l = {GIVEN_INITIAL}_l OR {first}_r = {GIVEN_INITIAL}_r)",
                label_for_charts="initial agrees (one side has only the initial)",
            )
        )
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(output_column_name=name, comparison_levels=levels)


def date_of_birth_comparison(have: Iterable[str] | None = None) -> cl.CustomComparison:
    """Exact -> day and month swapped -> year one apart with day and month equal -> two of
    three parts equal (one wrong part, transposed digits in a day) -> else."""
    have = _all(have)
    parts = ("dob_year_token", "dob_month_token", "dob_day_token")
    levels = [cll.NullLevel("date_of_birth_token"), cll.ExactMatchLevel("date_of_birth_token")]
    if "dob_unordered_token" in have:
        levels.append(
            cll.CustomLevel(
                "dob_unordered_token_l = dob_unordered_token_r",
                label_for_charts="day and month swapped",
            )
        )
    if "dob_year_next_token" in have and all(p in have for p in parts):
        levels.append(
            cll.CustomLevel(
                "(dob_year_next_token_l = dob_year_token_r OR dob_year_token_l = dob_year_next_token_r) "
                "AND dob_month_token_l = dob_month_token_r AND dob_day_token_l = dob_day_token_r",
                label_for_charts="year one apart",
            )
        )
    if all(p in have for p in parts):
        agree = " + ".join(f"coalesce(CAST({p}_l = {p}_r AS INTEGER), 0)" for p in parts)
        levels.append(cll.CustomLevel(f"({agree}) >= 2", label_for_charts="2 of 3 parts equal"))
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(output_column_name="date_of_birth", comparison_levels=levels)


def postcode_null_level(have: set[str] | frozenset[str]) -> cll.ComparisonLevelCreator:
    """Null where either side has no place at all: no postcode and no district. A record may
    hold a district alone (a partner that sends only the outward code, LS6) or a postcode alone
    (another country's postal code, with no district): either is still evidence."""
    columns = [c for c in ("postcode_token", "postcode_district_token") if c in have]
    if columns == ["postcode_token"]:
        return cll.NullLevel("postcode_token")
    side = " OR ".join("(" + " AND ".join(f"{c}_{s} IS NULL" for c in columns) + ")" for s in "lr")
    return cll.CustomLevel(side, label_for_charts="no postcode or district").configure(
        is_null_level=True
    )


def postcode_comparison(have: Iterable[str] | None = None) -> cl.CustomComparison:
    have = _all(have)
    levels = [postcode_null_level(have)]
    if "postcode_token" in have:
        levels.append(cll.ExactMatchLevel("postcode_token"))
    if POSTAL_CODE_UNORDERED in have:
        levels.append(
            cll.CustomLevel(
                f"{POSTAL_CODE_UNORDERED}_l = {POSTAL_CODE_UNORDERED}_r",
                label_for_charts="characters transposed (a postal code of another country)",
            )
        )
    if POSTAL_CODE_VARIANTS in have:
        # Written so that sqlglot carries it to Spark as it is (SIZE(ARRAY_INTERSECT(SPLIT ...)));
        # list_has_any would become an operator Spark does not have.
        shared = (
            f"array_length(array_intersect(str_split({POSTAL_CODE_VARIANTS}_l, ' '), "
            f"str_split({POSTAL_CODE_VARIANTS}_r, ' '))) > 0"
        )
        levels.append(
            cll.CustomLevel(
                shared, label_for_charts="one character apart (a postal code of another country)"
            )
        )
    for column, label in (
        ("postcode_sector_token", "same sector"),
        ("postcode_district_token", "same district"),
    ):
        if column in have:
            levels.append(cll.CustomLevel(f"{column}_l = {column}_r", label_for_charts=label))
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(output_column_name="postcode", comparison_levels=levels)


def address_line_comparison() -> cl.CustomComparison:
    bloom = "address_line_bloom"
    return cl.CustomComparison(
        output_column_name="address_line",
        comparison_levels=[
            cll.NullLevel(bloom),
            cll.CustomLevel(
                f"{dice(bloom)} >= {ADDRESS_DICE_SAME}", label_for_charts="same first line"
            ),
            cll.CustomLevel(
                f"{dice(bloom)} >= {ADDRESS_DICE_SIMILAR}",
                label_for_charts=f"Dice >= {ADDRESS_DICE_SIMILAR}",
            ),
            cll.ElseLevel(),
        ],
    )


def comparisons(
    have: Iterable[str] | None = None, name_similarity: str = "bloom"
) -> list[cl.CustomComparison]:
    """The model's comparisons for the columns in ``have`` (default: every column)."""
    have = _all(have)
    out: list = []
    if "nhs_number_token" in have:
        out.append(cl.ExactMatch("nhs_number_token").configure(term_frequency_adjustments=True))
    for name in ("given_name", "family_name"):
        if f"{name}_token" in have:
            out.append(name_comparison(name, name_similarity, have))
    if "date_of_birth_token" in have:
        out.append(date_of_birth_comparison(have))
    if "postcode_token" in have or "postcode_district_token" in have:
        out.append(postcode_comparison(have))
    if "address_line_bloom" in have:
        out.append(address_line_comparison())
    if "uprn_token" in have:
        out.append(cl.ExactMatch("uprn_token").configure(term_frequency_adjustments=True))
    if "sex" in have:
        out.append(cl.ExactMatch("sex"))
    return out


# Every rule pairs a date, place or name key with a second key, so the people sharing a key
# stay few as the population grows and comparisons grow close to linearly (docs/linkage.md:
# 1.98M at 1M people, 13x the 149k at 100k). Rules on names alone, or date of birth + sex,
# grew with the square of the population (40M at 1M) and the 1M run scored no better with them.
_KEYED_RULES: tuple[tuple[str, ...], ...] = (
    ("nhs_number_token",),
    ("date_of_birth_token", "given_name_phonetic_token"),
    ("date_of_birth_token", "family_name_phonetic_token"),
    ("date_of_birth_token", "postcode_district_token"),
    ("given_name_phonetic_token", "family_name_phonetic_token", "postcode_district_token"),
    ("given_name_phonetic_token", "family_name_phonetic_token", "dob_year_token"),
    ("family_name_token", "dob_year_token", "postcode_district_token"),
    ("postcode_token", "given_name_phonetic_token"),
    ("dob_unordered_token", "family_name_phonetic_token"),
    ("given_name_phonetic_token", "family_name_phonetic_token", "dob_month_token", "dob_day_token"),
    ("uprn_token", "given_name_phonetic_token"),
    ("uprn_token", "date_of_birth_token"),
    # Another country's postal code with two characters transposed (6062 / 6602), which has no
    # sector or district to block on (FEBRL4 on names, date of birth and postcode: 45 of the 114
    # true pairs no rule held).
    ("date_of_birth_token", POSTAL_CODE_UNORDERED),
    (POSTAL_CODE_UNORDERED, "given_name_phonetic_token"),
)
# The same first line of address (equal Bloom filters: the same line once normalised; the clear
# line itself in the benchmark's clear-text reference, which blocks as the hub does) with a year
# of birth or a given name, as the postcode rules do: without them a partner who sends an address
# line but no postcode had no address block at all (FEBRL4: 393 of the 705 true pairs that no rule
# held shared the address line).
_ADDRESS_LINE = ("address_line_bloom", "address_line_clear")
_WITH_ADDRESS_LINE = ("dob_year_token", "given_name_phonetic_token")
_SAME_NAMES = (
    "l.given_name_phonetic_token = r.given_name_phonetic_token"
    " AND l.family_name_phonetic_token = r.family_name_phonetic_token"
)
_FIRST_PARTS = ("given_name_first_part_token", "family_name_first_part_token")
_SAME_FIRST_PARTS = " AND ".join(f"l.{c} = r.{c}" for c in _FIRST_PARTS)
_SWAPPED_NAMES = (
    "l.given_name_first_part_token = r.family_name_first_part_token"
    " AND l.family_name_first_part_token = r.given_name_first_part_token"
)


def _keyed_rules(have: set[str] | frozenset[str]) -> list[tuple[str, ...]]:
    """:data:`_KEYED_RULES`, with the postcode itself in place of its district where the records
    have postcodes but no district: another country's postal codes (``postcodeFormat: any``) have
    none, and without this every district rule dropped out (FEBRL4 with its Australian postcodes:
    of 263 true pairs no rule held, 82 shared the date of birth and the postcode; 180 remain)."""
    if "postcode_district_token" in have or "postcode_token" not in have:
        return list(_KEYED_RULES)
    rules = [
        tuple("postcode_token" if c == "postcode_district_token" else c for c in rule)
        for rule in _KEYED_RULES
    ]
    return list(dict.fromkeys(rules))


# The full-name block's equi-join is on the date of birth alone, so its candidates grow with the
# square of the place: about 25 million pairs share a date of birth at 1M people, 224 million at
# 3M, 2.5 billion at 10M (docs/benchmarks.md, "A place of 10,000,000 people"). Above this many,
# the block also asks for the same given-name initial (158.5 million of the 2.47 billion at 10M),
# and two rules on the date of birth with one name in the other's field keep names transposed.
DATE_PAIRS_BUDGET = 100_000_000


def blocking_rules(
    have: Iterable[str] | None = None, crowded_dates: bool = False
) -> list[BlockingRuleCreator]:
    """The rules that choose which pairs are scored (a pair is scored if any holds), for the
    columns in ``have``: a rule on a column nobody sends would block nothing. With
    ``crowded_dates`` (more than :data:`DATE_PAIRS_BUDGET` pairs share a date of birth), the
    full-name block is keyed on the given name's initial as well."""
    have = _all(have)
    rules: list[BlockingRuleCreator] = [
        block_on(*columns) for columns in _keyed_rules(have) if set(columns) <= have
    ]
    address = next((c for c in _ADDRESS_LINE if c in have), None)
    rules += [block_on(address, c) for c in _WITH_ADDRESS_LINE if address and c in have]
    rules += [
        block_on("date_of_birth_token", part)
        for part in _FIRST_PARTS
        if {"date_of_birth_token", part} <= have
    ]
    if {"given_name_first_part_token", "family_name_first_part_token", "dob_year_token"} <= have:
        rules.append(CustomRule(_SWAPPED_NAMES + " AND l.dob_year_token = r.dob_year_token"))
    # The same date of birth and alike full names, whichever field each name is in (the clear
    # bigrams in the benchmark's clear-text reference): pairs whose names each changed a little,
    # or were transposed and changed, with neither the postcode nor a phonetic code in common
    # had no block (a_like, seed 101: 21 of the 74 true pairs no rule held). A hash join on the
    # date, then Dice on the few records sharing it.
    full = next((c for c in (FULL_NAME, FULL_NAME_CLEAR) if c in have), None)
    alike = None
    if full:
        similar = (dice if full == FULL_NAME else clear_dice)(full, blocking=True)
        alike = f"{similar} >= {FULL_NAME_DICE}"
    same_date = "l.date_of_birth_token = r.date_of_birth_token"
    if alike and "date_of_birth_token" in have and not crowded_dates:
        rules.append(CustomRule(f"{same_date} AND {alike}"))
    elif alike and "date_of_birth_token" in have:
        # A large place: each name's first word in the other's field (names transposed, one
        # or both kept as written), and alike full names with the same initial.
        if set(_FIRST_PARTS) <= have:
            rules += [
                CustomRule(f"{same_date} AND l.{a} = r.{b}")
                for a, b in (_FIRST_PARTS, _FIRST_PARTS[::-1])
            ]
        initial = "given_name_initial_token"
        if initial in have:
            rules.append(CustomRule(f"{same_date} AND l.{initial} = r.{initial} AND {alike}"))
    # The same postcode and alike full names, as on the date of birth above: names written
    # differently or transposed, and a date of birth that differs or is missing. Only where the
    # postcode is the records' finest place: with a first line of address or a UPRN as well, the
    # model adds up three agreeing place fields, and the members of one household this rule
    # pairs (one family name, alike full names) scored above the threshold (council_address:
    # precision 0.91 -> 0.32; docs/linkage-benchmark.md, "More pairs compared").
    if alike and "postcode_token" in have and not have & {*_ADDRESS_LINE, "uprn_token"}:
        rules.append(CustomRule(f"l.postcode_token = r.postcode_token AND {alike}"))
    # The same first parts of both names and a year of birth one apart, or no date of birth on
    # one side. One rule per side, so that each is an equi-join on the names and the year (or a
    # filter DuckDB applies to one side before the join): a condition on both sides together
    # would be tested on every pair of namesakes, whose number grows with the square of the
    # place (at 1M people it took 5.5 s of prediction's 21 s).
    if {*_FIRST_PARTS, "dob_year_token", "dob_year_next_token"} <= have:
        rules += [
            CustomRule(f"{_SAME_FIRST_PARTS} AND {a}.dob_year_next_token = {b}.dob_year_token")
            for a, b in ("lr", "rl")
        ]
    if {*_FIRST_PARTS, "date_of_birth_token"} <= have:
        rules += [
            CustomRule(f"{_SAME_FIRST_PARTS} AND {side}.date_of_birth_token IS NULL")
            for side in "lr"
        ]
    # Names alone are still a block for records that carry nothing else to block on: no date of
    # birth and no postcode (one rule per side; Splink scores each pair once, l before r).
    if {"given_name_phonetic_token", "family_name_phonetic_token"} <= have:
        others = [c for c in ("date_of_birth_token", "postcode_token") if c in have]
        if not others:
            rules.append(CustomRule(_SAME_NAMES))
        else:
            for side in "lr":
                rules.append(
                    CustomRule(_SAME_NAMES + "".join(f" AND {side}.{c} IS NULL" for c in others))
                )
    return rules
