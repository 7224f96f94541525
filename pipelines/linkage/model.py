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
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
from splink.blocking_analysis import count_comparisons_from_blocking_rules
from splink.internals.constants import LEVEL_NOT_OBSERVED_TEXT
from splink.internals.exceptions import EMTrainingException
from sqlglot import exp

from pipelines.core.clock import Clock
from pipelines.core.stages import stage
from pipelines.linkage.bloom_sql import bit_count_argument, bloom_bit_counts, bloom_columns
from pipelines.linkage.comparisons import (  # noqa: F401
    BLOOM_BITS,
    DATE_PAIRS_BUDGET,
    DICE_HIGH,
    DICE_LOW,
    JARO_WINKLER_HIGH,
    JARO_WINKLER_LOW,
    MODEL_COLUMNS,
    NAME_PARTS,
    blocking_rules,
    comparisons,
    date_of_birth_comparison,
    name_comparison,
    postcode_comparison,
)
from pipelines.linkage.person_records import IDENTITY_KEY
from pipelines.linkage.placeholders import find_placeholders, mask_placeholders
from pipelines.linkage.threshold import SCORED_FROM_WEIGHT, needs_every_pair, probability
from pipelines.linkage.threshold import calibrate as calibrate_threshold

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

MODEL_FILE = "linkage_model.json"


# On DuckDB (training and scoring), each Bloom filter is also cut into 64-bit words, columns
# ``<bloom>_w0``, ``_w1``...: the popcount of ``a & b`` is then a sum of popcounts of integers,
# where on ``BIT`` each pair allocates the AND of two bit strings. The saved model keeps
# ``bit_count(a & b)``; only the connection's copy is rewritten (:func:`dice_on_words`).
WORD = "_w"


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
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)[
        array.offset : array.offset + len(array) + 1
    ]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(valid)
    lengths = np.diff(offsets)[rows]
    if lengths.min() != lengths.max() or lengths[0] == 0:
        return None
    size = int(lengths[0])
    padded = np.zeros((len(array), -(-size // 8) * 8), dtype=np.uint8)
    start, end = int(offsets[0]), int(offsets[-1])
    if end - start == len(rows) * size:
        # The filters lie back to back (a null holds no bytes, as Arrow writes them): a view of
        # the buffer as one row per filter. Gathering byte by byte built an index of 8 bytes per
        # byte of filter (280 MB per column at 1M people, 2.8 GB at 10M) and took ten times longer.
        padded[rows, :size] = data[start:end].reshape(len(rows), size)
    else:
        padded[rows, :size] = data[offsets[:-1][rows, None] + np.arange(size)]
    words = padded.view(np.int64)
    return [pa.array(words[:, i], mask=~valid) for i in range(words.shape[1])]


def dice_on_words(settings: dict[str, Any], words: dict[str, int]) -> dict[str, Any]:
    """A copy of a saved model whose ``bit_count(<bloom>_l & <bloom>_r)`` (a level) and
    ``bit_count(l.<bloom> & r.<bloom>)`` (a blocking rule) read the filters' 64-bit words
    (``words``: the number of words of each Bloom column). Other SQL is untouched.

    The blocking rule matters most: *same date of birth and full-name Dice ≥ 0.7* computes the
    Dice of every pair of records born on the same day, whose number grows with the square of the
    place (224M pairs at 3M people; on ``BIT`` about 600 ns each, 135 s, issue 24)."""

    def words_of(left: exp.Expression, right: exp.Expression) -> tuple[str, str, str] | None:
        """(bloom, left word template, right word template) of ``left & right``, else None."""
        if not (isinstance(left, exp.Column) and isinstance(right, exp.Column)):
            return None
        if left.table or right.table:  # a blocking rule: l.<bloom> & r.<bloom>
            bloom = left.name
            if (left.table, right.table) != ("l", "r") or right.name != bloom:
                return None
            return bloom, f"l.{bloom}{WORD}{{i}}", f"r.{bloom}{WORD}{{i}}"
        bloom = left.name.removesuffix("_l")
        if left.name != f"{bloom}_l" or right.name != f"{bloom}_r":
            return None
        return bloom, f"{bloom}{WORD}{{i}}_l", f"{bloom}{WORD}{{i}}_r"

    def rewrite(node: exp.Expression) -> exp.Expression:
        argument = bit_count_argument(node)
        if not isinstance(argument, exp.BitwiseAnd):
            return node
        found = words_of(argument.this, argument.expression)
        if found is None or found[0] not in words:
            return node
        bloom, left, right = found
        summed = " + ".join(
            f"CAST(bit_count({left.format(i=i)} & {right.format(i=i)}) AS BIGINT)"
            for i in range(words[bloom])
        )
        return sqlglot.parse_one(f"({summed})", read="duckdb")

    def rewritten_sql(sql: str) -> str:
        if "bit_count" not in sql.lower():
            return sql
        return sqlglot.parse_one(sql, read="duckdb").transform(rewrite).sql("duckdb")

    rewritten = copy.deepcopy(settings)
    for comparison in rewritten["comparisons"]:
        for level in comparison["comparison_levels"]:
            level["sql_condition"] = rewritten_sql(level["sql_condition"])
    for rule in rewritten.get("blocking_rules_to_generate_predictions", []):
        if isinstance(rule, dict) and rule.get("sql_dialect", "duckdb") == "duckdb":
            rule["blocking_rule"] = rewritten_sql(rule["blocking_rule"])
    return rewritten


def filtered_blocks_first(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of a model whose blocking rules on a Bloom filter's Dice (``bit_count``: the
    full-name block) come first; the pairs blocked are the same, in any order.

    Splink gives each rule ``AND NOT (every earlier rule)``, so a rule late in the list has every
    candidate pair of its equi-join tested against all the rules before it. The full-name block's
    join is every pair born on the same day (224M at 3M people), and DuckDB tested the eleven
    earlier rules on each of them before its Dice: 245 s at 3M against 58 s without them. First in
    the list it has no earlier rule to test, and the later rules test its Dice only on their own
    candidates (a few million at most)."""
    rules = settings.get("blocking_rules_to_generate_predictions") or []

    def filtered(rule: Any) -> bool:
        return (
            "bit_count" in (rule["blocking_rule"] if isinstance(rule, dict) else str(rule)).lower()
        )

    ordered = [r for r in rules if filtered(r)] + [r for r in rules if not filtered(r)]
    if ordered == rules:
        return settings
    return {**settings, "blocking_rules_to_generate_predictions": ordered}


# EM estimates m from at most this many blocked pairs per training rule: Splink samples records
# on both sides by a hash, so matches and non-matches keep their proportion. Up to ~200k identity
# records the date-of-birth block is smaller and nothing is sampled; at 1M people it holds
# ~20M pairs, which took most of the training time (docs/benchmarks.md).
EM_MAX_PAIRS = 5_000_000
# Below this many records the cap is not passed at all: Splink probes for a sample first and,
# on small inputs, logs that the probe found no pairs (harmless, but it reads like a fault).
EM_SAMPLE_FROM_RECORDS = 200_000
# A training rule is used only if it pairs at least this many records: EM needs a few hundred
# to a few thousand pairs to separate matches from non-matches (Splink's own advice).
EM_MIN_PAIRS = 500
# A comparison no rule can train with EM_MIN_PAIRS is trained, with a warning, on the first rule
# that pairs at least this many: a few dozen pairs give a rough m, where none would leave the
# comparison weighing nothing (a small place, or one partner whose exact duplicates are already one
# identity record, so that the full-name rule pairs only a few hundred; found on FEBRL3).
EM_FEW_PAIRS = 50
# Random pairs for u. Splink stops early once every level has been seen 100 times; a level
# rarer than that (names transposed, about one pair in a million) is given u = 1 / U_PAIRS.
U_PAIRS = 2_000_000

# Training rules in order of preference; each trains every comparison that reads none of its
# columns. Date of birth first (pairs sharing it are the same person or strangers who agree on
# little else); then the full name, the NHS number, and place + name for data without dates.
# Postcode + family name pairs are mostly members of one household, so EM fitted on them alone
# learns "same household" rather than "same person": it comes after the person-level keys.
EM_TRAINING_RULES: tuple[tuple[str, ...], ...] = (
    ("date_of_birth_token",),
    (
        "given_name_token",
        "family_name_token",
        "given_name_first_part_token",
        "family_name_first_part_token",
    ),
    ("given_name_token", "family_name_token"),
    # The full name as it sounds: trains the date of birth where the exact full name cannot (a
    # partner's own duplicates that agree on the exact name never agree on the date: see
    # :func:`hides_agreement`).
    ("given_name_phonetic_token", "family_name_phonetic_token"),
    ("nhs_number_token",),
    ("postcode_token", "family_name_token"),
    ("postcode_token", "given_name_token"),
    ("family_name_token", "dob_year_token"),
    ("uprn_token",),
    ("postcode_token",),
)
# Deterministic rules for the prior (probability that two random records match), first that
# the data can evaluate: Splink counts the pairs they find and assumes they find 80% of matches.
PRIOR_RULES: tuple[tuple[str, ...], ...] = (
    ("nhs_number_token",),
    ("given_name_token", "family_name_token", "date_of_birth_token"),
    ("given_name_token", "family_name_token", "postcode_token"),
)


def splink_settings(
    prior: float = 1e-4,
    name_similarity: str = "bloom",
    have: frozenset[str] | set[str] | None = None,
    comparisons_for: Callable[[frozenset[str]], list] | None = None,
    crowded_dates: bool = False,
) -> SettingsCreator:
    """The model for the columns in ``have`` (default: every column the model can read).

    ``comparisons_for`` replaces the hub's comparisons (the benchmark's clear-text reference
    model: :mod:`pipelines.tooling.bench.linkage_profiles`); blocking stays the same.
    ``crowded_dates``: see :func:`blocking_rules`."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=(
            comparisons(have, name_similarity)
            if comparisons_for is None
            else comparisons_for(frozenset(have or MODEL_COLUMNS))
        ),
        blocking_rules_to_generate_predictions=blocking_rules(have, crowded_dates),
        probability_two_random_records_match=prior,
        additional_columns_to_retain=["partner_id"],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def pairs_sharing_a_date(records: pa.Table) -> int:
    """How many pairs of records share a date of birth: the candidates of a block on the date
    alone (:data:`pipelines.linkage.comparisons.DATE_PAIRS_BUDGET`)."""
    if "date_of_birth_token" not in records.column_names:
        return 0
    counts = pc.value_counts(records.column("date_of_birth_token").drop_null())
    sizes = counts.field("counts").to_numpy().astype("int64")
    return int((sizes * (sizes - 1) // 2).sum())


# Kept for readers of the rules as a list (tests, the benchmark): every column present.
BLOCKING_RULES = blocking_rules()


@dataclass(frozen=True)
class TrainedModel:
    trained_at: dt.datetime
    training_records: int
    prior_method: str
    splink_settings: dict[str, Any]
    # What training did, for the QA report: the EM rules the data supported, and what could
    # not be estimated (comparison and level labels only).
    training_rules: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Models trained before placeholder detection score values as they are, so a hub keeps its
    # person keys until it retrains; newer models treat placeholder values as missing.
    masks_placeholders: bool = True
    # The match threshold calibrated on the first run's scores (None until then; models saved
    # before calibration have none and use the configured or default threshold).
    threshold: float | None = None
    threshold_method: str = ""

    def with_threshold(self, threshold: float, method: str) -> TrainedModel:
        return dataclasses.replace(self, threshold=threshold, threshold_method=method)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MODEL_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(
            json.dumps(
                {
                    "trained_at": self.trained_at.isoformat(timespec="seconds"),
                    "training_records": self.training_records,
                    "prior_method": self.prior_method,
                    "training_rules": self.training_rules,
                    "training_warnings": self.warnings,
                    "placeholder_values": "treated as missing"
                    if self.masks_placeholders
                    else "compared as values",
                    "match_threshold": self.threshold,
                    "match_threshold_method": self.threshold_method,
                    "splink_settings": self.splink_settings,
                },
                indent=2,
            )
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, folder: Path) -> TrainedModel | None:
        path = folder / MODEL_FILE
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        return cls(
            dt.datetime.fromisoformat(saved["trained_at"]),
            saved["training_records"],
            saved["prior_method"],
            saved["splink_settings"],
            saved.get("training_rules", []),
            saved.get("training_warnings", []),
            saved.get("placeholder_values") == "treated as missing",
            saved.get("match_threshold"),
            saved.get("match_threshold_method", ""),
        )


def _linker(
    records: pa.Table,
    settings: SettingsCreator | dict,
    temp_dir: Path | None,
    memory_limit: str = "",
    token_ids: bool = True,
    validate: bool = True,
) -> tuple[Linker, duckdb.DuckDBPyConnection]:
    """A Linker on Splink's scratch database, whose copy of the settings reads the Bloom filters
    as 64-bit words (:func:`dice_on_words`; a trained model is saved as defined, :func:`train`).

    ``validate=False`` skips Splink's check of the settings' columns against the records, which
    only logs and parses every level's SQL (about a second a run, issue 24): scoring and the
    chart read a saved model, whose columns were checked when it was trained on them."""
    if isinstance(settings, SettingsCreator):
        settings = settings.create_settings_dict("duckdb")
    db_api, con, counts = _duckdb_records(records, temp_dir, memory_limit, token_ids, words=True)
    if counts:
        settings = dice_on_words(settings, counts)
    settings = filtered_blocks_first(settings)
    linker = Linker(
        db_api.register("person_records"),
        settings,
        log_level=logging.WARNING,
        validate_settings=validate,
    )
    return linker, con


def blocked_comparisons(
    records: pa.Table, temp_dir: Path | None = None, crowded_dates: bool = False
) -> list[tuple[str, int]]:
    """Pairs each blocking rule adds (beyond the rules before it), counted exactly."""
    db_api, con, _ = _duckdb_records(records, temp_dir)
    try:
        counts = count_comparisons_from_blocking_rules(
            db_api.register("person_records"),
            blocking_rules=blocking_rules(present_columns(records), crowded_dates),
            link_type="dedupe_only",
            record_sample_proportion=1.0,
        )
        return [(c["blocking_rule"], int(c["marginal_comparison_count"])) for c in counts]
    finally:
        con.close()


def token_id(column: str) -> str:
    """SQL: a token's 64-bit id in Splink's scratch table (DuckDB's ``hash``; NULL stays NULL)."""
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE hash({column}) END"


def _token_id_columns(con: duckdb.DuckDBPyConnection, table: str, schema: pa.Schema) -> list[str]:
    """The token columns that can be compared as 64-bit ids: those where no two different
    tokens share an id (a column where two would keeps its tokens, with a warning)."""
    tokens = [
        f.name
        for f in schema
        if f.name.endswith("_token")
        and (
            pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_string_view(f.type)
        )
    ]
    if not tokens:
        return []
    # Per column, the ids held by two different tokens: one grouping by id, not two distinct
    # counts (tokens and ids) compared, which took about twice as long at 1M people.
    shared = con.execute(
        "SELECT "
        + ", ".join(
            f"(SELECT count(*) FROM (SELECT {token_id(c)} FROM {table} WHERE {c} IS NOT NULL "
            f"GROUP BY 1 HAVING min({c}) <> max({c})))"
            for c in tokens
        )
    ).fetchall()[0]
    exact = []
    for column, clashes in zip(tokens, shared, strict=True):
        if not clashes:
            exact.append(column)
        else:
            log.warning(
                "linkage compares %s as text: two of its %d distinct tokens share a 64-bit id "
                "(the same pairs and weights, scored more slowly; nothing to do)",
                column,
                con.execute(f"SELECT count(DISTINCT {column}) FROM {table}").fetchall()[0][0],
            )
    return exact


def _duckdb_records(
    records: pa.Table,
    temp_dir: Path | None,
    memory_limit: str = "",
    token_ids: bool = True,
    words: bool = False,
) -> tuple[DuckDBAPI, duckdb.DuckDBPyConnection, dict[str, int]]:
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
        replaced += [
            f"{token_id(c)} AS {c}"
            for c in _token_id_columns(con, "person_records_arrow", records.schema)
        ]
    replace = f" REPLACE ({', '.join(replaced)})" if replaced else ""
    bits = f", {bloom_bit_counts(bloom)}" if bloom else ""
    con.execute(f"CREATE TABLE person_records AS SELECT *{replace}{bits} FROM person_records_arrow")
    con.unregister("person_records_arrow")
    return DuckDBAPI(connection=con), con, counts


def present_columns(records: pa.Table) -> frozenset[str]:
    """The model's columns that hold a value in some record: the fields the data has.

    A column a contract does not list, or that every partner leaves empty, is absent; the model
    is then built without it (:mod:`pipelines.linkage.comparisons`)."""
    columns = [c for c in records.column_names if c in MODEL_COLUMNS]
    return frozenset(c for c in columns if records.column(c).null_count < records.num_rows)


def _pairs_sharing(con: duckdb.DuckDBPyConnection, columns: tuple[str, ...]) -> int:
    """How many pairs of records agree on every one of ``columns`` (all present)."""
    keys = ", ".join(columns)
    present = " AND ".join(f"{c} IS NOT NULL" for c in columns)
    return int(
        con.execute(f"""
        SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (
            SELECT count(*) AS n FROM person_records WHERE {present} GROUP BY {keys})
    """).fetchall()[0][0]
    )


def _comparison_columns(settings: dict[str, Any], have: frozenset[str]) -> dict[str, set[str]]:
    """Each comparison's output name and the model columns its levels read."""
    return {
        c["output_column_name"]: {
            column
            for column in have
            for level in c["comparison_levels"]
            if f"{column}_l" in level["sql_condition"]
        }
        for c in settings["comparisons"]
    }


# One person's records of one partner rarely differ in sex alone: the pairs that agree on every
# other identity field were merged all the same (see :func:`hides_agreement`).
RARELY_DIFFERS = frozenset({"sex"})


def hides_agreement(rule: tuple[str, ...], reads: set[str], have: frozenset[str]) -> bool:
    """Whether EM on ``rule`` would never see a comparison reading ``reads`` agree among one
    partner's pairs.

    The hub links identity records: one partner's records that agree on every identity field
    (:data:`pipelines.linkage.person_records.IDENTITY_KEY`) are already one record. Two of one
    partner's identity records that agree on the rule's columns therefore cannot also agree on
    the rest of the key: with names and a date of birth only, the pairs sharing an exact full
    name are never the same date of birth. Trained there, the exact date's m is estimated as 0
    (Splink: "not observed") and the strongest evidence of the model weighs nothing (FEBRL3:
    a partner whose file holds its own duplicates; issue 17). A key field that one person's
    records rarely differ in (:data:`RARELY_DIFFERS`) does not make the agreement observable."""
    key = (set(IDENTITY_KEY) & have) - RARELY_DIFFERS
    return bool(key) and key <= set(rule) | reads


def _agreement_hidden(
    con: duckdb.DuckDBPyConnection,
    rule: tuple[str, ...],
    reads: set[str],
    have: frozenset[str],
    few_pairs: int,
) -> bool:
    """:func:`hides_agreement`, and the records bear it out: fewer than ``few_pairs`` pairs agree
    on the rule and on the identity fields the comparison reads. Records that were not merged
    (the benchmark's clear-text reference links every record) keep the rule."""
    if not hides_agreement(rule, reads, have):
        return False
    return _pairs_sharing(con, (*rule, *sorted(reads & set(IDENTITY_KEY)))) < few_pairs


def training_rules(
    con: duckdb.DuckDBPyConnection,
    settings: dict[str, Any],
    have: frozenset[str],
    min_pairs: int = EM_MIN_PAIRS,
    few_pairs: int = EM_FEW_PAIRS,
) -> tuple[list[tuple[str, ...]], list[str], list[str]]:
    """The EM training rules for these records, the comparisons no rule can train, and a warning
    for each rule taken on fewer than ``min_pairs`` pairs.

    Rules are taken in :data:`EM_TRAINING_RULES` order when every column is present, they pair
    at least ``min_pairs`` records and they train a comparison no chosen rule trains yet (a rule
    trains the comparisons that read none of its columns and whose agreement its pairs can show:
    :func:`hides_agreement`), until every comparison is trained.
    Comparisons still untrained then are given the first rule in the same order that pairs at
    least ``few_pairs`` (a rough estimate, said in the warning, rather than none)."""
    reads = _comparison_columns(settings, have)
    untrained = set(reads)
    chosen: list[tuple[str, ...]] = []
    thin: list[str] = []
    for floor in (min_pairs, few_pairs):
        for rule in EM_TRAINING_RULES:
            if not untrained:
                break
            if rule in chosen or not set(rule) <= have:
                continue
            trains = {
                name
                for name in untrained
                if not reads[name] & set(rule)
                and not _agreement_hidden(con, rule, reads[name], have, few_pairs)
            }
            if not trains:
                continue
            pairs = _pairs_sharing(con, rule)
            if pairs >= floor:
                chosen.append(rule)
                untrained -= trains
                if floor < min_pairs:
                    thin.append(
                        f"EM on {' + '.join(rule)} had only {pairs:,} pairs (fewer than "
                        f"{min_pairs:,}): m for {', '.join(sorted(trains))} is a rough estimate"
                    )
    return chosen, sorted(untrained), thin


def _prior_rules(have: frozenset[str]) -> list[tuple[str, ...]]:
    rules = [rule for rule in PRIOR_RULES if set(rule) <= have]
    # One full-name rule is enough; with dates of birth, the one on dates.
    names = [rule for rule in rules if "given_name_token" in rule]
    return [rule for rule in rules if "given_name_token" not in rule] + names[:1]


def _fill_untrained_levels(settings: dict[str, Any], u_pairs: float) -> list[str]:
    """Give each level Splink could not estimate a value that neither invents nor hides
    evidence, and say which (comparison and level labels only, never values):

    - u not seen among ``u_pairs`` random pairs: u = 1 / ``u_pairs`` (at most that rare);
    - m not estimated (no training pair fell in the level, or no rule could train the
      comparison): m = u, a level that weighs nothing either way.
    """
    filled = []
    for comparison in settings["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            label = f"{comparison['output_column_name']}: {level.get('label_for_charts', '')}"
            u, m = level.get("u_probability"), level.get("m_probability")
            if u is None or u == LEVEL_NOT_OBSERVED_TEXT:
                level["u_probability"] = u = 1.0 / u_pairs
                filled.append(f"{label} (u: not seen in {u_pairs:,.0f} random pairs)")
            if m is None or m == LEVEL_NOT_OBSERVED_TEXT:
                level["m_probability"] = u
                filled.append(f"{label} (m: not trained, weighs nothing)")
    return filled


MIN_PROBABILITY = 1e-12


def _clamp_probabilities(settings: dict[str, Any]) -> None:
    # EM can drive a level's m to exactly 0 (no training pair in it), which Splink refuses to load.
    for comparison in settings["comparisons"]:
        for level in comparison["comparison_levels"]:
            for p in ("m_probability", "u_probability"):
                if isinstance(level.get(p), float) and level[p] < MIN_PROBABILITY:
                    level[p] = MIN_PROBABILITY


@stage("linkage: train")
def train(
    records: pa.Table,
    temp_dir: Path | None = None,
    seed: int = 42,
    name_similarity: str = "bloom",
    memory_limit: str = "",
    token_ids: bool = True,
    trained_at: dt.datetime | None = None,
    comparisons_for: Callable[[frozenset[str]], list] | None = None,
) -> TrainedModel:
    """Train a model on ``records`` from the fields they hold: the prior from deterministic
    rules, u by random sampling and m by EM on the training rules the data supports (each on
    at most :data:`EM_MAX_PAIRS` blocked pairs). ``trained_at`` is the hub's clock (default:
    the calendar).

    Placeholder values (:mod:`pipelines.linkage.placeholders`) are treated as missing first.
    Never fails for lack of a field: comparisons, blocking and training rules are chosen from
    the columns present (:func:`present_columns`); a level that cannot be estimated is given a
    neutral value with a warning (:func:`_fill_untrained_levels`), listed in ``warnings``.
    ``trained_at`` is the hub's clock (default: the calendar).
    """
    records = mask_placeholders(records, find_placeholders(records))
    count = records.num_rows
    have = present_columns(records)
    clear = {
        c
        for c in records.column_names
        if c.endswith("_clear") and records.column(c).null_count < records.num_rows
    }
    sharing = pairs_sharing_a_date(records)
    crowded = sharing > DATE_PAIRS_BUDGET
    if crowded:
        log.info(
            "linkage training: %d pairs of records share a date of birth (more than %d), so the "
            "full-name block also asks for the same initial",
            sharing,
            DATE_PAIRS_BUDGET,
        )
    defined = splink_settings(
        name_similarity=name_similarity,
        have=have | clear,
        comparisons_for=comparisons_for,
        crowded_dates=crowded,
    )
    linker, con = _linker(records, defined, temp_dir, memory_limit, token_ids)
    warnings: list[str] = []
    prior_rules = _prior_rules(have)
    try:
        if not prior_rules:
            raise ValueError("no deterministic rule can be evaluated on these fields")
        linker.training.estimate_probability_two_random_records_match(
            [block_on(*rule) for rule in prior_rules], recall=0.8
        )
        if not 0 < linker._settings_obj._probability_two_random_records_match < 1:
            # No pair agrees on any rule (one partner whose identical identities are already
            # one identity record): a prior of 0 would score every pair at log(0).
            raise ValueError("the deterministic rules found no pair")
        prior_method = (
            "deterministic rules ("
            + "; ".join(" + ".join(r) for r in prior_rules)
            + "), recall 0.8"
        )
    except (ValueError, ZeroDivisionError, ArithmeticError) as exc:
        # Splink can fail with a math domain error on some inputs; fall back to the
        # expected overlap: about half the identity records have a partner record.
        prior = min(0.5, 0.5 * count / max(1, count * (count - 1) / 2))
        defined = splink_settings(prior, name_similarity, have | clear, comparisons_for, crowded)
        con.close()
        linker, con = _linker(records, defined, temp_dir, memory_limit, token_ids)
        prior_method = f"expected overlap (estimation failed: {type(exc).__name__})"
    try:
        linker.training.estimate_u_using_random_sampling(max_pairs=U_PAIRS, seed=seed)
        cap = {"max_pairs": EM_MAX_PAIRS} if count >= EM_SAMPLE_FROM_RECORDS else {}
        rules, untrained, thin = training_rules(con, defined.create_settings_dict("duckdb"), have)
        warnings += thin
        for rule in rules:
            # A failed session leaves the linker's settings without the comparisons it set
            # aside: keep a copy to put back.
            before = linker._settings_obj.core_model_settings.copy()
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(
                    block_on(*rule), **cap
                )
            except (EMTrainingException, ValueError, ArithmeticError) as exc:
                linker._settings_obj.core_model_settings = before
                # Splink refuses an m that underflows to 0 (a level no pair reached) and cannot
                # train on a rule whose pairs all agree: this rule's estimates are left out.
                warnings.append(
                    f"EM on {' + '.join(rule)} failed ({type(exc).__name__}); its comparisons keep "
                    "the estimates of the other rules"
                )
        if untrained:
            warnings.append(
                "no training rule has enough pairs to estimate m for: " + ", ".join(untrained)
            )
        trained = linker.misc.save_model_to_json()
    finally:
        con.close()
    settings = _as_defined(trained, defined.create_settings_dict("duckdb"))
    warnings += [f"level not estimated, {w}" for w in _fill_untrained_levels(settings, U_PAIRS)]
    _clamp_probabilities(settings)
    for warning in warnings:
        log.warning("linkage training: %s", warning)
    return TrainedModel(
        trained_at or Clock.from_env().now(),
        count,
        prior_method,
        settings,
        training_rules=[" + ".join(r) for r in rules],
        warnings=warnings,
    )


def _as_defined(trained: dict[str, Any], defined: dict[str, Any]) -> dict[str, Any]:
    """The trained model with each level's SQL and each blocking rule as defined, not as the
    scratch table's words rewrote them: the saved model stays readable, and scores on any
    backend."""
    for comparison, as_defined in zip(trained["comparisons"], defined["comparisons"], strict=True):
        for level, level_defined in zip(
            comparison["comparison_levels"], as_defined["comparison_levels"], strict=True
        ):
            level["sql_condition"] = level_defined["sql_condition"]
    if "blocking_rules_to_generate_predictions" in defined:
        trained["blocking_rules_to_generate_predictions"] = copy.deepcopy(
            defined["blocking_rules_to_generate_predictions"]
        )
    return trained


@dataclass(frozen=True)
class Prediction:
    """One scoring run: the clusters and what a reviewer needs to judge them."""

    clusters: pa.Table  # unique_id, cluster_id
    scored_pairs: int
    links_above_threshold: int
    match_weights_chart: dict[str, Any]  # Splink's Vega-Lite spec of the model's match weights
    backend: str  # "duckdb" or "spark": where the pairs were scored and clustered
    # unique_id_l, unique_id_r, match_probability of every pair scored >= 0.5; only if asked for.
    pairs: pa.Table | None = None
    threshold: float = 0.9  # the match probability the clusters were cut at
    threshold_method: str = "as configured"  # where it came from (calibrated, saved, configured)
    # The placeholder values masked as missing (a model that masks them), for the QA report.
    placeholders: list = field(default_factory=list)


# Scoring keeps the pairs at or above this probability, or at or above the threshold if that
# is lower: pairs below the threshold join no cluster.
KEEP_PAIRS_FROM = 0.5


@contextmanager
def _scoring_linker(
    records: pa.Table,
    model: TrainedModel,
    temp_dir: Path | None,
    spark: SparkSession | None,
    memory_limit: str = "",
    token_ids: bool = True,
) -> Iterator[Linker]:
    scoring = model.splink_settings
    if spark is None:
        linker, con = _linker(records, scoring, temp_dir, memory_limit, token_ids, validate=False)
        try:
            yield linker
        finally:
            con.close()
        return
    from splink import SparkAPI

    from pipelines.linkage.spark import bloom_as_words, spark_model_settings

    settings = spark_model_settings(scoring, set(bloom_columns(records)))
    views_before = {t.name for t in spark.catalog.listTables() if t.isTemporary}
    linker = Linker(
        SparkAPI(spark_session=spark).register(
            bloom_as_words(records), table_name="person_records"
        ),
        settings,
        log_level=logging.WARNING,
    )
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
    linker, con = _linker(records.slice(0, 0), model.splink_settings, None, validate=False)
    try:
        return linker.visualisations.match_weights_chart().chart_dict
    finally:
        con.close()


def _weights(predictions: Any) -> np.ndarray:
    return (
        predictions.query_sql("SELECT match_weight FROM {this}")
        .as_pyarrow_table()
        .column(0)
        .to_numpy()
    )


def predict_clusters(
    records: pa.Table,
    model: TrainedModel,
    threshold: float | None = None,
    temp_dir: Path | None = None,
    spark: SparkSession | None = None,
    keep_pairs: bool = False,
    memory_limit: str = "",
    token_ids: bool = True,
    placeholders: list | None = None,
) -> Prediction:
    """Score blocked pairs and cluster at ``threshold`` (connected components of the
    pairs at or above it).

    ``threshold`` None takes the model's calibrated threshold, or calibrates one on this run's
    scores (:mod:`pipelines.linkage.threshold`; :attr:`Prediction.threshold` says which, so the
    caller can save it with the model). A model trained with placeholder detection treats this
    run's placeholder values as missing (:mod:`pipelines.linkage.placeholders`).
    On DuckDB unless a Spark session is given; both score the same saved model and give the
    same clusters. ``keep_pairs`` returns the scored pairs too (the largest table of a run);
    ``token_ids=False`` compares the token columns as text (:func:`_duckdb_records`).
    ``placeholders``: this run's placeholder values if the caller found them already.
    """
    if placeholders is None:
        placeholders = find_placeholders(records) if model.masks_placeholders else []
    if model.masks_placeholders:
        records = mask_placeholders(records, placeholders)
    if threshold is None and model.threshold is not None:
        threshold, method = model.threshold, model.threshold_method
    else:
        method = "as configured"
    with _scoring_linker(records, model, temp_dir, spark, memory_limit, token_ids) as linker:
        with stage("linkage: predict"):
            # Calibrating reads the weights from just below even odds up (every pair scored
            # again if too few are kept); otherwise only pairs that may link are kept.
            keep_from = (
                probability(SCORED_FROM_WEIGHT)
                if threshold is None
                else min(KEEP_PAIRS_FROM, threshold)
            )
            predictions = linker.inference.predict(threshold_match_probability=keep_from)
            if threshold is None:
                weights = _weights(predictions)
                if needs_every_pair(weights):
                    predictions = linker.inference.predict()
                    weights = _weights(predictions)
        if threshold is None:
            threshold, method = calibrate_threshold(weights)
        with stage("linkage: cluster"):
            clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
                predictions, threshold_match_probability=threshold
            )
            table = clusters.query_sql(
                "SELECT unique_id, cluster_id FROM {this}"
            ).as_pyarrow_table()
        kept = min(KEEP_PAIRS_FROM, float(threshold))
        counts = predictions.query_sql(
            f"SELECT coalesce(sum(CASE WHEN match_probability >= {float(threshold)!r} THEN 1 ELSE 0 END), 0) "
            f"AS links, count(*) FILTER (WHERE match_probability >= {kept!r}) AS scored FROM {{this}}"
        ).as_record_list()[0]
        pairs = (
            predictions.query_sql(
                f"SELECT unique_id_l, unique_id_r, match_probability FROM {{this}} "
                f"WHERE match_probability >= {KEEP_PAIRS_FROM}"
            ).as_pyarrow_table()
            if keep_pairs
            else None
        )
    return Prediction(
        table,
        int(counts["scored"]),
        int(counts["links"]),
        match_weights_chart(model, records),
        "duckdb" if spark is None else "spark",
        pairs,
        threshold,
        method,
        placeholders,
    )
