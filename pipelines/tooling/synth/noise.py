"""How partner systems record a person: registrations and identifier noise.

A person is registered once in each source system they appear in (a few twice:
a duplicate registration with its own noise), and every record in that system
carries the identity of one of their registrations. So identity is mostly
consistent within a system and differs between systems, as in real data.

Rates are per registration and are the module constants below.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.tooling.synth.names import ascii_fold, nicknames_for
from pipelines.tooling.synth.nhs_numbers import spoil_check_digit
from pipelines.tooling.synth.partners import DATASETS

DUPLICATE_REGISTRATION = 0.03  # people with a second registration in a system
SECOND_REGISTRATION_USE = 0.35  # share of such a person's records that use it
SECOND_REGISTRATION_NHS_FACTOR = 0.5  # duplicates are often made when the number was unknown
TYPO = 0.03
SURNAME_CHANGED = 0.015  # adults recorded under a former surname
SURNAME_DOUBLE_BARRELLED = 0.015  # a second surname added, or one part of a double one dropped
DOB_DAY_MONTH_SWAP = 0.015  # of all registrations (applied where the swap is a valid date)
ELIGIBLE_SWAP_SHARE = 0.36  # P(day <= 12 and day != month) for a uniform birthday
DOB_OTHER_ERROR = 0.01  # year, month or day wrong
DOB_MALFORMED = 0.001
DOB_MISSING = 0.01
NAME_MISSING = 0.002
NAME_UPPER, NAME_LOWER, NAME_PADDED = 0.08, 0.03, 0.02
ACCENTS_DROPPED = 0.05  # in systems that can store accents
APOSTROPHE_DROPPED_ASCII, APOSTROPHE_SPACED = 0.5, 0.1
SEX_UNKNOWN, SEX_MISSING = 0.003, 0.005
MOVED = 0.08  # registrations still holding the person's previous postcode
POSTCODE_MISSING, POSTCODE_LOWER, POSTCODE_NO_SPACE, POSTCODE_PADDED = 0.03, 0.03, 0.05, 0.01
NHS_INVALID = 0.003
NHS_SPACED = 0.05

LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
FORCED_GIVEN_TYPO, FORCED_FAMILY_TYPO, FORCED_DOB_ERROR, FORCED_MOVE = range(4)


def draw_registrations(
    rng: np.random.Generator, events: dict[str, pl.DataFrame], n_people: int
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Registrations (dataset, person_idx, reg_no) and each event tagged with its reg_no."""
    registrations, tagged = [], {}
    for layout in DATASETS:
        frame = events[layout.dataset]
        person = frame["person_idx"].to_numpy()
        registered = np.unique(person)
        duplicated = np.zeros(n_people, dtype=bool)
        duplicated[registered[rng.random(len(registered)) < DUPLICATE_REGISTRATION]] = True
        second = duplicated[person] & (rng.random(len(person)) < SECOND_REGISTRATION_USE)
        tagged[layout.dataset] = frame.with_columns(
            reg_no=pl.Series(np.where(second, 2, 1), dtype=pl.Int8)
        )
        twice = registered[duplicated[registered]]
        registrations.append(
            pl.DataFrame(
                {
                    # typed: a dataset with no event this month (pipelines/tooling/synth/months.py) has no rows
                    "dataset": pl.Series(
                        [layout.dataset] * (len(registered) + len(twice)), dtype=pl.String
                    ),
                    "person_idx": np.concatenate([registered, twice]).astype(np.int64),
                    "reg_no": np.repeat(
                        np.array([1, 2], dtype=np.int8), [len(registered), len(twice)]
                    ),
                }
            )
        )
    return pl.concat(registrations), tagged


def recorded_identities(
    rng: np.random.Generator, registrations: pl.DataFrame, people: pl.DataFrame
) -> pl.DataFrame:
    """Identity columns as each registration records them, with noise applied.

    Returns dataset, person_idx, reg_no, nhs_number, given_name, family_name,
    date_of_birth, sex, postcode (all strings, any may be null).
    """
    n = registrations.height
    habits = pl.DataFrame(
        {
            "dataset": [d.dataset for d in DATASETS],
            "p_nhs": [d.nhs_number_recorded for d in DATASETS],
            "p_nick": [d.nickname for d in DATASETS],
            "ascii_only": [d.ascii_only for d in DATASETS],
            "p_upper_family": [d.upper_family_name for d in DATASETS],
        }
    )
    truth = people.select(
        "given_name",
        "family_name",
        "date_of_birth",
        "sex",
        "nhs_number",
        "postcode",
        "previous_postcode",
        "previous_family_name",
        adult=pl.col("age") >= 18,
    )[registrations["person_idx"].to_numpy()]
    second = registrations["reg_no"].to_numpy() == 2
    # A duplicate registration always differs from the person in at least one way.
    forced = np.where(second, rng.integers(0, 4, n), -1)
    frame = (
        pl.concat([registrations, truth], how="horizontal")
        .with_columns(
            other_surname=people["family_name"].gather(rng.integers(0, people.height, n)),
            second=pl.Series(second),
        )
        .join(habits, on="dataset", how="left", maintain_order="left")
    )
    frame = _given_names(rng, frame, forced == FORCED_GIVEN_TYPO)
    frame = _family_names(rng, frame, forced == FORCED_FAMILY_TYPO)
    frame = frame.with_columns(
        recorded_dob=_dates_of_birth(rng, frame["date_of_birth"], forced == FORCED_DOB_ERROR),
        recorded_nhs=_nhs_numbers(rng, frame["nhs_number"]),
    )
    frame = _with_draws(rng, frame, "u_nhs", "u_sex", "u_move", "u_pc_missing", "u_pc_format")
    return frame.select(
        "dataset",
        "person_idx",
        "reg_no",
        nhs_number=_nhs_recorded(),
        given_name="recorded_given",
        family_name="recorded_family",
        date_of_birth="recorded_dob",
        sex=_sex_recorded(),
        postcode=_postcode_recorded(forced == FORCED_MOVE),
    )


def _with_draws(rng: np.random.Generator, frame: pl.DataFrame, *names: str) -> pl.DataFrame:
    """Uniform draws in [0, 1), one column per name, drawn in the order given."""
    return frame.with_columns(pl.Series(name, rng.random(frame.height)) for name in names)


def _letters(rng: np.random.Generator, n: int) -> tuple[pl.Series, pl.Series]:
    """A random letter per row, and a second one that always differs from it."""
    first = rng.integers(0, 26, n)
    second = (first + rng.integers(1, 26, n)) % 26
    return pl.Series("letter", LETTERS[first]), pl.Series("alt_letter", LETTERS[second])


def _typo(column: str) -> pl.Expr:
    """One keying error in `column`: delete, insert, transpose or substitute one character.

    Uses the draw columns u_op, u_pos and the letter columns letter, alt_letter.
    """
    name = pl.col(column)
    length = name.str.len_chars().cast(pl.Int64)
    pos = (pl.col("u_pos") * length).floor().cast(pl.Int64)
    here = name.str.slice(pos, 1)
    new = (
        pl.when(pl.col("letter") == here.str.to_lowercase())
        .then(pl.col("alt_letter"))
        .otherwise(pl.col("letter"))
    )
    new = pl.when(pos == 0).then(new.str.to_uppercase()).otherwise(new)
    head, rest = name.str.slice(0, pos), name.str.slice(pos + 1)
    swap_at = pl.max_horizontal(pl.min_horizontal(pos, length - 2), 0)
    transposed = (
        name.str.slice(0, swap_at)
        + name.str.slice(swap_at + 1, 1)
        + name.str.slice(swap_at, 1)
        + name.str.slice(swap_at + 2)
    )
    op = pl.col("u_op")
    return (
        pl.when((op < 0.25) & (length >= 3))
        .then(head + rest)
        .when(op < 0.45)
        .then(head + new + name.str.slice(pos))
        .when((op < 0.65) & (length >= 2) & (transposed != name))
        .then(transposed)
        .otherwise(head + new + rest)
    )


def _presentation(column: str, p_upper: pl.Expr | float = NAME_UPPER) -> pl.Expr:
    """Capitals, lower case, stray spaces, the odd missing value (draws u_case, u_pad, u_gone)."""
    name, u_case, u_pad = pl.col(column), pl.col("u_case"), pl.col("u_pad")
    cased = (
        pl.when(u_case < p_upper)
        .then(name.str.to_uppercase())
        .when(u_case < p_upper + NAME_LOWER)
        .then(name.str.to_lowercase())
        .otherwise(name)
    )
    padded = (
        pl.when(u_pad < NAME_PADDED / 2)
        .then(pl.lit("  ") + cased + pl.lit(" "))
        .when(u_pad < NAME_PADDED)
        .then(cased + pl.lit(" "))
        .otherwise(cased)
    )
    return pl.when(pl.col("u_gone") < NAME_MISSING).then(None).otherwise(padded)


def _accent_stages(column: str, names: pl.Series) -> list[pl.Expr]:
    """Accents, then apostrophes, as the system keeps them (draws u_accent, u_apostrophe).

    Each distinct name is folded to ASCII once, in Python; rows are then mapped.
    """
    ascii_only, name = pl.col("ascii_only"), pl.col(column)
    folded = {n: ascii_fold(n) for n in names.unique().drop_nulls().sort() if not n.isascii()}
    without_accents = name.replace(folded) if folded else name
    accents = (
        pl.when(ascii_only | (pl.col("u_accent") < ACCENTS_DROPPED))
        .then(without_accents)
        .otherwise(name)
    )
    u_apostrophe = pl.col("u_apostrophe")
    apostrophes = (
        pl.when(ascii_only & (u_apostrophe < APOSTROPHE_DROPPED_ASCII))
        .then(name.str.replace_all("'", ""))
        .when(u_apostrophe < APOSTROPHE_SPACED)
        .then(name.str.replace_all("'", " "))
        .otherwise(name)
    )
    return [accents, apostrophes]


_NAME_DRAWS = ("u_accent", "u_apostrophe", "u_typo", "u_op", "u_pos", "u_case", "u_pad", "u_gone")


def _noisy_name(
    rng: np.random.Generator,
    frame: pl.DataFrame,
    column: str,
    first_stage: pl.Expr,
    names: pl.Series,
    forced_typo: np.ndarray,
    p_upper: pl.Expr | float = NAME_UPPER,
) -> pl.DataFrame:
    """Apply the name stages one after another into `column`.

    One with_columns per stage keeps each expression small; nesting the stages
    inside each other makes the query plan grow exponentially.
    """
    frame = _with_draws(rng, frame, *_NAME_DRAWS).with_columns(*_letters(rng, frame.height))
    typo = (pl.col("u_typo") < TYPO) | pl.lit(pl.Series(forced_typo))
    stages = [
        first_stage,
        *_accent_stages(column, names),
        pl.when(typo).then(_typo(column)).otherwise(pl.col(column)),
        _presentation(column, p_upper),
    ]
    for stage in stages:
        frame = frame.with_columns(stage.alias(column))
    return frame.drop(*_NAME_DRAWS, "letter", "alt_letter")


def _given_names(
    rng: np.random.Generator, frame: pl.DataFrame, forced_typo: np.ndarray
) -> pl.DataFrame:
    table = nicknames_for(frame["given_name"].unique().sort().to_list())
    nick_frame = pl.DataFrame(
        {"given_name": list(table), "nicknames": list(table.values())},
        schema={"given_name": pl.String, "nicknames": pl.List(pl.String)},
    )
    frame = frame.join(nick_frame, on="given_name", how="left", maintain_order="left")
    frame = _with_draws(rng, frame, "u_nick", "u_pick")
    nicknames = pl.col("nicknames")
    pick = (pl.col("u_pick") * nicknames.list.len()).floor().cast(pl.Int64)
    # Rates are of all given names, but only some names have a nickname to use.
    with_nickname = max(frame["nicknames"].is_not_null().mean() or 0.0, 1e-9)
    nicknamed = (
        pl.when((pl.col("u_nick") * with_nickname < pl.col("p_nick")) & nicknames.is_not_null())
        .then(nicknames.list.get(pick, null_on_oob=True))
        .otherwise(pl.col("given_name"))
    )
    frame = _noisy_name(rng, frame, "recorded_given", nicknamed, frame["given_name"], forced_typo)
    return frame.drop("nicknames", "u_nick", "u_pick")


def _family_names(
    rng: np.random.Generator, frame: pl.DataFrame, forced_typo: np.ndarray
) -> pl.DataFrame:
    frame = _with_draws(rng, frame, "u_change")
    truth, u_change = pl.col("family_name"), pl.col("u_change")
    former = pl.coalesce("previous_family_name", "other_surname")
    barrelled = (
        pl.when(truth.str.contains("-", literal=True))
        .then(truth.str.split("-").list.first())
        .otherwise(truth + pl.lit("-") + pl.col("other_surname"))
    )
    changed = (
        pl.when(pl.col("adult") & (u_change < SURNAME_CHANGED))
        .then(former)
        .when(u_change > 1 - SURNAME_DOUBLE_BARRELLED)
        .then(barrelled)
        .otherwise(truth)
    )
    names = pl.concat([frame["family_name"], frame["previous_family_name"], frame["other_surname"]])
    frame = _noisy_name(
        rng,
        frame,
        "recorded_family",
        changed,
        names,
        forced_typo,
        pl.col("p_upper_family") + NAME_UPPER,
    )
    return frame.drop("u_change")


def _dates_of_birth(rng: np.random.Generator, dob: pl.Series, forced: np.ndarray) -> pl.Series:
    """Recorded dates of birth as text: mostly right, some swapped, wrong, malformed or missing."""
    n = dob.len()
    year = dob.dt.year().to_numpy().astype(np.int64)
    month = dob.dt.month().to_numpy().astype(np.int64)
    day = dob.dt.day().to_numpy().astype(np.int64)
    swappable = (day <= 12) & (day != month)
    swapped = swappable & (rng.random(n) < DOB_DAY_MONTH_SWAP / ELIGIBLE_SWAP_SHARE)
    wrong = ((rng.random(n) < DOB_OTHER_ERROR) | forced) & ~swapped
    part = rng.integers(0, 3, n)  # 0 year, 1 day, 2 month
    year_shift = np.where(rng.random(n) < 0.5, -1, 1)
    day_shift = rng.integers(1, 4, n)
    # Every change keeps a real calendar date: days stay within 1..28 when moved.
    new_year = np.where(wrong & (part == 0), year + year_shift, year)
    new_day = np.where(
        wrong & (part == 1), np.where(day + day_shift <= 28, day + day_shift, day - day_shift), day
    )
    new_month = np.where(wrong & (part == 2), np.where(month < 12, month + 1, month - 1), month)
    new_day = np.where(wrong & (part == 2), np.minimum(new_day, 28), new_day)
    new_day = np.where(wrong & (part == 0) & (month == 2) & (day == 29), 28, new_day)
    malformed = rng.random(n) < DOB_MALFORMED
    variant = rng.integers(0, 3, n)
    missing = rng.random(n) < DOB_MISSING

    parts = pl.DataFrame(
        {
            "y": new_year,
            "m": np.where(swapped, day, new_month),
            "d": np.where(swapped, month, new_day),
            "true_y": year,
            "variant": variant,
            "malformed": malformed,
            "missing": missing,
        }
    )
    iso = pl.concat_str(
        [
            pl.col("y").cast(pl.String),
            pl.col("m").cast(pl.String).str.zfill(2),
            pl.col("d").cast(pl.String).str.zfill(2),
        ],
        separator="-",
    )
    true_year = pl.col("true_y").cast(pl.String)
    bad = (
        pl.when(pl.col("variant") == 0)
        .then(pl.lit("31/02/") + true_year)
        .when(pl.col("variant") == 1)
        .then(true_year + pl.lit("-13-01"))
        .otherwise(true_year + pl.lit("-02-30"))
    )
    return parts.select(
        pl.when(pl.col("missing")).then(None).when(pl.col("malformed")).then(bad).otherwise(iso)
    ).to_series()


def _nhs_numbers(rng: np.random.Generator, numbers: pl.Series) -> pl.Series:
    """NHS numbers as text, a few with a wrong check digit, some with spaces (3-3-4)."""
    n = numbers.len()
    number = numbers.to_numpy()
    invalid = rng.random(n) < NHS_INVALID
    number = np.where(invalid, spoil_check_digit(number, rng.integers(1, 10, n)), number)
    spaced = rng.random(n) < NHS_SPACED
    digits = pl.col("digits")
    return (
        pl.DataFrame({"digits": pl.Series(number).cast(pl.String), "spaced": spaced})
        .select(
            pl.when(pl.col("spaced"))
            .then(digits.str.slice(0, 3) + " " + digits.str.slice(3, 3) + " " + digits.str.slice(6))
            .otherwise(digits)
        )
        .to_series()
    )


def _nhs_recorded() -> pl.Expr:
    factor = pl.when(pl.col("second")).then(SECOND_REGISTRATION_NHS_FACTOR).otherwise(1.0)
    share = pl.col("p_nhs") * factor
    return pl.when(pl.col("u_nhs") < share).then(pl.col("recorded_nhs"))


def _sex_recorded() -> pl.Expr:
    u_sex = pl.col("u_sex")
    return (
        pl.when(u_sex < SEX_MISSING)
        .then(None)
        .when(u_sex < SEX_MISSING + SEX_UNKNOWN)
        .then(pl.lit("U"))
        .otherwise(pl.col("sex"))
    )


def _postcode_recorded(forced_move: np.ndarray) -> pl.Expr:
    moved = (pl.col("u_move") < MOVED) | pl.lit(pl.Series(forced_move))
    postcode = pl.when(moved).then(pl.col("previous_postcode")).otherwise(pl.col("postcode"))
    u_format = pl.col("u_pc_format")
    return (
        pl.when(pl.col("u_pc_missing") < POSTCODE_MISSING)
        .then(None)
        .when(u_format < POSTCODE_LOWER)
        .then(postcode.str.to_lowercase())
        .when(u_format < POSTCODE_LOWER + POSTCODE_NO_SPACE)
        .then(postcode.str.replace(" ", ""))
        .when(u_format < POSTCODE_LOWER + POSTCODE_NO_SPACE + POSTCODE_PADDED)
        .then(pl.lit(" ") + postcode.str.replace(" ", "  ") + pl.lit(" "))
        .otherwise(postcode)
    )
