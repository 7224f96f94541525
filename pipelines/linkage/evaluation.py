"""Linkage accuracy against a synthetic place's ground truth.

Only for synthetic places: it needs the partners' record_id lookups and the ground
truth, which a real hub never holds. Pairwise metrics count record pairs: a pair is
predicted when both records share a person_key, true when both share a person_id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class PairwiseScores:
    records: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class LinkageAccuracy:
    records: PairwiseScores
    identity_records: PairwiseScores


def _pairwise(con: duckdb.DuckDBPyConnection, table: str, where: str = "true") -> PairwiseScores:
    pairs = "sum(n * (n - 1) / 2)"
    records, true_pairs, predicted, correct = con.execute(f"""
        WITH t AS (SELECT * FROM {table} WHERE {where})
        SELECT (SELECT count(*) FROM t),
               (SELECT {pairs} FROM (SELECT count(*) AS n FROM t GROUP BY person_id)),
               (SELECT {pairs} FROM (SELECT count(*) AS n FROM t GROUP BY person_key)),
               (SELECT {pairs} FROM (SELECT count(*) AS n FROM t GROUP BY person_id, person_key))
    """).fetchall()[0]
    return PairwiseScores(
        int(records), int(true_pairs or 0), int(predicted or 0), int(correct or 0)
    )


def pairwise_scores(con: duckdb.DuckDBPyConnection, table: str) -> PairwiseScores:
    """Pairwise scores of ``table`` (columns person_id: the truth, person_key: the linkage)."""
    return _pairwise(con, table)


def pairwise_scores_touching(
    con: duckdb.DuckDBPyConnection, table: str, subgroup: str
) -> PairwiseScores:
    """Pairwise scores over the pairs with at least one record in ``subgroup`` (a SQL
    condition on ``table``): how well those records are linked to anyone, inside or
    outside the subgroup. ``records`` counts the subgroup's records."""
    everything = _pairwise(con, table)
    outside = _pairwise(con, table, f"NOT coalesce({subgroup}, false)")
    return PairwiseScores(
        everything.records - outside.records,
        everything.true_pairs - outside.true_pairs,
        everything.predicted_pairs - outside.predicted_pairs,
        everything.correct_pairs - outside.correct_pairs,
    )


@dataclass(frozen=True)
class ClusterScores:
    """Whole-person agreement: a person is *exact* when the records of one true person
    form exactly one predicted person, nothing more and nothing less."""

    true_persons: int
    predicted_persons: int
    exact: int
    split_persons: int  # true persons spread over several predicted persons
    merged_persons: int  # predicted persons holding records of several true persons

    @property
    def exact_recall(self) -> float:
        return self.exact / self.true_persons if self.true_persons else 1.0

    @property
    def exact_precision(self) -> float:
        return self.exact / self.predicted_persons if self.predicted_persons else 1.0


def cluster_scores(con: duckdb.DuckDBPyConnection, table: str) -> ClusterScores:
    true_persons, predicted, split, merged = con.execute(f"""
        SELECT count(DISTINCT person_id), count(DISTINCT person_key),
               (SELECT count(*) FROM (SELECT person_id FROM {table} GROUP BY person_id
                                      HAVING count(DISTINCT person_key) > 1)),
               (SELECT count(*) FROM (SELECT person_key FROM {table} GROUP BY person_key
                                      HAVING count(DISTINCT person_id) > 1))
        FROM {table}
    """).fetchall()[0]
    exact = con.execute(f"""
        WITH sized AS (SELECT person_id, person_key,
                              count(*) OVER (PARTITION BY person_id) AS true_size,
                              count(*) OVER (PARTITION BY person_key) AS key_size
                       FROM {table})
        SELECT count(*) FROM (
            SELECT person_id, person_key, count(*) AS n, min(true_size) AS true_size, min(key_size) AS key_size
            FROM sized GROUP BY person_id, person_key)
        WHERE n = true_size AND n = key_size
    """).fetchall()[0][0]
    return ClusterScores(int(true_persons), int(predicted), int(exact), int(split), int(merged))


def linkage_accuracy(
    warehouse: Path, ground_truth: Path, lookups: list[tuple[str, Path]]
) -> LinkageAccuracy:
    """Compare hub person_keys with true person_ids over the records that reached the hub.

    Scored twice: over every record (event rows; many pairs are the same registration
    seen twice and trivially linked) and over identity records, the units Splink
    actually decides on (each takes the person_id most of its records have).
    ``lookups`` are (dataset, partner-side lookup Parquet with record_id, record_token).
    """
    con = duckdb.connect()
    con.execute("ATTACH ? AS wh (READ_ONLY)", [str(warehouse)])
    union = " UNION ALL ".join(
        f"SELECT '{dataset}' AS dataset, CAST(record_id AS VARCHAR) AS record_id, record_token "
        f"FROM read_parquet('{path}')"
        for dataset, path in lookups
    )
    con.execute(
        f"""
        CREATE TEMP TABLE scored AS
        SELECT t.person_id, rp.person_key, ri.identity_id
        FROM read_csv(?, all_varchar = true) t
        JOIN ({union}) l ON l.dataset = t.source AND l.record_id = t.record_id
        JOIN wh.hub.record_person rp ON rp.dataset = l.dataset AND rp.record_token = l.record_token
        JOIN wh.hub.record_identity ri ON ri.dataset = l.dataset AND ri.record_token = l.record_token
    """,
        [str(ground_truth)],
    )
    con.execute("""
        CREATE TEMP TABLE scored_identities AS
        SELECT identity_id, mode(person_id) AS person_id, any_value(person_key) AS person_key
        FROM scored GROUP BY identity_id
    """)
    try:
        return LinkageAccuracy(_pairwise(con, "scored"), _pairwise(con, "scored_identities"))
    finally:
        con.close()
