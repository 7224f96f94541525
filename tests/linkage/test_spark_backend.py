"""Linkage on Spark (local mode, the machine's Java) with the model DuckDB trained: same clusters.

Spark starts once for the module (6-12 s on two shared cores); without Java 17+ the tests
fail with the message that says what to install, they are not skipped.
"""

import hashlib
import math
import subprocess
import sys

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from assets.ingest import landing_specs, received_extracts
from assets.linkage import linked_persons, person_records_asset, plausible_linkage
from assets.resources import PlacelinkResource
from pipelines.core.settings import Settings
from pipelines.governance.audit import AuditLog
from pipelines.linkage.comparisons import BIGRAMS_APART, BIGRAMS_AT_LEAST, MODEL_COLUMNS
from pipelines.linkage.model import MODEL_FILE, TrainedModel, predict_clusters, splink_settings
from pipelines.linkage.spark import (
    SparkUnavailable,
    bloom_as_words,
    require_java,
    spark_condition,
    spark_model_settings,
    spark_session,
)

# The graph of the suite's environment (the repository's agreements), as the code location's.
person_records = person_records_asset(landing_specs(Settings.from_env()))

LINKAGE = [received_extracts, person_records, linked_persons, plausible_linkage]


def person_keys(settings: Settings) -> dict[str, str]:
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    try:
        return dict(con.execute("SELECT identity_id, person_key FROM hub.person_keys").fetchall())
    finally:
        con.close()


def partition(assignment: dict[str, str]) -> set[frozenset[str]]:
    """Which records are together, whatever the clusters are called."""
    groups: dict[str, set[str]] = {}
    for record, cluster in assignment.items():
        groups.setdefault(cluster, set()).add(record)
    return {frozenset(g) for g in groups.values()}


def clusters(table: pa.Table) -> dict[str, str]:
    return dict(zip(table.column("unique_id").to_pylist(), table.column("cluster_id").to_pylist()))


@pytest.fixture(scope="module")
def hub(published_small_hub, tmp_path_factory):
    """A hub that has linked the small place on DuckDB (training the model there): a copy of the
    session's, as one test here links it again on Spark."""
    return published_small_hub.copy(tmp_path_factory.mktemp("spark_hub") / "home")


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    settings = Settings.from_env(
        {
            "PLACELINK_HOME": str(tmp_path_factory.mktemp("spark_home")),
            "PLACELINK_LINKAGE_BACKEND": "spark",
            "PLACELINK_SPARK_MASTER": "local[2]",
        }
    )
    with spark_session(settings) as session:
        yield session


@pytest.fixture(scope="module")
def records(hub) -> pa.Table:
    con = duckdb.connect(str(hub.warehouse), read_only=True)
    try:
        return con.sql("SELECT * FROM hub.person_records ORDER BY unique_id").to_arrow_table()
    finally:
        con.close()


def test_spark_scores_the_saved_model_into_the_same_clusters_as_duckdb(hub, records, spark):
    model_file = hub.models / MODEL_FILE
    saved = hashlib.sha256(model_file.read_bytes()).hexdigest()
    model = TrainedModel.load(hub.models)
    on_duckdb = predict_clusters(records, model, hub.linkage_threshold, keep_pairs=True)
    on_spark = predict_clusters(records, model, hub.linkage_threshold, spark=spark, keep_pairs=True)

    assert (on_duckdb.backend, on_spark.backend) == ("duckdb", "spark")
    assert partition(clusters(on_spark.clusters)) == partition(clusters(on_duckdb.clusters))
    assert (
        sum(len(c) > 1 for c in partition(clusters(on_duckdb.clusters))) > 200
    )  # real linking happened
    duck_pairs, spark_pairs = (
        {(l, r): p for l, r, p in zip(*(t.column(i).to_pylist() for i in range(3)))}
        for t in (on_duckdb.pairs, on_spark.pairs)
    )
    assert spark_pairs.keys() == duck_pairs.keys()
    assert max(abs(spark_pairs[k] - duck_pairs[k]) for k in duck_pairs) < 1e-9
    assert (on_spark.scored_pairs, on_spark.links_above_threshold) == (
        on_duckdb.scored_pairs,
        on_duckdb.links_above_threshold,
    )
    assert on_spark.match_weights_chart == on_duckdb.match_weights_chart
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == saved

    # The pairs compared include names that differ, so the Bloom-filter Dice levels were used.
    con = duckdb.connect()
    con.register("records", records)
    con.register("pairs", on_spark.pairs)
    fuzzy = con.execute("""
        SELECT count(*) FROM pairs p JOIN records l ON l.unique_id = p.unique_id_l
                                     JOIN records r ON r.unique_id = p.unique_id_r
        WHERE l.given_name_token <> r.given_name_token OR l.family_name_token <> r.family_name_token""").fetchall()[
        0
    ][0]
    assert fuzzy > 10


def bloom(*bits: int) -> bytes:
    return sum(1 << b for b in bits).to_bytes(32, "big")


# Bits in every 64-bit word, including each word's sign bit (63, 127, ...), as Spark sees them.
SPREAD = (0, 63, 64, 100, 127, 128, 191, 200, 255, 30)


# Bigrams a filter of ``b`` bits holds, estimated from its popcount as the short-name level does
# (k = 24).
def _held(b: int) -> float:
    return math.log(1 - min(b, 255) / 256) / (24 * math.log(1 - 1 / 256))


# Bigrams in one name only.
def _apart(left: int, right: int, shared: int) -> float:
    return 2 * _held(left + right - shared) - _held(left) - _held(right)


def _one_letter_apart(left: tuple, right: tuple | None, apart: float | None) -> bool | None:
    """The short-name level: at most BIGRAMS_APART apart, both names of two letters or more; in
    SQL's logic (a missing name's conditions are NULL, and NULL AND FALSE is FALSE)."""
    held = [
        _held(len(side)) >= BIGRAMS_AT_LEAST if side is not None else None for side in (left, right)
    ]
    conditions = [None if apart is None else apart <= BIGRAMS_APART, *held]
    return False if False in conditions else None if None in conditions else True


# A short name's filter: 60 bits; the other the same 60 shifted by 36 or 38 (4.3 and 4.6 bigrams
# apart: either side of the short-name level, both below Dice 0.7).
SHORT = tuple(range(100, 160))
# An initial's filter: 46 bits (2.1 bigrams); two initials' filters 3.3 bigrams apart are not at
# the short-name level: a name of one letter is too short for it.
INITIAL = tuple(range(100, 146))
DICE_CASES = [  # (left bits, right bits, Dice, bigrams apart)
    (SPREAD[:5], SPREAD[:5][:4] + (7,), 0.8, _apart(5, 5, 4)),  # 2*4 / (5+5): the upper level
    (SPREAD, SPREAD[:7] + (1, 2, 3), 0.7, _apart(10, 10, 7)),  # 2*7 / (10+10): the lower level
    (SPREAD[:5], SPREAD[:4] + (7, 8), 8 / 11, _apart(5, 6, 4)),  # between the levels
    (SPREAD, SPREAD[:7] + (1, 2, 3, 4), 14 / 21, _apart(10, 11, 7)),  # just below the lower level
    (SPREAD, SPREAD, 1.0, 0.0),
    (SHORT, tuple(b + 36 for b in SHORT), 24 / 60, _apart(60, 60, 24)),
    (SHORT, tuple(b + 38 for b in SHORT), 22 / 60, _apart(60, 60, 22)),
    (INITIAL, tuple(b + 30 for b in INITIAL), 16 / 46, _apart(46, 46, 16)),
    ((), (), None, 0.0),  # two empty filters: no Dice at all, and no name of two letters
    (SPREAD, None, None, None),  # a missing name
]


def _on_spark(spark, pairs: pa.Table, view: str, columns: list[str]) -> list[tuple]:
    """``columns`` (Spark SQL) over ``pairs`` as the temp view ``view``, in ``pair_id`` order."""
    spark.createDataFrame(pairs).createOrReplaceTempView(view)
    try:
        rows = spark.sql(f"SELECT {', '.join(columns)} FROM {view} ORDER BY pair_id").collect()
    finally:
        spark.catalog.dropTempView(view)
    return [tuple(row) for row in rows]


def test_dice_levels_agree_with_duckdb_at_their_boundaries(hub, spark):
    saved = TrainedModel.load(hub.models).splink_settings
    conditions = [
        level["sql_condition"]
        for comparison in saved["comparisons"]
        for level in comparison["comparison_levels"]
        if "bloom" in level["sql_condition"] and "full_name" not in level["sql_condition"]
    ]
    # Dice >= 0.8 and >= 0.7, and short names one letter apart, for given and family names.
    assert len(conditions) == 6
    raw = pa.table(
        {
            "pair_id": list(range(len(DICE_CASES))),
            "given_name_bloom_l": pa.array([bloom(*l) for l, _, _, _ in DICE_CASES], pa.binary()),
            "given_name_bloom_r": pa.array(
                [None if r is None else bloom(*r) for _, r, _, _ in DICE_CASES], pa.binary()
            ),
        }
    )
    con = duckdb.connect()
    con.register("raw", raw)
    # As the linkage's records have them: landed as BIT, read back through Arrow, popcounts beside.
    pairs = con.sql(
        "SELECT pair_id, CAST(given_name_bloom_l AS BIT) AS given_name_bloom_l, "
        "CAST(given_name_bloom_r AS BIT) AS given_name_bloom_r, "
        "bit_count(CAST(given_name_bloom_l AS BIT)) AS given_name_bloom_bits_l, "
        "bit_count(CAST(given_name_bloom_r AS BIT)) AS given_name_bloom_bits_r FROM raw"
    ).to_arrow_table()
    given = [c for c in conditions if "given_name" in c]
    con.register("pairs_arrow", pairs)
    con.execute(
        "CREATE TABLE pairs AS SELECT * REPLACE (CAST(given_name_bloom_l AS BIT) AS given_name_bloom_l, "
        "CAST(given_name_bloom_r AS BIT) AS given_name_bloom_r) FROM pairs_arrow"
    )
    on_duckdb = con.execute(f"SELECT {', '.join(given)} FROM pairs ORDER BY pair_id").fetchall()
    translated = [spark_condition(c, "duckdb", {"given_name_bloom"}) for c in given]
    on_spark = _on_spark(spark, bloom_as_words(pairs), "dice_pairs", translated)

    expected = [
        (
            None if d is None else d >= 0.8,
            None if d is None else d >= 0.7,
            _one_letter_apart(left, right, apart),
        )
        for left, right, d, apart in DICE_CASES
    ]
    assert on_duckdb == expected
    assert on_spark == expected


def test_the_postal_code_level_one_character_apart_agrees_with_duckdb(spark):
    # Another country's postal codes: the "one character apart" level reads a column of several
    # tokens; its SQL must mean the same on Spark (SIZE(ARRAY_INTERSECT(SPLIT ...))).
    from pipelines.linkage.comparisons import postcode_comparison

    variants = "postcode_variant_tokens"
    levels = postcode_comparison().get_comparison("duckdb").as_dict()["comparison_levels"]
    (one_apart,) = [
        level["sql_condition"] for level in levels if variants in level["sql_condition"]
    ]
    a, b, c = (f"{i:032x}" for i in range(3))
    # One token shared; none; one side with no postal code.
    pairs = pa.table(
        {
            "pair_id": [0, 1, 2],
            f"{variants}_l": pa.array([f"{a} {b}", a, f"{a} {b}"], pa.string()),
            f"{variants}_r": pa.array([f"{b} {c}", f"{b} {c}", None], pa.string()),
        }
    )
    con = duckdb.connect()
    con.register("pairs", pairs)
    # A level holds where its condition is true; false and null both pass to the next level.
    on_duckdb = con.execute(
        f"SELECT coalesce({one_apart}, false) FROM pairs ORDER BY pair_id"
    ).fetchall()
    translated = spark_condition(one_apart, "duckdb", set())
    on_spark = _on_spark(spark, pairs, "postcode_pairs", [f"coalesce({translated}, false)"])
    assert on_duckdb == [(True,), (False,), (False,)]
    assert on_spark == on_duckdb


def test_the_pipeline_links_on_spark_when_switched_and_no_person_key_moves(hub, spark, monkeypatch):
    before = person_keys(hub)
    monkeypatch.setenv("PLACELINK_LINKAGE_BACKEND", "spark")
    result = dg.materialize(
        [linked_persons, plausible_linkage],
        resources={"placelink": PlacelinkResource(home=str(hub.home))},
    )
    assert result.success
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.path == ["hub", "person_keys"]
    ]
    metadata = event.materialization.metadata
    assert metadata["linkage_backend"].value == "spark"
    assert metadata["model_retrained"].value is False  # scored with the model DuckDB trained
    assert person_keys(hub) == before  # same clusters, so every key is carried forward unchanged
    last_run = [e for e in AuditLog(hub.audit_dir).events() if e["event"] == "linkage_run"][-1]
    assert last_run["backend"] == "spark"
    # The run's checkpoint folder (pseudonymised intermediate tables) is gone with the run.
    assert not any((hub.spark_dir / "checkpoints").iterdir())
    assert spark.sql("SELECT 1").collect()[0][0] == 1  # the session it reused is still up


def test_a_bit_count_on_anything_but_a_bloom_filter_is_refused_for_spark():
    with pytest.raises(ValueError, match="only translated for Spark on Bloom-filter columns"):
        spark_condition("bit_count(sex_l & sex_r) > 1", "duckdb", {"given_name_bloom"})


def test_without_java_the_spark_backend_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(
        SparkUnavailable,
        match=r"needs Java 17 or newer: JAVA_HOME .* has no bin/java.*"
        r"PLACELINK_LINKAGE_BACKEND=duckdb",
    ):
        require_java()
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SparkUnavailable, match="no java on PATH"):
        require_java()


def test_the_backend_switch_is_read_from_the_environment(tmp_path):
    default = Settings.from_env({"PLACELINK_HOME": str(tmp_path)})
    assert default.linkage_backend == "duckdb"
    assert default.spark_checkpoint_dir == str(tmp_path.resolve() / "spark" / "checkpoints")
    spark = Settings.from_env(
        {
            "PLACELINK_HOME": str(tmp_path),
            "PLACELINK_LINKAGE_BACKEND": "Spark",
            "PLACELINK_SPARK_MASTER": "spark://cluster:7077",
            "PLACELINK_SPARK_CHECKPOINT_DIR": "hdfs:///placelink/checkpoints",
        }
    )
    assert (spark.linkage_backend, spark.spark_master, spark.spark_checkpoint_dir) == (
        "spark",
        "spark://cluster:7077",
        "hdfs:///placelink/checkpoints",
    )
    with pytest.raises(ValueError, match="PLACELINK_LINKAGE_BACKEND is 'postgres': use 'duckdb'"):
        Settings.from_env(
            {"PLACELINK_HOME": str(tmp_path), "PLACELINK_LINKAGE_BACKEND": "postgres"}
        )


def test_great_expectations_still_imports_where_main_has_no_file():
    # Dagster's spawned step processes look like this to pyspark.sql.connect, which exits the
    # process when its gRPC packages are missing; GX imports it. The 'spark' extra brings them.
    run = subprocess.run(
        [sys.executable, "-c", "import great_expectations; print('imported')"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.stdout.strip() == "imported", run.stderr[-2000:]


@pytest.mark.parametrize("crowded_dates", [False, True], ids=["small place", "large place"])
def test_the_blocking_rules_on_the_full_name_filter_are_translated_for_spark(crowded_dates):
    # A place whose finest place is the postcode (no address line or UPRN) has both; in a large
    # place the one on the date of birth asks for the same initial too.
    have = MODEL_COLUMNS - {"address_line_bloom", "uprn_token"}
    settings = (
        splink_settings(have=have, crowded_dates=crowded_dates).get_settings("duckdb").as_dict()
    )
    blooms = {"given_name_bloom", "family_name_bloom", "full_name_bloom"}
    translated = spark_model_settings(settings, blooms)["blocking_rules_to_generate_predictions"]
    full = [r for r in translated if "full_name_bloom" in r["blocking_rule"]]
    # On the same date of birth, and on the same postcode.
    assert len(full) == 2
    for rule in full:
        # The popcounts are sums over the filters' words, each record's side kept (l., r.).
        assert rule["sql_dialect"] == "spark" and "bit_count(" not in rule["blocking_rule"].replace(
            "bit_count(x & y)", ""
        )
        assert "l.full_name_bloom" in rule["blocking_rule"]
        assert "r.full_name_bloom" in rule["blocking_rule"]
    on_the_date = next(
        r["blocking_rule"] for r in full if "date_of_birth_token" in r["blocking_rule"]
    )
    assert ("given_name_initial_token" in on_the_date) is crowded_dates
    assert all(r["sql_dialect"] == "duckdb" for r in translated if r not in full)
