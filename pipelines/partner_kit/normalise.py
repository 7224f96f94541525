"""Normalise raw identifier values so the same person gives the same string everywhere.

Every partner runs the same rules before tokenising, so "Siobhán O'Brien",
"SIOBHAN OBRIEN" and " siobhan  o'brien " all give one token. Each function works
on a Polars Series and normalises each DISTINCT value once (names, dates and
postcodes repeat heavily), then maps the results back onto the rows.

Each ``normalise_*`` function returns a :class:`Normalised`: the values (null where
the input was blank or unusable) and two counts, ``missing`` (blank) and
``invalid`` (present but unusable). Counts only: values are never logged.

Rules
-----
names        NFKD, drop accents, upper-case, keep letters only: punctuation,
             apostrophes, digits, spaces and hyphens are removed, so a
             double-barrelled "Smith-Jones" and "Smith Jones" both give SMITHJONES.
             Letters of any script are kept (a name written only in non-Latin
             letters still tokenises). A name with no letters is invalid.
given names  additionally mapped to a canonical form of nicknames
             (:func:`canonical_given_name`): BOB -> ROBERT, BILL -> WILLIAM.
NHS number   spaces and dashes removed; valid only if 10 digits, the mod-11 check
             digit agrees, and the digits are not all the same (0000000000 and
             1111111111 pass mod-11 but are placeholder values used by systems, and
             would link unrelated people).
dates        ISO ``YYYY-MM-DD``, or a format the contract declares for the dataset
             (``dateFormats``, e.g. UK ``dd/mm/yyyy``); a time of day after the date
             (``2001-03-05 00:00:00``, as spreadsheets and databases export dates) is
             ignored; a date of birth must fall in 1900-01-01..today.
postcode     upper-case, spaces removed, checked against the UK postcode format,
             then written with one space before the 3-character inward code
             ("ab12cd" -> "AB1 2CD"); sector "AB1 2", district "AB1". A dataset whose
             contract declares ``postcodeFormat: any`` (or whose postcodes are mostly
             another country's, when it declares nothing) also keeps a postal code of
             another shape: 2-10 letters and digits with at least one digit once spaces,
             hyphens and dots are removed ("2615", "D02 X285" -> "D02X285"), with no
             sector or district. The NHS's pseudo-postcodes (ZZ99 ...: no fixed abode,
             not known, abroad) are never kept. A UK outward code alone ("ls6") is no
             postcode but is the district ("LS6"): sent as the district only.
sex          M / F / U; Male, Female, 1 (male), 2 (female), 0 and 9 (not known /
             not specified, NHS Data Dictionary person stated gender codes) accepted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from nicknames import NickNamer

from pipelines.governance.contracts import ISO_DATE, DateFormat

EARLIEST_DATE_OF_BIRTH = dt.date(1900, 1, 1)

# The UK postcode format (outward code + inward code) of the UK Government Data
# Standards Catalogue, applied to the postcode with spaces removed, plus the special
# GIR 0AA. It checks the shape only: whether a postcode exists is for the postcode
# lookup to say (an unknown postcode gets no LSOA or ward).
UK_POSTCODE_PATTERN = (
    r"^(GIR0AA|[A-Z]([0-9]{1,2}|[A-HJ-Y][0-9]{1,2}|[0-9][A-Z]|[A-HJ-Y][0-9][A-Z])[0-9][A-Z]{2})$"
)
# The outward code alone (the postcode district, LS6): what a partner sends when it may share
# no more than the district, or when only the district was recorded.
UK_OUTWARD_PATTERN = r"^(GIR|[A-Z]([0-9]{1,2}|[A-HJ-Y][0-9]{1,2}|[0-9][A-Z]|[A-HJ-Y][0-9][A-Z]))$"

# The NHS's pseudo-postcodes (ZZ99 3VZ: no fixed abode; ZZ99 3WZ: not known; ZZ99 ...: a
# country abroad) say that the postcode is not known: never a postal code, whatever the format.
NHS_PSEUDO_POSTCODE = "ZZ99"
# A postal code of another country, once upper-cased and spaces, hyphens and dots removed
# ("2615", "D02X285", "K1A0B6", "123456789"); it must hold a digit as well (checked apart).
POSTAL_CODE_PATTERN = r"^[A-Z0-9]{2,10}$"

SEX_ALIASES: dict[str, str] = {
    "M": "M",
    "MALE": "M",
    "1": "M",
    "F": "F",
    "FEMALE": "F",
    "2": "F",
    "U": "U",
    "UNKNOWN": "U",
    "NOT KNOWN": "U",
    "NOT SPECIFIED": "U",
    "0": "U",
    "9": "U",
    "I": "U",
    "INDETERMINATE": "U",
}

# Common English short forms and the full name they stand for. The `nicknames`
# package's table is many-to-many and noisy for the commonest names (it lists BILL
# under both ROBERT and WILLIAM, and BOB, TOM and MIKE as full names with nicknames
# of their own), so the well-known forms are fixed here and take precedence.
# Short forms shared by a male and a female name (SAM, ALEX, CHRIS, PAT, JO,
# CHARLIE) and short forms that are registered names in their own right in the UK
# (JACK, HARRY, MOLLY, SALLY, ELLIE) are deliberately not mapped: mapping them would
# make Samuel and Samantha agree.
PREFERRED_FULL_NAMES: dict[str, tuple[str, ...]] = {
    "ROBERT": ("BOB", "BOBBY", "ROB", "ROBBIE", "ROBBY"),
    "WILLIAM": ("BILL", "BILLY", "WILL", "WILLIE", "WILLY"),
    "ELIZABETH": ("LIZ", "LIZZIE", "LIZZY", "BETH", "BETTY", "BETSY", "BESS", "BESSIE", "LIBBY"),
    "THOMAS": ("TOM", "TOMMY"),
    "MICHAEL": ("MIKE", "MICK", "MICKY", "MICKEY"),
    "JAMES": ("JIM", "JIMMY"),
    "DAVID": ("DAVE", "DAVY"),
    "RICHARD": ("DICK", "RICK", "RICKY", "RICH", "RICHIE"),
    "EDWARD": ("ED", "EDDIE", "EDDY", "TED", "NED"),
    "KATHERINE": ("KATE", "KATIE", "KATY", "KATHY"),
    "MARGARET": ("MAGGIE", "PEGGY", "MEG", "MADGE"),
    "SUSAN": ("SUE", "SUSIE", "SUZY"),
    "ANDREW": ("ANDY", "DREW"),
    "MATTHEW": ("MATT", "MATTY"),
    "NICHOLAS": ("NICK", "NICKY"),
    "JOSEPH": ("JOE", "JOEY"),
    "BENJAMIN": ("BEN", "BENNY"),
    "PETER": ("PETE",),
    "FREDERICK": ("FRED",),
    "ANTHONY": ("TONY",),
    "STEPHEN": ("STEVE", "STEVIE"),
    "DANIEL": ("DAN", "DANNY"),
    "JENNIFER": ("JEN", "JENNY"),
    "REBECCA": ("BECKY", "BECCA"),
    "VICTORIA": ("VICKY", "VICKI"),
    "JONATHAN": ("JON", "JONNY"),
    "TIMOTHY": ("TIM", "TIMMY"),
    "GREGORY": ("GREG",),
    "RONALD": ("RON", "RONNIE"),
    "JOSHUA": ("JOSH",),
    "DEBORAH": ("DEBBIE", "DEBS"),
    "AMANDA": ("MANDY",),
    "GILLIAN": ("GILL", "GILLY"),
}


# Given names registered in their own right in England and Wales that the package
# lists only as nicknames (JACK under JOHN, AMY under AMELIA, LEAH under ASHLEY):
# they stay as they are, so that two different common names never agree.
OWN_NAMES: frozenset[str] = frozenset(
    {
        "JACK",
        "JAKE",
        "MARK",
        "MARC",
        "LEE",
        "GARY",
        "GARRY",
        "NEIL",
        "LEWIS",
        "CARL",
        "ROY",
        "ROSS",
        "FRANK",
        "MAX",
        "LEON",
        "TOBY",
        "HUGH",
        "JAY",
        "ARCHIE",
        "TEDDY",
        "FREDDIE",
        "NOAH",
        "LAURA",
        "SOPHIE",
        "AMY",
        "TRACY",
        "GEORGIA",
        "MARIA",
        "LYNN",
        "MOLLY",
        "SALLY",
        "KIM",
        "KELLY",
        "CARLY",
        "LEAH",
        "ROSIE",
        "GAIL",
        "JILL",
        "RITA",
        "LILY",
        "MILLIE",
        "MAISIE",
        "DAISY",
    }
)


@dataclass(frozen=True)
class Normalised:
    """Normalised values (null where blank or unusable) and how many were which."""

    values: pl.Series
    missing: int
    invalid: int


@dataclass(frozen=True)
class Factorised:
    """A column as its distinct values plus, for each row, the position of its value.

    Work that depends only on the value (normalising, tokenising) is done once per
    distinct value and spread back over the rows with :meth:`expand`, a plain gather.
    ``distinct`` holds no nulls and is in order of first appearance; a null row has a
    null code.
    """

    distinct: pl.Series
    codes: pl.Series

    @classmethod
    def of(cls, series: pl.Series) -> Factorised:
        # One hash pass gives both the distinct values and each row's position (Arrow's
        # dictionary encoding), where unique() and a lookup back would take two.
        encoded = pc.dictionary_encode(series.rechunk().to_arrow())
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        distinct = pl.Series(series.name, encoded.dictionary, dtype=series.dtype)
        codes = pl.Series(series.name, encoded.indices, dtype=pl.Int32)
        return cls(distinct=distinct, codes=codes)

    @cached_property
    def counts(self) -> np.ndarray:
        """How many rows hold each distinct value (aligned with :attr:`distinct`)."""
        return np.bincount(
            self.codes.drop_nulls().to_numpy(), minlength=self.distinct.len()
        ).astype(np.int64)

    def expand(self, per_distinct: pl.Series) -> pl.Series:
        """Per-row values from values aligned with :attr:`distinct`; null where the row was null."""
        return per_distinct.gather(self.codes).alias(per_distinct.name or self.distinct.name)

    def count_rows(self, per_distinct_mask: pl.Series) -> int:
        """How many rows have a value for which ``per_distinct_mask`` is true."""
        mask = per_distinct_mask.fill_null(False).to_numpy()
        return int(self.counts[mask].sum())

    def refactor(self, per_distinct: pl.Series) -> Factorised:
        """The rows' values of ``per_distinct`` (aligned with :attr:`distinct`) factorised:
        several distinct raw values may give one result (``Bob``, ``BOB``), which then
        appears once. Costs a pass over the distinct values and one gather over the rows."""
        inner = Factorised.of(per_distinct)
        return Factorised(distinct=inner.distinct, codes=inner.codes.gather(self.codes))


def map_distinct(
    series: pl.Series, transform: Callable[[pl.Series], pl.Series], return_dtype: pl.DataType
) -> pl.Series:
    """Apply ``transform`` to each distinct non-null value once and map the results back."""
    factorised = Factorised.of(series)
    return factorised.expand(transform(factorised.distinct).cast(return_dtype).alias(series.name))


def _blank_to_null(series: pl.Series) -> pl.Series:
    stripped = series.cast(pl.String).str.strip_chars()
    return stripped.replace("", None)


def _normalised(raw: pl.Series, values: pl.Series) -> Normalised:
    present = _blank_to_null(raw)
    missing = present.null_count()
    invalid = (present.is_not_null() & values.is_null()).sum()
    return Normalised(values=values, missing=int(missing), invalid=int(invalid))


# ---------------------------------------------------------------- names


_UNDECOMPOSED = {
    "Ł": "L",
    "ł": "l",
    "Ø": "O",
    "ø": "o",
    "ß": "ss",
    "ẞ": "SS",
    "Đ": "D",
    "đ": "d",
    "Æ": "AE",
    "æ": "ae",
    "Œ": "OE",
    "œ": "oe",
    "ı": "i",
    "Ħ": "H",
    "ħ": "h",
    "Þ": "TH",
    "þ": "th",
}


def clean_names(values: pl.Series) -> pl.Series:
    """Each name as upper-case letters only, accents removed; null if no letters.

    Like the other per-value rules below (``valid_nhs_numbers``, ``parse_iso_dates``,
    ``format_postcodes``, ``sex_codes``) it works on any Series; callers pass the
    distinct values and spread the result over the rows.
    """
    # NFKD splits "á" into "a" + a combining accent; keeping only letters (\p{L})
    # then drops the accent, with punctuation, digits, spaces and hyphens. Letters NFKD does
    # not decompose (Ł, Ø, ß...) are folded as ASCII-only systems write them, so that
    # ŁUKASZ from one partner and LUKASZ from another give one token.
    return (
        values.str.replace_many(list(_UNDECOMPOSED), list(_UNDECOMPOSED.values()))
        .str.normalize("NFKD")
        .str.to_uppercase()
        .str.replace_all(r"[^\p{L}]", "")
        .replace("", None)
    )


@cache
def nickname_table() -> dict[str, str]:
    """Normalised given name -> canonical given name, for names that change.

    Deterministic rule, first match wins: (1) a short form in
    :data:`PREFERRED_FULL_NAMES` maps to its full name; (2) a name in
    :data:`OWN_NAMES`, or one the ``nicknames`` package lists as a full name (it has
    nicknames of its own), stays as it is; (3) a name the package lists only as a
    nickname maps to the candidate full name with the most nicknames of its own (the
    best-established form), the alphabetically first on a tie. Chains are followed,
    so the result is idempotent: a canonical name maps to itself. Names the package
    does not know stay as they are.
    """
    namer = NickNamer()
    nicknames_of = namer.nickname_lookup
    canonicals_of = namer.canonical_lookup
    words = sorted(set(nicknames_of) | set(canonicals_of))
    clean = dict(zip(words, clean_names(pl.Series(words, dtype=pl.String)).to_list(), strict=True))

    table: dict[str, str] = {}
    for nickname, canonicals in canonicals_of.items():
        if nicknames_of.get(nickname) or not clean[nickname] or clean[nickname] in OWN_NAMES:
            continue
        best = max(sorted(canonicals), key=lambda name: len(nicknames_of.get(name, ())))
        if clean[best] and clean[best] != clean[nickname]:
            table[clean[nickname]] = clean[best]
    for full_name, short_forms in PREFERRED_FULL_NAMES.items():
        table.pop(full_name, None)
        table.update(dict.fromkeys(short_forms, full_name))
    # Follow chains (A -> B where B itself maps on) so every target is final.
    for name in list(table):
        seen = {name}
        target = table[name]
        while target in table and target not in seen:
            seen.add(target)
            target = table[target]
        table[name] = target
    return {name: target for name, target in table.items() if name != target}


def canonical_given_name(name: str) -> str:
    """Canonical form of one already-normalised given name (``BOB`` -> ``ROBERT``)."""
    return nickname_table().get(name, name)


def canonical_given_names(normalised: pl.Series) -> pl.Series:
    """Canonical nickname form of each already-normalised given name; nulls stay null."""
    table = nickname_table()
    return map_distinct(normalised, lambda d: d.replace(table), pl.String)


def name_parts(values: pl.Series) -> pl.DataFrame:
    """The first and the last part of each raw name written with spaces or hyphens
    (``Mary-Anne`` -> MARY, ANNE; ``Smith Jones`` -> SMITH, JONES; ``Ann`` -> ANN, ANN), each
    cleaned as :func:`clean_names`; null where the name has no letters. Columns ``first``,
    ``last``, aligned with ``values``."""
    frame = pl.DataFrame(
        {"part": values.cast(pl.String).str.extract_all(r"[^\s\-]+")}
    ).with_row_index("row")
    parts = (
        frame.explode("part")
        .with_columns(part=clean_names(frame.explode("part")["part"]))
        .drop_nulls("part")
    )
    ends = parts.group_by("row", maintain_order=True).agg(
        first=pl.col("part").first(), last=pl.col("part").last()
    )
    return frame.select("row").join(ends, on="row", how="left", maintain_order="left").drop("row")


# Words of an address line written in more than one way, to one form (both sides alike, so
# ST may stand for SAINT as well as STREET without harm).
ADDRESS_WORDS = {
    "RD": "ROAD",
    "ST": "STREET",
    "AVE": "AVENUE",
    "AV": "AVENUE",
    "LN": "LANE",
    "DR": "DRIVE",
    "CT": "COURT",
    "CL": "CLOSE",
    "CRES": "CRESCENT",
    "CRESC": "CRESCENT",
    "PL": "PLACE",
    "GDNS": "GARDENS",
    "GRN": "GREEN",
    "TER": "TERRACE",
    "TERR": "TERRACE",
    "SQ": "SQUARE",
    "HSE": "HOUSE",
    "APT": "FLAT",
    "APARTMENT": "FLAT",
    "WY": "WAY",
    "GRO": "GROVE",
}


def address_lines(values: pl.Series) -> pl.Series:
    """First line of an address: upper case, accents and punctuation removed, one space
    between words, common abbreviations written out (RD -> ROAD); null if nothing is left."""
    words = (
        values.cast(pl.String)
        .str.normalize("NFKD")
        .str.replace_all(r"\p{M}", "")
        .str.to_uppercase()
        .str.replace_all(r"['’]", "")
        .str.replace_all(r"[^A-Z0-9 ]", " ")
        .str.strip_chars()
        .str.split(" ")
    )
    frame = pl.DataFrame({"w": words}).with_row_index("row").explode("w").filter(pl.col("w") != "")
    frame = frame.with_columns(w=pl.col("w").replace(ADDRESS_WORDS))
    lines = frame.group_by("row", maintain_order=True).agg(pl.col("w").str.join(" "))
    out = pl.DataFrame({"row": pl.arange(0, values.len(), eager=True).cast(pl.UInt32)})
    return (
        out.join(lines, on="row", how="left", maintain_order="left")["w"]
        .replace("", None)
        .alias(values.name)
    )


def valid_uprns(values: pl.Series) -> pl.Series:
    """Each Unique Property Reference Number as digits without leading zeros, if it is 1-12
    digits and not zero, else null."""
    digits = values.cast(pl.String).str.replace_all(r"[\s]", "")
    frame = pl.DataFrame({"d": digits})
    ok = pl.col("d").str.contains(r"^\d{1,12}$") & (pl.col("d").cast(pl.Int64, strict=False) > 0)
    return frame.select(
        pl.when(ok).then(pl.col("d").cast(pl.Int64, strict=False).cast(pl.String))
    ).to_series()


# ---------------------------------------------------------------- NHS number


def valid_nhs_numbers(values: pl.Series) -> pl.Series:
    """Each NHS number without spaces and dashes if valid (see module docstring), else null."""
    frame = pl.DataFrame({"n": values.str.replace_all(r"[\s\-]", "")})
    digit = [pl.col("n").str.slice(i, 1).cast(pl.Int32, strict=False) for i in range(10)]
    # Mod 11 as in stdnum.gb.nhs: weights 10..2 on the first nine digits, plus the
    # check digit, must sum to a multiple of 11 (tests cross-check with stdnum, which
    # is too slow to call per value at partner-extract sizes: ~16 us a number).
    weighted = sum((10 - i) * digit[i] for i in range(9)) + digit[9]
    valid = (
        pl.col("n").str.contains(r"^\d{10}$")
        & (weighted % 11 == 0)
        & (pl.col("n").cast(pl.Int64, strict=False) != digit[0].cast(pl.Int64) * 1111111111)
    )
    return frame.select(pl.when(valid).then(pl.col("n")).alias("n")).to_series()


def normalise_nhs_numbers(series: pl.Series) -> Normalised:
    """10-digit NHS numbers with a valid check digit; others null (counted invalid)."""
    values = map_distinct(series.cast(pl.String), valid_nhs_numbers, pl.String)
    return _normalised(series, values)


# ---------------------------------------------------------------- dates


# A time of day after a date: "2001-03-05 00:00:00", "05/03/2001 13:45", "2001-03-05T00:00".
_TIME_OF_DAY = r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$"


def parse_iso_dates(
    values: pl.Series,
    earliest: dt.date | None = None,
    latest: dt.date | None = None,
    formats: tuple[DateFormat, ...] = (),
) -> pl.Series:
    """Each string as a Date if it is a real date in [earliest, latest] written as ISO
    ``YYYY-MM-DD`` or in one of ``formats`` (the contract's declared raw date formats),
    else null. Only text of a format's exact shape is read by it, so ``05/03/01`` is
    never read as the year 1 by ``dd/mm/yyyy``."""
    frame = pl.DataFrame({"s": values.str.strip_chars().str.replace(_TIME_OF_DAY, "")})
    parsed = pl.coalesce(
        pl.when(pl.col("s").str.contains(f.shape)).then(
            pl.col("s").str.to_date(f.strftime, strict=False)
        )
        for f in (ISO_DATE, *formats)
    )
    frame = frame.select(parsed.alias("d"))
    in_range = pl.lit(True)
    if earliest is not None:
        in_range = in_range & (pl.col("d") >= earliest)
    if latest is not None:
        in_range = in_range & (pl.col("d") <= latest)
    return frame.select(pl.when(in_range).then(pl.col("d")).alias("d")).to_series()


# Date formats partners' systems write, tried when most of a date column is not ISO, so that
# `partner prepare` can say which one to declare (it never reads dates with one undeclared).
COMMON_DATE_FORMATS = (
    "dd/mm/yyyy",
    "mm/dd/yyyy",
    "dd-mm-yyyy",
    "dd.mm.yyyy",
    "yyyy/mm/dd",
    "yyyymmdd",
    "dd-mon-yyyy",
    "dd mon yyyy",
    "dd month yyyy",
)
# How many distinct values are tried, and the share of them a format must read.
_SUGGEST_SAMPLE, _SUGGEST_SHARE = 2000, 0.95


def suggest_date_formats(values: pl.Series) -> list[str]:
    """The formats of :data:`COMMON_DATE_FORMATS` that read at least 95% of the (distinct, up to
    2,000) non-blank ``values`` that are not ISO: what to declare as ``dateFormats``. Two that both read them
    (``dd/mm/yyyy`` and ``mm/dd/yyyy`` when every day is 12 or less) are both returned: only the
    partner knows which its system writes. Any date, not only a plausible date of birth."""
    text = values.cast(pl.String).str.strip_chars().replace("", None).drop_nulls().unique()
    text = text.sort().head(_SUGGEST_SAMPLE)
    text = text.filter(parse_iso_dates(text).is_null())  # ISO is always read: the rest
    if text.is_empty():
        return []
    return [
        declared
        for declared in COMMON_DATE_FORMATS
        if parse_iso_dates(text, formats=(DateFormat.parse(declared),)).is_not_null().sum()
        >= _SUGGEST_SHARE * text.len()
    ]


def normalise_dates(
    series: pl.Series,
    earliest: dt.date | None = None,
    latest: dt.date | None = None,
    formats: tuple[DateFormat, ...] = (),
) -> Normalised:
    """ISO ``YYYY-MM-DD`` strings (or ``formats``) -> Date; anything else (or out of range)
    -> null, counted."""
    values = map_distinct(
        series.cast(pl.String), lambda d: parse_iso_dates(d, earliest, latest, formats), pl.Date
    )
    return _normalised(series, values)


# ---------------------------------------------------------------- postcodes


def _postcode_shape(values: pl.Series, shape: str) -> pl.Series:
    """Per value, one of: ``uk``, the UK postcode as ``AB1 2CD`` (null if not one); ``any``, the
    same or, with hyphens and dots removed too, a UK postcode as ``AB1 2CD`` or another postal
    code as written without them (null if none); ``other``, whether it is another country's;
    ``district``, the outward code where the value is only that (``LS6``; else null)."""

    def uk_format(code: pl.Expr) -> pl.Expr:
        return pl.concat_str(code.str.head(-3), pl.lit(" "), code.str.tail(3))

    upper = pl.col("v").str.to_uppercase()
    spaced = upper.str.replace_all(r"\s", "")
    bare = upper.str.replace_all(r"[\s.\-]", "")
    is_uk = bare.str.contains(UK_POSTCODE_PATTERN)
    outward = spaced.str.contains(UK_OUTWARD_PATTERN)
    other = (
        ~is_uk
        & ~outward
        & bare.str.contains(POSTAL_CODE_PATTERN)
        & bare.str.contains("[0-9]")
        & ~bare.str.starts_with(NHS_PSEUDO_POSTCODE)
    )
    expression = {
        "uk": pl.when(spaced.str.contains(UK_POSTCODE_PATTERN)).then(uk_format(spaced)),
        "any": pl.when(is_uk).then(uk_format(bare)).when(other).then(bare),
        "other": other.fill_null(False),
        "district": pl.when(outward).then(spaced),
    }[shape]
    frame = pl.DataFrame({"v": values.cast(pl.String)})
    return frame.select(expression.alias(values.name)).to_series()


def format_postcodes(values: pl.Series, any_country: bool = False) -> pl.Series:
    """Each postcode as ``AB1 2CD`` if it has the UK postcode format; with ``any_country``, a
    postal code of another shape as written without spaces, hyphens and dots; else null."""
    return _postcode_shape(values, "any" if any_country else "uk")


def other_country_postcodes(values: pl.Series) -> pl.Series:
    """True where a value is not a UK postcode but has the shape of another country's postal
    code (see :func:`format_postcodes`)."""
    return _postcode_shape(values, "other")


def district_only_postcodes(values: pl.Series) -> pl.Series:
    """The postcode district (outward code, ``LS6``) where a value is that alone, else null."""
    return _postcode_shape(values, "district")


def normalise_postcodes(series: pl.Series, any_country: bool = False) -> Normalised:
    """UK postcodes as ``AB1 2CD`` (and, with ``any_country``, other postal codes); anything
    else -> null, counted."""
    values = map_distinct(
        series.cast(pl.String), lambda v: format_postcodes(v, any_country), pl.String
    )
    return _normalised(series, values)


def postcode_sectors(postcodes: pl.Series) -> pl.Series:
    """``AB1 2CD`` -> ``AB1 2`` (outward code and first inward character); null for a postal
    code that is not a UK postcode."""
    return (
        pl.select(pl.when(postcodes.str.contains(" ")).then(postcodes.str.head(-2)))
        .to_series()
        .alias(postcodes.name)
    )


def postcode_districts(postcodes: pl.Series) -> pl.Series:
    """``AB1 2CD`` -> ``AB1`` (the outward code); null for a postal code that is not a UK
    postcode."""
    return (
        pl.select(pl.when(postcodes.str.contains(" ")).then(postcodes.str.head(-4)))
        .to_series()
        .alias(postcodes.name)
    )


def postal_code_characters(postcodes: pl.Series) -> pl.Series:
    """Another country's postal code with its characters in sorted order (``6602`` -> ``0266``),
    the same for two codes that differ by transposed characters (``6062``); null for a UK
    postcode, which has a sector and a district for partial agreement instead."""
    return (
        pl.select(
            pl.when(~postcodes.str.contains(" ")).then(
                postcodes.str.split("").list.sort().list.join("")
            )
        )
        .to_series()
        .alias(postcodes.name)
    )


def postal_code_variants(postcodes: pl.Series) -> pl.Series:
    """Another country's postal code and each of its forms with one character left out, in
    sorted order without repeats (``2602`` -> ``202 260 2602 262 602``): two codes one keying
    error apart (a character changed, added or dropped, or two neighbours swapped) share one of
    them. Null for a UK postcode, which has a sector and a district for partial agreement
    instead."""
    out = [
        None
        if code is None or " " in code
        else sorted({code, *(code[:k] + code[k + 1 :] for k in range(len(code)))} - {""})
        for code in postcodes.to_list()
    ]
    return pl.Series(postcodes.name, out, dtype=pl.List(pl.String))


# ---------------------------------------------------------------- sex


def sex_codes(values: pl.Series) -> pl.Series:
    """M / F / U for each value (aliases in :data:`SEX_ALIASES`), else null."""
    return (
        values.str.strip_chars()
        .str.to_uppercase()
        .str.replace_all(r"\s+", " ")
        .replace_strict(SEX_ALIASES, default=None, return_dtype=pl.String)
    )
