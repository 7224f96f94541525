"""The Splink model that links person records on the partners' tokens.

Comparisons read like the domain; names fall back from the exact token to the
phonetic token to a Dice similarity of the keyed Bloom encodings (computed in DuckDB
with ``bit_count`` on ``BIT`` columns). A trained model is data: JSON under
``PLACELINK_HOME/models`` with its training date, reused until retraining is asked for.
Training runs on DuckDB; scoring and clustering run on DuckDB or, with the same JSON, on
Spark (:mod:`pipelines.linkage.spark`).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import splink.comparison_level_library as cll
import splink.comparison_library as cl
import sqlglot
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
from splink.blocking_analysis import count_comparisons_from_blocking_rules
from splink.blocking_rule_library import CustomRule
from sqlglot import exp

from pipelines.stages import stage

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

MODEL_FILE = "linkage_model.json"
# Measured on 2,500 synthetic names (docs/linkage-features.md): unrelated pairs reach
# Dice >= 0.7 in 0.6% of cases and >= 0.8 in 0.02%; one-character typos in 90% and 62%.
# (At 0.6, 12% of unrelated pairs would qualify: the level would carry little evidence.)
DICE_HIGH, DICE_LOW = 0.8, 0.7


# A Bloom filter's popcount is counted once per record, in a column named with this suffix,
# rather than twice per pair and level: at 1M people that took about a sixth of scoring.
BLOOM_BITS = "_bits"


def bloom_bit_counts(columns: list[str]) -> str:
    """SQL select items: each Bloom-filter column's popcount (the columns are ``BIT`` or binary)."""
    return ", ".join(f"bit_count(CAST({c} AS BIT)) AS {c}{BLOOM_BITS}" for c in columns)


def _dice(column: str) -> str:
    left, right = f"{column}_l", f"{column}_r"
    return (f"(2.0 * bit_count({left} & {right}) / "
            f"nullif({column}{BLOOM_BITS}_l + {column}{BLOOM_BITS}_r, 0))")


# On DuckDB (training and scoring), each Bloom filter is also cut into 64-bit words, columns
# ``<bloom>_w0``, ``_w1``...: the popcount of ``a & b`` is then a sum of popcounts of integers,
# where on ``BIT`` each pair allocates the AND of two bit strings. The saved model keeps
# ``bit_count(a & b)``; only the connection's copy is rewritten (:func:`dice_on_words`).
WORD = "_w"


def bloom_columns(records: pa.Table) -> list[str]:
    """The Bloom-filter columns: DuckDB ``BIT`` travels through Arrow as binary."""
    return [f.name for f in records.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]


def bit_count_argument(node: exp.Expression) -> exp.Expression | None:
    """What a one-argument ``bit_count(...)`` counts (sqlglot parses it either way), else None."""
    if isinstance(node, exp.BitwiseCount):
        return node.this
    if isinstance(node, exp.Anonymous) and node.name.lower() == "bit_count" and len(node.expressions) == 1:
        return node.expressions[0]
    return None


def bloom_words(column: pa.ChunkedArray | pa.Array) -> list[pa.Array] | None:
    """The filters of a binary column as 64-bit words (the bytes in order, the last word
    zero-padded), or None unless every filter has the same length.

    Any cut of equal-length filters into the same words keeps ``bit_count(a & b)``: it is the
    sum over the words of the popcount of their AND.
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0 or array.null_count == len(array):
        return None
    offset_type = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)[array.offset:array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid)
    lengths = np.diff(offsets)[rows]
    if lengths.min() != lengths.max() or lengths[0] == 0:
        return None
    size = int(lengths[0])
    padded = np.zeros((len(array), -(-size // 8) * 8), dtype=np.uint8)
    padded[rows, :size] = data[offsets[:-1][rows, None] + np.arange(size)]
    words = padded.view(np.int64)
    return [pa.array(words[:, i], mask=~valid) for i in range(words.shape[1])]


def dice_on_words(settings: dict[str, Any], words: dict[str, int]) -> dict[str, Any]:
    """A copy of a saved model whose ``bit_count(<bloom>_l & <bloom>_r)`` reads the filters'
    64-bit words (``words``: the number of words of each Bloom column). Other SQL is untouched."""
    def rewrite(node: exp.Expression) -> exp.Expression:
        argument = bit_count_argument(node)
        if not isinstance(argument, exp.BitwiseAnd):
            return node
        left, right = argument.this, argument.expression
        bloom = left.name.removesuffix("_l") if isinstance(left, exp.Column) else ""
        if bloom not in words or left.name != f"{bloom}_l" or not (
                isinstance(right, exp.Column) and right.name == f"{bloom}_r"):
            return node
        summed = " + ".join(f"CAST(bit_count({bloom}{WORD}{i}_l & {bloom}{WORD}{i}_r) AS BIGINT)"
                            for i in range(words[bloom]))
        return sqlglot.parse_one(f"({summed})", read="duckdb")

    rewritten = copy.deepcopy(settings)
    for comparison in rewritten["comparisons"]:
        for level in comparison["comparison_levels"]:
            sql = level["sql_condition"]
            if "bit_count" in sql.lower():
                level["sql_condition"] = sqlglot.parse_one(sql, read="duckdb").transform(rewrite).sql("duckdb")
    return rewritten


# The clear-text benchmark baseline (pipelines/bench/linkage.py) compares the names as
# written with Jaro-Winkler where the hub compares Bloom filters with Dice.
JARO_WINKLER_HIGH, JARO_WINKLER_LOW = 0.92, 0.8


def name_comparison(name: str, similarity: str = "bloom") -> cl.CustomComparison:
    """Exact token -> phonetic token -> Bloom Dice >= 0.8 -> Dice >= 0.7 -> else.

    ``similarity="clear"`` replaces the Dice levels with Jaro-Winkler on ``<name>_clear``
    (only for the benchmark's clear-text baseline; the hub never holds clear names).
    """
    token, phonetic, bloom = f"{name}_token", f"{name}_phonetic_token", f"{name}_bloom"
    if similarity == "bloom":
        fuzzy = [cll.CustomLevel(f"{_dice(bloom)} >= {DICE_HIGH}", label_for_charts=f"Dice >= {DICE_HIGH}"),
                 cll.CustomLevel(f"{_dice(bloom)} >= {DICE_LOW}", label_for_charts=f"Dice >= {DICE_LOW}")]
    else:
        fuzzy = [cll.JaroWinklerLevel(f"{name}_clear", JARO_WINKLER_HIGH),
                 cll.JaroWinklerLevel(f"{name}_clear", JARO_WINKLER_LOW)]
    return cl.CustomComparison(
        output_column_name=name,
        comparison_levels=[
            cll.NullLevel(token),
            cll.ExactMatchLevel(token, term_frequency_adjustments=True),
            cll.CustomLevel(f"{phonetic}_l = {phonetic}_r", label_for_charts="phonetic code equal"),
            *fuzzy,
            cll.ElseLevel(),
        ],
    )


def date_of_birth_comparison() -> cl.CustomComparison:
    parts = " + ".join(f"coalesce(CAST({p}_l = {p}_r AS INTEGER), 0)"
                       for p in ("dob_year_token", "dob_month_token", "dob_day_token"))
    return cl.CustomComparison(
        output_column_name="date_of_birth",
        comparison_levels=[
            cll.NullLevel("date_of_birth_token"),
            cll.ExactMatchLevel("date_of_birth_token"),
            cll.CustomLevel("dob_unordered_token_l = dob_unordered_token_r",
                            label_for_charts="day and month swapped"),
            cll.CustomLevel(f"({parts}) >= 2", label_for_charts="2 of 3 parts equal"),
            cll.ElseLevel(),
        ],
    )


def postcode_comparison() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="postcode",
        comparison_levels=[
            cll.NullLevel("postcode_token"),
            cll.ExactMatchLevel("postcode_token"),
            cll.CustomLevel("postcode_sector_token_l = postcode_sector_token_r", label_for_charts="same sector"),
            cll.CustomLevel("postcode_district_token_l = postcode_district_token_r", label_for_charts="same district"),
            cll.ElseLevel(),
        ],
    )


# EM estimates m from at most this many blocked pairs per training rule: Splink samples records
# on both sides by a hash, so matches and non-matches keep their proportion. Up to ~200k identity
# records the date-of-birth block is smaller and nothing is sampled; at 1M people it holds
# ~20M pairs, which took most of the training time (docs/benchmarks.md).
EM_MAX_PAIRS = 5_000_000
# Below this many records the cap is not passed at all: Splink probes for a sample first and,
# on small inputs, logs that the probe found no pairs (harmless, but it reads like a fault).
EM_SAMPLE_FROM_RECORDS = 200_000

# Every rule pairs a date, place or name key with a second key, so the people sharing a key
# stay few as the population grows and comparisons grow close to linearly (docs/linkage.md:
# 1.98M at 1M people, 13x the 149k at 100k). Rules on names alone, or date of birth + sex,
# grew with the square of the population (40M at 1M) and the 1M run scored no better with them.
# Names alone are still a block for records that carry nothing else to block on: no date of
# birth and no postcode (one rule per side; Splink scores each pair once, l before r).
_SAME_NAMES = ("l.given_name_phonetic_token = r.given_name_phonetic_token"
               " AND l.family_name_phonetic_token = r.family_name_phonetic_token")
BLOCKING_RULES = [
    block_on("nhs_number_token"),
    block_on("date_of_birth_token", "given_name_phonetic_token"),
    block_on("date_of_birth_token", "family_name_phonetic_token"),
    block_on("date_of_birth_token", "postcode_district_token"),
    block_on("given_name_phonetic_token", "family_name_phonetic_token", "postcode_district_token"),
    block_on("given_name_phonetic_token", "family_name_phonetic_token", "dob_year_token"),
    block_on("family_name_token", "dob_year_token", "postcode_district_token"),
    block_on("postcode_token", "given_name_phonetic_token"),
    block_on("dob_unordered_token", "family_name_phonetic_token"),
    block_on("given_name_phonetic_token", "family_name_phonetic_token", "dob_month_token", "dob_day_token"),
    CustomRule(_SAME_NAMES + " AND l.date_of_birth_token IS NULL AND l.postcode_token IS NULL"),
    CustomRule(_SAME_NAMES + " AND r.date_of_birth_token IS NULL AND r.postcode_token IS NULL"),
]


def splink_settings(prior: float = 1e-4, name_similarity: str = "bloom") -> SettingsCreator:
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.ExactMatch("nhs_number_token").configure(term_frequency_adjustments=True),
            name_comparison("given_name", name_similarity),
            name_comparison("family_name", name_similarity),
            date_of_birth_comparison(),
            postcode_comparison(),
            cl.ExactMatch("sex"),
        ],
        blocking_rules_to_generate_predictions=BLOCKING_RULES,
        probability_two_random_records_match=prior,
        additional_columns_to_retain=["partner_id"],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


@dataclass(frozen=True)
class TrainedModel:
    trained_at: dt.datetime
    training_records: int
    prior_method: str
    splink_settings: dict[str, Any]

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MODEL_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({
            "trained_at": self.trained_at.isoformat(timespec="seconds"),
            "training_records": self.training_records,
            "prior_method": self.prior_method,
            "splink_settings": self.splink_settings,
        }, indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: Path) -> "TrainedModel | None":
        path = folder / MODEL_FILE
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        return cls(dt.datetime.fromisoformat(saved["trained_at"]), saved["training_records"],
                   saved["prior_method"], saved["splink_settings"])


def _linker(records: pa.Table, settings: SettingsCreator | dict, temp_dir: Path | None,
            memory_limit: str = "", token_ids: bool = True) -> tuple[Linker, duckdb.DuckDBPyConnection]:
    """A Linker on Splink's scratch database, whose copy of the settings reads the Bloom filters
    as 64-bit words (:func:`dice_on_words`; a trained model is saved as defined, :func:`train`)."""
    if isinstance(settings, SettingsCreator):
        settings = settings.create_settings_dict("duckdb")
    db_api, con, counts = _duckdb_records(records, temp_dir, memory_limit, token_ids, words=True)
    if counts:
        settings = dice_on_words(settings, counts)
    return Linker(db_api.register("person_records"), settings, log_level=logging.WARNING), con


def blocked_comparisons(records: pa.Table, temp_dir: Path | None = None) -> list[tuple[str, int]]:
    """Pairs each blocking rule adds (beyond the rules before it), counted exactly."""
    db_api, con, _ = _duckdb_records(records, temp_dir)
    try:
        counts = count_comparisons_from_blocking_rules(
            db_api.register("person_records"), blocking_rules=BLOCKING_RULES, link_type="dedupe_only",
            record_sample_proportion=1.0)
        return [(c["blocking_rule"], int(c["marginal_comparison_count"])) for c in counts]
    finally:
        con.close()


def token_id(column: str) -> str:
    """SQL: a token's 64-bit id in Splink's scratch table (DuckDB's ``hash``; NULL stays NULL)."""
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE hash({column}) END"


def _token_id_columns(con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema) -> list[str]:
    """The token columns that can be compared as 64-bit ids: those where no two different
    tokens share an id (a column where two would keeps its tokens, with a warning)."""
    tokens = [f.name for f in schema if f.name.endswith("_token")
              and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_string_view(f.type))]
    if not tokens:
        return []
    counts = con.execute("SELECT " + ", ".join(
        f"count(DISTINCT {c}), count(DISTINCT {token_id(c)})" for c in tokens) + f" FROM {table}").fetchone()
    exact = []
    for i, column in enumerate(tokens):
        if counts[2 * i] == counts[2 * i + 1]:
            exact.append(column)
        else:
            log.warning("linkage compares %s as text: two of its %d distinct tokens share a 64-bit id "
                        "(the same pairs and weights, scored more slowly; nothing to do)", column, counts[2 * i])
    return exact


def _duckdb_records(records: pa.Table, temp_dir: Path | None, memory_limit: str = "", token_ids: bool = True,
                    words: bool = False) -> tuple[DuckDBAPI, duckdb.DuckDBPyConnection, dict[str, int]]:
    """Splink's scratch database, in memory, spilling to ``temp_dir`` beyond ``memory_limit``
    (Settings.duckdb_memory_limit; empty: DuckDB's default).

    With ``token_ids``, each token column holds a 64-bit id of the token (:func:`token_id`)
    instead of its 32 hex characters. A token is a keyed hash: equality is all that can be
    compared on it (exact-match levels, blocking, term frequencies), and equal ids are equal
    tokens (checked per column, :func:`_token_id_columns`). Scored pairs are narrower and
    compared as integers: at 1M people prediction took 33 s instead of 49 s, with the same
    pairs and match weights (docs/benchmarks.md). The clear-text reference in the benchmark
    passes ``token_ids=False``: it is bare Splink on the values as written.

    With ``words``, each Bloom filter of one length throughout is also held as 64-bit words
    (:func:`bloom_words`); the third value returned is the number of words of each such column.
    """
    con = duckdb.connect()
    if temp_dir is not None:
        con.execute("SET temp_directory = ?", [str(temp_dir)])
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])
    # BIT travels through Arrow as binary; cast back so Dice is a bit_count on BIT.
    bloom = bloom_columns(records)
    counts: dict[str, int] = {}
    for column in bloom if words else ():
        cut = bloom_words(records.column(column))
        if cut is not None:
            counts[column] = len(cut)
            for i, word in enumerate(cut):
                records = records.append_column(f"{column}{WORD}{i}", word)
    con.register("person_records_arrow", records)
    replaced = [f"CAST({c} AS BIT) AS {c}" for c in bloom]
    if token_ids:
        replaced += [f"{token_id(c)} AS {c}" for c in _token_id_columns(con, "person_records_arrow", records.schema)]
    replace = f" REPLACE ({', '.join(replaced)})" if replaced else ""
    bits = f", {bloom_bit_counts(bloom)}" if bloom else ""
    con.execute(f"CREATE TABLE person_records AS SELECT *{replace}{bits} FROM person_records_arrow")
    con.unregister("person_records_arrow")
    return DuckDBAPI(connection=con), con, counts


@stage("linkage: train")
def train(records: pa.Table, temp_dir: Path | None = None, seed: int = 42,
          name_similarity: str = "bloom", memory_limit: str = "", token_ids: bool = True,
          trained_at: dt.datetime | None = None) -> TrainedModel:
    """Estimate the prior, u by random sampling and m by EM on two blocking passes
    (each on at most :data:`EM_MAX_PAIRS` blocked pairs). ``trained_at`` is the hub's clock
    (default: the calendar)."""
    count = records.num_rows
    defined = splink_settings(name_similarity=name_similarity)
    linker, _ = _linker(records, defined, temp_dir, memory_limit, token_ids)
    try:
        linker.training.estimate_probability_two_random_records_match(
            [block_on("nhs_number_token"),
             block_on("given_name_token", "family_name_token", "date_of_birth_token")], recall=0.8)
        prior_method = "deterministic rules (NHS-number token; names + date of birth), recall 0.8"
    except (ValueError, ZeroDivisionError, ArithmeticError) as exc:
        # Splink can fail with a math domain error on some inputs; fall back to the
        # expected overlap: about half the identity records have a partner record.
        prior = min(0.5, 0.5 * count / max(1, count * (count - 1) / 2))
        defined = splink_settings(prior, name_similarity)
        linker, _ = _linker(records, defined, temp_dir, memory_limit, token_ids)
        prior_method = f"expected overlap (estimation failed: {type(exc).__name__})"
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=seed)
    cap = {"max_pairs": EM_MAX_PAIRS} if count >= EM_SAMPLE_FROM_RECORDS else {}
    for rule in (block_on("date_of_birth_token"), block_on("postcode_token", "family_name_token")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule, **cap)
    settings = _as_defined(linker.misc.save_model_to_json(), defined.create_settings_dict("duckdb"))
    return TrainedModel(trained_at or dt.datetime.now(dt.UTC), count, prior_method, settings)


def _as_defined(trained: dict[str, Any], defined: dict[str, Any]) -> dict[str, Any]:
    """The trained model with each level's SQL as defined, not as the scratch table's words
    rewrote it: the saved model stays readable, and scores on any backend."""
    for comparison, as_defined in zip(trained["comparisons"], defined["comparisons"], strict=True):
        for level, level_defined in zip(comparison["comparison_levels"], as_defined["comparison_levels"],
                                        strict=True):
            level["sql_condition"] = level_defined["sql_condition"]
    return trained


@dataclass(frozen=True)
class Prediction:
    """One scoring run: the clusters and what a reviewer needs to judge them."""

    clusters: pa.Table  # unique_id, cluster_id
    scored_pairs: int
    links_above_threshold: int
    match_weights_chart: dict[str, Any]  # Splink's Vega-Lite spec of the model's match weights
    backend: str  # "duckdb" or "spark": where the pairs were scored and clustered
    # unique_id_l, unique_id_r, match_probability of every scored pair; only if asked for.
    pairs: pa.Table | None = None


# Scoring keeps the pairs at or above this probability, or at or above the threshold if that
# is lower: pairs below the threshold join no cluster.
KEEP_PAIRS_FROM = 0.5


@contextmanager
def _scoring_linker(records: pa.Table, model: TrainedModel, temp_dir: Path | None,
                    spark: "SparkSession | None", memory_limit: str = "", token_ids: bool = True) -> Iterator[Linker]:
    if spark is None:
        linker, con = _linker(records, model.splink_settings, temp_dir, memory_limit, token_ids)
        try:
            yield linker
        finally:
            con.close()
        return
    from splink import SparkAPI

    from pipelines.linkage.spark import bloom_as_words, spark_model_settings

    settings = spark_model_settings(model.splink_settings, set(bloom_columns(records)))
    views_before = {t.name for t in spark.catalog.listTables() if t.isTemporary}
    linker = Linker(SparkAPI(spark_session=spark).register(bloom_as_words(records), table_name="person_records"),
                    settings, log_level=logging.WARNING)
    try:
        yield linker
    finally:
        # Splink leaves its temp views behind; in a reused session they would outlive the
        # run, pointing at checkpoint files that are deleted with it.
        for view in spark.catalog.listTables():
            if view.isTemporary and view.name not in views_before:
                spark.catalog.dropTempView(view.name)


def match_weights_chart(model: TrainedModel, records: pa.Table) -> dict[str, Any]:
    """Splink's Vega-Lite chart of the saved model's match weights, its SQL as saved.

    Drawn from the model alone (no rows are read), so it is the same whichever backend scored.
    """
    linker, con = _linker(records.slice(0, 0), model.splink_settings, None)
    try:
        return linker.visualisations.match_weights_chart().chart_dict
    finally:
        con.close()


def predict_clusters(records: pa.Table, model: TrainedModel, threshold: float,
                     temp_dir: Path | None = None, spark: "SparkSession | None" = None,
                     keep_pairs: bool = False, memory_limit: str = "", token_ids: bool = True) -> Prediction:
    """Score blocked pairs and cluster at ``threshold`` (connected components of the
    pairs at or above it).

    On DuckDB unless a Spark session is given; both score the same saved model and give the
    same clusters. ``keep_pairs`` returns the scored pairs too (the largest table of a run);
    ``token_ids=False`` compares the token columns as text (:func:`_duckdb_records`).
    """
    with _scoring_linker(records, model, temp_dir, spark, memory_limit, token_ids) as linker:
        with stage("linkage: predict"):
            predictions = linker.inference.predict(threshold_match_probability=min(KEEP_PAIRS_FROM, threshold))
        with stage("linkage: cluster"):
            clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
                predictions, threshold_match_probability=threshold)
            table = clusters.query_sql("SELECT unique_id, cluster_id FROM {this}").as_pyarrow_table()
        counts = predictions.query_sql(
            f"SELECT coalesce(sum(CASE WHEN match_probability >= {float(threshold)!r} THEN 1 ELSE 0 END), 0) "
            "AS links, count(*) AS scored FROM {this}").as_record_list()[0]
        pairs = (predictions.query_sql("SELECT unique_id_l, unique_id_r, match_probability FROM {this}")
                 .as_pyarrow_table() if keep_pairs else None)
    return Prediction(table, int(counts["scored"]), int(counts["links"]), match_weights_chart(model, records),
                      "duckdb" if spark is None else "spark", pairs)
