"""Linkage on Spark (``PLACELINK_LINKAGE_BACKEND=spark``): the saved model, scored by Splink's SparkAPI.

The model is trained on DuckDB and saved as JSON whose comparison SQL is DuckDB's dialect.
Splink translates the saved blocking rules itself, but uses comparison-level SQL verbatim,
and verbatim DuckDB SQL is wrong on Spark: ``"nhs_number_token_l"`` is a column in DuckDB and
a string literal in Spark. So, in memory and never on disk, each level's SQL is translated
with sqlglot (DuckDB -> Spark), and the one thing Spark has no equivalent for is rewritten:
DuckDB's ``BIT`` type. A Bloom filter goes to Spark as an array of 64-bit words (the same bits,
cut in order), where ``bit_count(a & b)`` becomes the sum over word pairs of
``bit_count(x & y)``. Popcounts are the same integers, so Dice, every comparison level, every
match weight and every cluster are the same as on DuckDB (tests/linkage/test_spark_backend.py).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

from pipelines.core.settings import Settings
from pipelines.linkage.bloom_sql import bit_count_argument, bloom_bit_counts, bloom_columns

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

MIN_JAVA = 17  # Spark 4 runs on Java 17 or newer
LOG4J_CONFIG = Path(__file__).with_name("spark-log4j2.properties")


class SparkUnavailable(RuntimeError):
    """The Spark backend was asked for but cannot start here; the message says what to install."""


def bloom_as_words(records: pa.Table) -> pa.Table:
    """The records with each Bloom filter as a list of signed 64-bit words, for Spark, and
    its popcount beside it (:func:`~pipelines.linkage.bloom_sql.bloom_bit_counts`, as on DuckDB).

    The bits are DuckDB's own ``CAST(... AS BIT)`` of the column (as the DuckDB backend
    compares them), cut into 64-bit pieces in order; the last piece may be shorter. Two
    filters of the same length are cut the same way, so ``bit_count`` of their AND, summed
    over the pieces, equals DuckDB's ``bit_count(a & b)``.
    """
    columns = bloom_columns(records)
    if not columns:
        return records
    as_words = ", ".join(
        f"list_transform(range(0, (bit_length(CAST({c} AS BIT)) + 63) // 64), lambda i: "
        f"CAST(CAST(substring(CAST(CAST({c} AS BIT) AS VARCHAR), 64 * i + 1, 64) AS BIT) AS BIGINT)) AS {c}"
        for c in columns
    )
    con = duckdb.connect()
    try:
        con.register("person_records_arrow", records)
        return con.sql(
            f"SELECT * REPLACE ({as_words}), {bloom_bit_counts(columns)} FROM person_records_arrow"
        ).to_arrow_table()
    finally:
        con.close()


def _summed_bit_counts(argument: exp.Expression, blooms: set[str], level: str) -> exp.Expression:
    def bloom(column: exp.Expression) -> str:
        name = column.name if isinstance(column, exp.Column) else ""
        if re.sub(r"_[lr]$", "", name) not in blooms:
            raise ValueError(
                f"model level {level!r}: bit_count is only translated for Spark on Bloom-filter "
                f"columns ({', '.join(sorted(blooms))}), not on {column.sql('duckdb')!r}"
            )
        # A blocking rule names the record (l.column): keep it.
        return exp.column(name, table=column.table or None).sql("spark")

    if isinstance(argument, exp.BitwiseAnd):
        words = f"zip_with({bloom(argument.this)}, {bloom(argument.expression)}, (x, y) -> bit_count(x & y))"
    else:
        words = f"transform({bloom(argument)}, x -> bit_count(x))"
    return sqlglot.parse_one(f"aggregate({words}, 0, (total, n) -> total + n)", read="spark")


def spark_condition(sql: str, from_dialect: str, blooms: set[str]) -> str:
    """One comparison level's SQL in Spark's dialect, Bloom-filter popcounts over word arrays."""
    if sql.strip().upper() == "ELSE":
        return sql

    def rewrite(node: exp.Expression) -> exp.Expression:
        argument = bit_count_argument(node)
        return node if argument is None else _summed_bit_counts(argument, blooms, sql)

    return sqlglot.parse_one(sql, read=from_dialect).transform(rewrite).sql(dialect="spark")


def spark_model_settings(saved: dict[str, Any], blooms: set[str]) -> dict[str, Any]:
    """A copy of a saved Splink model with every comparison level's SQL translated for Spark.

    Probabilities and term-frequency settings are untouched; Splink translates blocking rules
    from the ``sql_dialect`` they were saved with, except one on a Bloom filter's Dice, whose
    popcounts are rewritten here as the levels' are.
    """
    from_dialect = saved.get("sql_dialect", "duckdb")
    settings = copy.deepcopy(saved)
    for comparison in settings["comparisons"]:
        for level in comparison["comparison_levels"]:
            level["sql_condition"] = spark_condition(level["sql_condition"], from_dialect, blooms)
    for rule in settings.get("blocking_rules_to_generate_predictions", []):
        if "bit_count" in rule.get("blocking_rule", ""):
            dialect = rule.get("sql_dialect") or from_dialect
            rule["blocking_rule"] = spark_condition(rule["blocking_rule"], dialect, blooms)
            rule["sql_dialect"] = "spark"
    settings["sql_dialect"] = "spark"
    return settings


def require_java() -> str:
    """The ``java`` Spark will start (``JAVA_HOME`` first, as Spark's launcher does), if 17+."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).is_file():
        where = (
            f"JAVA_HOME ({java_home}) has no bin/java"
            if java_home
            else "no java on PATH and JAVA_HOME unset"
        )
        raise SparkUnavailable(
            f"linkage backend 'spark' needs Java {MIN_JAVA} or newer: {where}. Install a JDK "
            f"(e.g. apt-get install openjdk-{MIN_JAVA}-jre-headless) or set PLACELINK_LINKAGE_BACKEND=duckdb"
        )
    banner = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    major = (int(found.group(2)) if found.group(1) == "1" else int(found.group(1))) if found else 0
    if major < MIN_JAVA:
        raise SparkUnavailable(
            f"linkage backend 'spark' needs Java {MIN_JAVA} or newer; {java} is "
            f"{'version ' + str(major) if major else 'of an unknown version'}. Point JAVA_HOME at a newer JDK "
            "or set PLACELINK_LINKAGE_BACKEND=duckdb"
        )
    return java


def _new_session(settings: Settings) -> SparkSession:
    from pyspark.sql import SparkSession
    from splink.backends.spark import similarity_jar_location

    scratch = settings.spark_dir
    for folder in ("local", "tmp", "warehouse"):
        (scratch / folder).mkdir(parents=True, exist_ok=True)
    local = settings.spark_master.startswith("local")
    java_options = [
        f"-Djava.io.tmpdir={scratch / 'tmp'}",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}",
    ]
    if local:
        # A local run is a few short jobs that the optimising JIT tier does not repay. Measured
        # on the 3,000-person test place (2 shared cores): session start 6 s instead of 11-12 s,
        # first run 20-22 s instead of 25-26 s, warm runs no different (docs/linkage.md).
        java_options.append("-XX:TieredStopAtLevel=1")
    builder = (
        SparkSession.builder.master(settings.spark_master)
        .appName("placelink-linkage")
        # Splink's similarity UDFs; SparkAPI registers them from this jar.
        .config("spark.jars", similarity_jar_location())
        .config("spark.driver.extraJavaOptions", " ".join(java_options))
        .config("spark.local.dir", str(scratch / "local"))
        .config("spark.sql.warehouse.dir", str(scratch / "warehouse"))
        .config("spark.ui.showConsoleProgress", "false")
    )
    if local:
        # Spark's default of 200 shuffle partitions is for clusters; on one machine each
        # partition of a small place is pure overhead. A cluster keeps its spark-defaults.conf.
        builder = builder.config("spark.sql.shuffle.partitions", str(os.cpu_count() or 1)).config(
            "spark.ui.enabled", "false"
        )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


@contextmanager
def spark_session(settings: Settings) -> Iterator[SparkSession]:
    """A Spark session for one linkage run, with a checkpoint folder of its own.

    Reuses the process's active session if there is one (a notebook, a cluster job, a test)
    and leaves it running; otherwise starts one from ``settings`` (master, scratch folders
    under ``PLACELINK_HOME/spark``) and stops it afterwards. The run's checkpoint folder holds
    pseudonymised intermediate tables and is deleted at the end, whatever happened.
    """
    require_java()
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailable(
            "linkage backend 'spark' needs pyspark: pip install 'placelink[spark]'"
        ) from exc
    active = SparkSession.getActiveSession()
    session = active or _new_session(settings)
    checkpoints = f"{settings.spark_checkpoint_dir.rstrip('/')}/run-{uuid.uuid4().hex}"
    try:
        # Splink writes its intermediate tables under the checkpoint folder (SparkAPI's
        # default "parquet" lineage breaking) and fails without one.
        session.sparkContext.setCheckpointDir(checkpoints)
        yield session
    finally:
        _delete(session, checkpoints)
        if active is None:
            session.stop()


def _delete(session: SparkSession, folder: str) -> None:
    # Through Hadoop's file system, so an hdfs:// or s3a:// checkpoint folder goes too.
    jvm = session.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(folder)
    path.getFileSystem(session.sparkContext._jsc.hadoopConfiguration()).delete(path, True)
