"""`placelink bench linkage --profile NAME`: tokens against clear-text Splink on a stress profile.

For a profile of :mod:`pipelines.tooling.stress` it generates the two partners' files, runs the partner
kit's normalisation and encoders on each (a fresh linkage key), and links the same records two
ways on the same fields:

- **tokens**: the hub's model, built from the fields present, trained, with the threshold it
  calibrates itself (what ``placelink run`` does);
- **clear text**: a strong clear-text Splink model on the values the kit normalised, as a
  linkage analyst holding clear identifiers would build it: term-frequency adjusted exact
  names, Damerau-Levenshtein and Jaro-Winkler levels, a names-transposed level, a date of birth
  with day/month swap, Damerau-Levenshtein and a one-year level, postcode Damerau-Levenshtein,
  sector and district. Same blocking rules (on the clear values), same training procedure,
  same threshold calibration, same placeholder handling: the difference is what the features
  can express, not how hard one side tried.

On the profiles with transposed names (:data:`SWAP_PROFILES`) a third model,
**clear text without swap**, is the same clear-text model without its name-swap levels (names
transposed, one name found in the other field): the reference "where clear text has none".

Scores are pairwise precision, recall and F1 over records against the generator's truth, and
recall by name origin over the pairs that touch each group's records, each with a 95% Wilson
interval (a few hundred true pairs per origin at a profile's own size: ``people`` makes the
population larger so that a gap of a point between origins can be told from noise).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from statsmodels.stats.proportion import proportion_confint

from pipelines.governance.contracts import DateFormat
from pipelines.linkage.comparisons import (
    BIGRAM_SEPARATOR,
    FULL_NAME,
    FULL_NAME_CLEAR,
    NAME_PARTS,
    names_written_differently_and_transposed,
    postcode_null_level,
)
from pipelines.linkage.evaluation import PairwiseScores, pairwise_scores, pairwise_scores_touching
from pipelines.linkage.model import predict_clusters, train
from pipelines.linkage.person_records import LINKAGE_FEATURES
from pipelines.partner_kit.bloom import bigrams
from pipelines.partner_kit.features import IDENTITY_FEATURES, IdentityInputs
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.stress import PROFILES, StressFiles, generate

# The kit's date-of-birth check needs "today": a fixed day after every generated birth date.
TODAY = dt.date(2026, 1, 1)
METHODS = ("tokens", "clear_text")
# Profiles where names are transposed often enough to show what the name-swap evidence is worth:
# these also run clear text without it.
SWAP_PROFILES = ("transposed_names", "a_like")
NO_SWAP = "clear_text_no_swap"


class ClearInputs(IdentityInputs):
    """The partner kit's normalisation without the tokenising: clear values."""

    def token(self, field_name: str, values: pl.Series, *, all_distinct: bool = False) -> pl.Series:
        return values.alias(field_name)


def _features_of(raw: pl.DataFrame) -> list[str]:
    """The hub columns a file with these raw columns sends (every one its columns can make)."""
    return [
        name
        for name in LINKAGE_FEATURES
        if name in IDENTITY_FEATURES
        and all(s in raw.columns for s in IDENTITY_FEATURES[name].sources)
    ]


def full_name_bigrams(inputs: IdentityInputs) -> pl.Series:
    """Per row, the clear-text equivalent of the full-name Bloom filter: the set of the given
    name's and the family name's bigrams (each padded on its own), sorted and joined with
    :data:`~pipelines.linkage.comparisons.BIGRAM_SEPARATOR`; null unless both names are present."""
    given = inputs.rows("given_name", inputs.given_name).to_list()
    family = inputs.rows("family_name", inputs.family_name).to_list()
    return pl.Series(
        FULL_NAME_CLEAR,
        [
            BIGRAM_SEPARATOR.join(sorted(bigrams(g) | bigrams(f))) if g and f else None
            for g, f in zip(given, family, strict=True)
        ],
        dtype=pl.String,
    )


def partner_records(
    raw: pl.DataFrame,
    partner: str,
    key: LinkageKey,
    clear: bool = False,
    today: dt.date = TODAY,
    date_formats: tuple[DateFormat, ...] = (),
    postcode_format: str | None = None,
) -> pl.DataFrame:
    """One partner file's person records (one per record, ``unique_id`` = ``record_id``): the
    partner kit's features as the hub receives them or, with ``clear``, the clear values the
    tokens are made from (and ``<name>_clear`` for each Bloom-encoded field). ``today`` bounds
    dates of birth; ``date_formats`` and ``postcode_format`` are the contract's, as in
    ``partner prepare``."""
    inputs = (ClearInputs if clear else IdentityInputs)(
        raw,
        partner_id=partner,
        dataset=partner,
        key=key,
        today=today,
        date_formats=date_formats,
        postcode_format=postcode_format,
    )
    columns: dict[str, pl.Series] = {
        "unique_id": raw["record_id"],
        "partner_id": pl.Series([partner] * raw.height),
    }
    sent = set(_features_of(raw))
    for name, sql_type in LINKAGE_FEATURES.items():
        if clear and name == FULL_NAME:
            columns[FULL_NAME_CLEAR] = (
                full_name_bigrams(inputs) if name in sent else pl.Series([None] * raw.height)
            ).cast(pl.String)
            continue
        if clear and sql_type == "BIT":
            source = IDENTITY_FEATURES[name].source
            values = inputs.rows(source, getattr(inputs, source)) if name in sent else None
            columns[f"{source}_clear"] = (
                values if values is not None else pl.Series([None] * raw.height, dtype=pl.String)
            )
            continue
        dtype = pl.Binary if sql_type == "BIT" else pl.String
        columns[name] = (
            IDENTITY_FEATURES[name].rows(inputs).cast(dtype)
            if name in sent
            else pl.Series([None] * raw.height, dtype=dtype)
        )
    return pl.DataFrame(columns)


def person_records(
    files: StressFiles, clear: bool = False, key: LinkageKey | None = None
) -> pa.Table:
    """The hub's person records of both files (see :func:`partner_records`), under one key."""
    key = key or LinkageKey.generate()
    return pl.concat(
        [
            partner_records(files.first, "first", key, clear),
            partner_records(files.second, "second", key, clear),
        ]
    ).to_arrow()


def reference_comparisons(have: frozenset[str], swap: bool = True) -> list:
    """A strong clear-text Splink model on the fields present (see the module docstring);
    ``swap=False`` leaves out the name-swap levels (transposed, one name in the other field)."""
    out: list = []
    if "nhs_number_token" in have:
        out.append(
            cl.CustomComparison(
                output_column_name="nhs_number",
                comparison_levels=[
                    cll.NullLevel("nhs_number_token"),
                    cll.ExactMatchLevel("nhs_number_token", term_frequency_adjustments=True),
                    cll.DamerauLevenshteinLevel("nhs_number_token", 1),
                    cll.ElseLevel(),
                ],
            )
        )
    for name in ("given_name", "family_name"):
        written = f"{name}_clear"
        if f"{name}_token" not in have or written not in have:
            continue
        levels = [
            cll.NullLevel(written),
            cll.ExactMatchLevel(f"{name}_token", term_frequency_adjustments=True),
        ]
        if swap and {"given_name_clear", "family_name_clear"} <= have:
            # As the hub's model: transposed names weigh on the given name, neutral on the family name.
            swapped = cll.ColumnsReversedLevel(
                "given_name_clear", "family_name_clear", symmetrical=True
            )
            levels.append(
                swapped if name == "given_name" else swapped.configure(is_null_level=True)
            )
            if FULL_NAME_CLEAR in have:
                # The tokens' full-name level on the clear names: Dice of the bigram sets (what
                # the filters approximate), neither name alike by Jaro-Winkler.
                written_differently = cll.CustomLevel(
                    names_written_differently_and_transposed("clear"),
                    label_for_charts="names transposed and written differently",
                )
                levels.append(
                    written_differently
                    if name == "given_name"
                    else written_differently.configure(is_null_level=True)
                )
            if name == "given_name":
                levels.append(
                    cll.CustomLevel(
                        "given_name_clear_l = family_name_clear_r OR "
                        "family_name_clear_l = given_name_clear_r",
                        label_for_charts="one name found in the other field",
                    )
                )
        levels += [
            cll.DamerauLevenshteinLevel(written, 1),
            cll.JaroWinklerLevel(written, 0.9),
            cll.DamerauLevenshteinLevel(written, 2),
            cll.JaroWinklerLevel(written, 0.8),
        ]
        first, last = NAME_PARTS[name]
        if first in have:
            levels.append(
                cll.CustomLevel(
                    " OR ".join(f"{a}_l = {b}_r" for a in (first, last) for b in (first, last)),
                    label_for_charts="a name part agrees",
                )
            )
        levels.append(cll.ElseLevel())
        out.append(cl.CustomComparison(output_column_name=name, comparison_levels=levels))
    if "date_of_birth_token" in have:
        dob = "date_of_birth_token"
        levels = [cll.NullLevel(dob), cll.ExactMatchLevel(dob)]
        if "dob_unordered_token" in have:
            levels.append(
                cll.CustomLevel(
                    "dob_unordered_token_l = dob_unordered_token_r",
                    label_for_charts="day and month swapped",
                )
            )
        levels += [
            cll.DamerauLevenshteinLevel(dob, 1),
            cll.AbsoluteDateDifferenceLevel(dob, input_is_string=True, threshold=1, metric="year"),
            cll.ElseLevel(),
        ]
        out.append(
            cl.CustomComparison(output_column_name="date_of_birth", comparison_levels=levels)
        )
    if "postcode_token" in have or "postcode_district_token" in have:
        levels = [postcode_null_level(have)]
        if "postcode_token" in have:
            levels += [
                cll.ExactMatchLevel("postcode_token"),
                cll.DamerauLevenshteinLevel("postcode_token", 1),
            ]
        levels += [
            cll.CustomLevel(f"{c}_l = {c}_r", label_for_charts=c)
            for c in ("postcode_sector_token", "postcode_district_token")
            if c in have
        ]
        out.append(
            cl.CustomComparison(
                output_column_name="postcode", comparison_levels=[*levels, cll.ElseLevel()]
            )
        )
    if "address_line_clear" in have:
        out.append(
            cl.CustomComparison(
                output_column_name="address_line",
                comparison_levels=[
                    cll.NullLevel("address_line_clear"),
                    cll.ExactMatchLevel("address_line_clear"),
                    cll.JaroWinklerLevel("address_line_clear", 0.9),
                    cll.ElseLevel(),
                ],
            )
        )
    if "uprn_token" in have:
        out.append(cl.ExactMatch("uprn_token").configure(term_frequency_adjustments=True))
    if "sex" in have:
        out.append(cl.ExactMatch("sex"))
    return out


def clear_text_clusters(records: pa.Table, swap: bool = True) -> tuple[pa.Table, float]:
    """Clear-text Splink on ``records`` (:func:`partner_records` with ``clear``): the strong
    reference model (:func:`reference_comparisons`), trained and calibrated as the hub's model
    is. Returns the clusters (``unique_id``, ``cluster_id``) and the threshold it calibrated."""
    model = train(
        records,
        comparisons_for=functools.partial(reference_comparisons, swap=swap),
        token_ids=False,
    )
    prediction = predict_clusters(records, model, None, token_ids=False)
    return prediction.clusters, prediction.threshold


@dataclass
class MethodResult:
    scores: PairwiseScores
    by_origin: dict[str, PairwiseScores]
    threshold: float
    seconds: float


@dataclass
class ProfileResult:
    profile: str
    description: str
    seed: int
    records: int
    methods: dict[str, MethodResult] = field(default_factory=dict)


def _score(
    clusters: pa.Table, truth: pl.DataFrame, origins: list[str]
) -> tuple[PairwiseScores, dict]:
    con = duckdb.connect()
    try:
        con.register("clusters_arrow", clusters)
        con.register("truth_arrow", truth.to_arrow())
        con.execute("""CREATE TABLE scored AS SELECT t.person_id, t.origin, CAST(c.cluster_id AS VARCHAR) AS person_key
                       FROM truth_arrow t JOIN clusters_arrow c ON c.unique_id = t.record_id""")
        return (
            pairwise_scores(con, "scored"),
            {o: pairwise_scores_touching(con, "scored", f"origin = '{o}'") for o in origins},
        )
    finally:
        con.close()


def recall_interval(scores: PairwiseScores) -> tuple[float, float]:
    """95% Wilson interval of the recall (correct pairs of the true pairs)."""
    if not scores.true_pairs:
        return (1.0, 1.0)
    low, high = proportion_confint(
        scores.correct_pairs, scores.true_pairs, alpha=0.05, method="wilson"
    )
    # Wilson's bounds reach 0 and 1 exactly at those recalls; floating point can miss by 1e-16.
    if scores.correct_pairs == scores.true_pairs:
        high = 1.0
    if scores.correct_pairs == 0:
        low = 0.0
    return float(low), float(high)


def recall_spread(by_origin: dict[str, PairwiseScores]) -> tuple[float, bool]:
    """Best minus worst origin's recall, and whether the gap is beyond noise (the two origins'
    95% intervals do not overlap)."""
    best = max(by_origin.values(), key=lambda s: s.recall)
    worst = min(by_origin.values(), key=lambda s: s.recall)
    return best.recall - worst.recall, recall_interval(worst)[1] < recall_interval(best)[0]


def methods_for(name: str) -> tuple[str, ...]:
    return (*METHODS, NO_SWAP) if name in SWAP_PROFILES else METHODS


def run_profile(
    name: str, seed: int = 2026, echo=print, people: int | None = None
) -> ProfileResult:
    """Link one profile's files on tokens and clear text; ``people`` overrides the profile's
    population (its rates and fields unchanged)."""
    profile = PROFILES[name]
    if people is not None:
        profile = dataclasses.replace(profile, people=people)
    files = generate(profile, seed)
    origins = sorted(files.truth["origin"].unique().to_list())
    result = ProfileResult(
        name, profile.description, seed, files.first.height + files.second.height
    )
    for method in methods_for(name):
        echo(f"[{name}] linking {result.records:,} records on {method.replace('_', ' ')} ...")
        clear = method != "tokens"
        records = person_records(files, clear=clear)
        started = time.perf_counter()
        if clear:
            clusters, threshold = clear_text_clusters(records, swap=method != NO_SWAP)
        else:
            prediction = predict_clusters(records, train(records), None)
            clusters, threshold = prediction.clusters, prediction.threshold
        seconds = time.perf_counter() - started
        scores, by_origin = _score(clusters, files.truth, origins)
        result.methods[method] = MethodResult(scores, by_origin, threshold, seconds)
    return result


def format_result(result: ProfileResult) -> str:
    methods = list(result.methods)
    labels = {
        "tokens": "tokens (hub)",
        "clear_text": "clear-text Splink",
        NO_SWAP: "clear, no swap",
    }
    lines = [
        f"Profile {result.profile} (seed {result.seed}, {result.records:,} records): {result.description}",
        f"  {'':30}" + "".join(f"{labels[m]:>46}" for m in methods),
    ]

    def fmt(s: PairwiseScores, interval: bool) -> str:
        text = f"P {s.precision:.4f} R {s.recall:.4f} F1 {s.f1:.4f}"
        if interval:
            low, high = recall_interval(s)
            text += f" [{low:.3f}-{high:.3f}]"
        return text

    lines.append(
        f"  {'all records':30}"
        + "".join(f"{fmt(result.methods[m].scores, False):>46}" for m in methods)
    )
    for origin in result.methods["tokens"].by_origin:
        label = f"origin {origin} ({result.methods['tokens'].by_origin[origin].true_pairs:,} pairs)"
        lines.append(
            f"  {label:30}"
            + "".join(f"{fmt(result.methods[m].by_origin[origin], True):>46}" for m in methods)
        )
    spreads = {m: recall_spread(r.by_origin) for m, r in result.methods.items()}
    tokens, clear = result.methods["tokens"], result.methods["clear_text"]
    lines.append(
        "  recall best - worst origin (95% intervals apart?): "
        + ", ".join(
            f"{m.replace('_', ' ')} {spread:.4f} ({'yes' if apart else 'no'})"
            for m, (spread, apart) in spreads.items()
        )
    )
    lines.append(
        f"  F1 tokens - clear text {tokens.scores.f1 - clear.scores.f1:+.4f}"
        + (
            f", tokens - clear text without swap {tokens.scores.f1 - result.methods[NO_SWAP].scores.f1:+.4f}"
            if NO_SWAP in result.methods
            else ""
        )
        + "; thresholds "
        + " / ".join(f"{result.methods[m].threshold:.3f}" for m in methods)
        + "; "
        + " / ".join(f"{result.methods[m].seconds:.1f} s" for m in methods)
    )
    return "\n".join(lines)


def result_to_json(result: ProfileResult) -> dict:
    def scores(s: PairwiseScores) -> dict:
        return {
            **asdict(s),
            "precision": s.precision,
            "recall": s.recall,
            "recall_95": list(recall_interval(s)),
            "f1": s.f1,
        }

    return {
        "profile": result.profile,
        "seed": result.seed,
        "records": result.records,
        "true_pairs": result.methods["tokens"].scores.true_pairs,
        "methods": {
            m: {
                "all": scores(r.scores),
                "threshold": r.threshold,
                "seconds": r.seconds,
                "by_origin": {o: scores(s) for o, s in r.by_origin.items()},
                "recall_spread": recall_spread(r.by_origin)[0],
                "recall_spread_beyond_noise": recall_spread(r.by_origin)[1],
            }
            for m, r in result.methods.items()
        },
    }


def run_profiles(
    names: list[str], seed: int, out: Path | None, echo=print, people: int | None = None
) -> list[ProfileResult]:
    results = []
    for name in list(PROFILES) if names == ["all"] else names:
        results.append(run_profile(name, seed, echo, people))
        echo(format_result(results[-1]))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps([result_to_json(r) for r in results], indent=2))
    return results
