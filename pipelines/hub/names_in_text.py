"""Find people's names in free text, in any case and any script, without flagging ordinary words.

Capitalisation alone cannot tell a name from a word: case notes are often all in capitals
("WILL ATTEND CLINIC") or all in lower case, headings are in title case ("Family Hub
Referral"), and many scripts have no case at all. So a pair of neighbouring words counts as a
name when the words themselves say so, judged against word lists built when first needed from
libraries (no list is kept in this repository):

* given names and family names of ~90 locales, in their own scripts (Faker's person data),
  and the English nickname table (``nicknames``);
* ordinary words: every word at least once per million words (Zipf 3) in any of 42 languages,
  common words (Zipf 5) of any language and of English, and English function words (``wordfreq``);
* everyday English words: what Webster's and GCIDE list in lower case (``english-words``),
  also when inflected ("Patterns", "INVOKING").

Every word is compared folded (NFKD, accents dropped, upper case, letters only), as the partner
kit folds names before tokenising them, so ``José``, ``JOSE`` and ``jose`` are one word.

Two neighbouring words (spaces, or a middle initial, between them) are a name when:

1. a given name is followed by a family name, another given name, a word that is ordinary in
   no language and in no dictionary (``ZARA QUIXOTEUPPER``, ``josé quixoteblöm``), or, both
   written as names, a word no English dictionary lists (``Mary-Ann O'Neil``);
2. a family name (or, written as names, a word no language or dictionary knows), a comma, then a
   given name (``SMITH, Jane``, ``ZIEJA, Cezary``);
3. two capitalised words that are neither ordinary nor in a dictionary (``Zebedee Quixotl``).

A given name that is also a common or everyday word (``Will``, ``May``, ``Mark``, ``Hope``,
``le``, ``domingo``) counts only when both words are written as names (``Will Green``,
``WILL GREEN``), or, for a name common only outside English (``José``), before a word no
language knows; so ``will attend`` or ``may need`` never do. Function words (``the``, ``as``)
are never part of a name. What this finds and cannot find, with measured false alarms:
docs/identifier-scan.md.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache

import polars as pl

from pipelines.partner_kit.normalise import clean_names

# Ordinary words: at least this frequent (Zipf scale: 3 = once per million words) in a language.
_ORDINARY_ZIPF = 3.0
# Common words of any language (Will, May, Hope, Road; le, von, niño, domingo): a pair with one
# counts only when both words are written as names.
_COMMON_ZIPF = 5.0
# Function words (the, and, as, an): never part of a name.
_FUNCTION_ZIPF = 5.8

# A word: a letter, then letters, combining marks, apostrophes and hyphens (O'Brien, Smith-Jones).
WORD = r"\p{L}[\p{L}\p{M}'’\-]*"
# What may stand between two words of one name: spaces, or a middle initial ("Zara J. Quixote").
_GAP = r"[^\S\n]+(?:[\p{Lu}\p{Ll}]\.?[^\S\n]+)?"


def _fold(words) -> frozenset[str]:
    folded = clean_names(pl.Series(list(words), dtype=pl.String))
    # One-letter words only in scripts without case, where one character is a whole name (李).
    keep = (folded.str.len_chars() >= 2) | ~folded.str.contains(r"[\p{Lu}\p{Ll}]")
    return frozenset(folded.filter(keep).unique().to_list())


def _person_lists() -> tuple[set[str], set[str]]:
    """Given names and family names from every Faker locale, each name word on its own."""
    import faker.providers.person as person

    given, family = [], []
    for module in pkgutil.iter_modules(person.__path__):
        provider = getattr(
            importlib.import_module(f"{person.__name__}.{module.name}"), "Provider", None
        )
        for attribute, value in vars(provider or object).items():
            if not isinstance(value, (list, tuple, dict)):
                continue
            target = (
                given
                if attribute.startswith("first_names")
                else family
                if attribute.startswith("last_names")
                else None
            )
            if target is not None:
                # Multi-word entries ("De la Cruz") add each word of three letters or more.
                target += [
                    part
                    for name in value
                    for part in str(name).replace("-", " ").split()
                    if len(part) >= 3 or " " not in str(name)
                ]
    return set(given), set(family)


def _words_at_least(language: str, zipf: float) -> list[str]:
    """A language's words at least this frequent (Zipf 3 or more): wordfreq lists words in bands
    of one centibel (band i: frequency 10^(-i/100), Zipf 9 - i/100); its "small" lists hold
    every word down to Zipf 3."""
    from wordfreq import get_frequency_list

    bands = get_frequency_list(language, wordlist="small")[: round((9 - zipf) * 100) + 1]
    return [word for band in bands for word in band]


def _everyday_words() -> set[str]:
    """English words that a dictionary lists in lower case (grace, will, mark, june), as opposed
    to names it lists only capitalised (Jose, John): from Webster's and GCIDE (``english_words``)."""
    from english_words import get_english_words_set

    return {
        w for w in get_english_words_set(["web2", "gcide"], lower=False, alpha=True) if w.islower()
    }


@cache
def name_words() -> NameWords:
    """The folded word lists, built once per process (a few seconds: 42 languages' words)."""
    from nicknames import NickNamer
    from wordfreq import available_languages

    given, family = _person_lists()
    namer = NickNamer()
    given |= set(namer.nickname_lookup) | set(namer.canonical_lookup)
    ordinary, common = [], []
    for language in sorted(available_languages()):
        ordinary += _words_at_least(language, _ORDINARY_ZIPF)
        common += _words_at_least(language, _COMMON_ZIPF)
    return NameWords(
        given=_fold(given),
        family=_fold(family),
        ordinary=_fold(ordinary),
        everyday=_fold(_everyday_words()),
        common=_fold(common),
        common_english=_fold(_words_at_least("en", _COMMON_ZIPF)),
        function=_fold(_words_at_least("en", _FUNCTION_ZIPF)),
    )


@dataclass(frozen=True)
class NameWords:
    """Folded word lists: given names, family names, ordinary words (frequent in some language),
    everyday English words (a dictionary lists them in lower case), common and function words
    (the most frequent English words)."""

    given: frozenset[str]
    family: frozenset[str]
    ordinary: frozenset[str]
    everyday: frozenset[str]
    common: frozenset[str]
    common_english: frozenset[str]
    function: frozenset[str]

    def is_everyday(self, word: str) -> bool:
        """Whether a folded word is an everyday English word, also when inflected: a dictionary
        lists "invoke" and "pattern", text says "INVOKING" and "Patterns"."""
        if word in self.everyday:
            return True
        stems = [
            word[: -len(end)] + add for end, adds in _ENDINGS if word.endswith(end) for add in adds
        ]
        return any(len(stem) >= 3 and stem in self.everyday for stem in stems)

    def describe(self, keys: pl.Series) -> pl.DataFrame:
        """What each distinct folded word is (a hyphenated word is a given name when each part
        is one: Mary-Ann)."""
        words = keys.unique().drop_nulls().to_list()
        whole = [w.replace("-", "") for w in words]
        parts = [[p for p in w.split("-") if p] for w in words]
        return pl.DataFrame(
            {
                "key": words,
                "given": [
                    w in self.given or (len(ps) > 1 and all(p in self.given for p in ps))
                    for w, ps in zip(whole, parts)
                ],
                "family": [w in self.family for w in whole],
                "ordinary": [w in self.ordinary for w in whole],
                "everyday": [self.is_everyday(w) for w in whole],
                "common": [w in self.common for w in whole],
                "common_english": [w in self.common_english for w in whole],
                "function": [w in self.function for w in whole],
            },
            schema={"key": pl.String, **{c: pl.Boolean for c in _KINDS}},
        )


_KINDS = ("given", "family", "ordinary", "everyday", "common", "common_english", "function")
# English endings and what may have been dropped before them (invok-ing: invoke).
_ENDINGS = (
    ("IES", ("Y",)),
    ("ING", ("", "E")),
    ("ED", ("", "E")),
    ("ES", ("", "E")),
    ("S", ("",)),
    ("ER", ("", "E")),
    ("LY", ("",)),
)


def name_pairs(values: pl.Series) -> pl.DataFrame:
    """Every word of the texts (``row`` = position in ``values``) with what it is, whether the
    next word is its neighbour, and which rule (if any) makes it and the next word a name."""
    frame = pl.DataFrame({"text": values}).with_row_index("row")
    # Only texts with two words side by side (or a comma) can hold a pair: tokens, codes and
    # single words are not split at all.
    pairs = frame.filter(pl.col("text").str.contains(r"\p{L}(?:[^\S\n]|,)[^\S\n]*\p{L}"))
    # Each word with the separator after it, so neighbours are told apart from words split by
    # punctuation, digits or a line break.
    pieces = (
        pairs.select(
            "row",
            piece=pl.col("text")
            .str.normalize("NFKC")
            .str.extract_all(rf"{WORD}(?:{_GAP}|[^\S\n]*,[^\S\n]*)?"),
        )
        .explode("piece")
        .drop_nulls("piece")
        .with_row_index("position")
        .with_columns(
            word=pl.col("piece").str.extract(rf"^({WORD})"),
            comma=pl.col("piece").str.contains(","),
            joined=pl.col("piece").str.contains(r"[^\S\n]$"),
        )
        .with_columns(
            key=pl.col("word")
            .str.normalize("NFKD")
            .str.to_uppercase()
            .str.replace_all(r"[^\p{L}\-]", "")
        )
    )
    if pieces.is_empty():  # no word pairs at all: the word lists are not even built
        return pieces.with_columns(
            **{c: pl.lit(False) for c in ("given_first", "family_first", "both_rare")}
        )
    words = (
        pieces.join(name_words().describe(pieces["key"]), on="key", how="left")
        .sort("position")
        .with_columns(
            style=_style(pl.col("word")),
            letters=pl.col("key").str.replace_all("-", "").str.len_chars(),
        )
    )
    # Words are in text order, so the next word is the next row when it belongs to the same text.
    same_text = pl.col("row") == pl.col("row").shift(-1)
    nxt = {
        name: pl.when(same_text).then(pl.col(name).shift(-1))
        for name in (*_KINDS, "style", "letters", "key")
    }
    neighbours = (
        pl.col("joined") & ~pl.col("comma") & (pl.col("key") != nxt["key"]) & ~nxt["function"]
    )
    as_names = pl.col("style").is_in(["title", "upper"]) & nxt["style"].is_in(["title", "upper"])
    same_style = pl.col("style") == nxt["style"]
    # Names in scripts without case (Chinese, Arabic, Devanagari) may be one character long.
    known_next = (
        (nxt["family"] | nxt["given"])
        & (~nxt["common"] | as_names)
        & ((nxt["letters"] >= 2) | (nxt["style"] == "uncased"))
    )
    unknown_next = ~nxt["ordinary"] & ~nxt["everyday"] & (nxt["letters"] >= 3) & same_style
    unlisted_next = as_names & same_style & ~nxt["everyday"] & ~nxt["common"]
    return words.with_columns(
        # 1. a given name, then a family or given name, a word that is no ordinary word in any
        # language, or (both written as names) a word that no English dictionary lists: "Mary
        # Brown", "ZARA QUIXOTEUPPER", "Mary-Ann O'Neil". A given name that is a common word
        # or an everyday word (Will, May, Mark, Hence) counts only when both are written as
        # names: not "will attend".
        given_first=neighbours
        & pl.col("given")
        & ((pl.col("letters") >= 2) | (pl.col("style") == "uncased"))
        & (known_next | unknown_next | unlisted_next)
        & (
            (~pl.col("common") & ~pl.col("everyday"))
            | as_names
            # a name common in another language (José, Juan) before a word no language knows
            | (~pl.col("common_english") & ~pl.col("everyday") & unknown_next)
        ),
        # 2. a family name (or, both written as names, a word that is no ordinary word), a comma,
        # a given name: "SMITH, Jane", "ZIEJA, Cezary"
        family_first=(pl.col("family") | (as_names & ~pl.col("ordinary") & ~pl.col("everyday")))
        & pl.col("comma")
        & nxt["given"]
        & ~nxt["function"]
        & (~nxt["common"] | as_names),
        # 3. two capitalised words that are neither ordinary nor in a dictionary: "Zebedee Quixotl"
        both_rare=neighbours
        & (pl.col("style") == "title")
        & same_style
        & ~pl.col("ordinary")
        & ~pl.col("everyday")
        & (pl.col("letters") >= 3)
        & unknown_next,
    ).with_columns(pl.col("given_first", "family_first", "both_rare").fill_null(False))


def _style(word: pl.Expr) -> pl.Expr:
    """How a word is written: "upper" (JANE), "title" (Jane, O'Brien, McDonald), "lower", or
    "uncased" (scripts without capitals: Arabic, Devanagari, Chinese)."""
    return (
        pl.when(word.str.contains(r"^[^\p{Lu}\p{Ll}]+$"))
        .then(pl.lit("uncased"))
        .when(~word.str.contains(r"\p{Ll}"))
        .then(pl.lit("upper"))
        .when(word.str.contains(r"^\p{Lu}"))
        .then(pl.lit("title"))
        .otherwise(pl.lit("lower"))
    )


def contains_names(values: pl.Series) -> pl.Series:
    """For each text, whether it holds a pair of words that reads as a person's name (module
    docstring); null stays null."""
    hits = (
        name_pairs(values)
        .group_by("row")
        .agg(name=pl.any_horizontal("given_first", "family_first", "both_rare").any())
    )
    return (
        pl.DataFrame({"text": values})
        .with_row_index("row")
        .join(hits, on="row", how="left")
        .sort("row")
        .select(pl.when(pl.col("text").is_not_null()).then(pl.col("name").fill_null(False)))
        .to_series()
        .alias(values.name)
    )
