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


def _pairwise(con: duckdb.DuckDBPyConnection, table: str) -> PairwiseScores:
    pairs = "sum(n * (n - 1) / 2)"
    records, true_pairs, predicted, correct = con.execute(f"""
        SELECT (SELECT count(*) FROM {table}),
               (SELECT {pairs} FROM (SELECT count(*) AS n FROM {table} GROUP BY person_id)),
               (SELECT {pairs} FROM (SELECT count(*) AS n FROM {table} GROUP BY person_key)),
               (SELECT {pairs} FROM (SELECT count(*) AS n FROM {table} GROUP BY person_id, person_key))
    """).fetchone()
    return PairwiseScores(int(records), int(true_pairs or 0), int(predicted or 0), int(correct or 0))


def linkage_accuracy(warehouse: Path, ground_truth: Path, lookups: list[tuple[str, Path]]) -> LinkageAccuracy:
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
        f"FROM read_parquet('{path}')" for dataset, path in lookups)
    con.execute(f"""
        CREATE TEMP TABLE scored AS
        SELECT t.person_id, rp.person_key, ri.identity_id
        FROM read_csv(?, all_varchar = true) t
        JOIN ({union}) l ON l.dataset = t.source AND l.record_id = t.record_id
        JOIN wh.hub.record_person rp ON rp.dataset = l.dataset AND rp.record_token = l.record_token
        JOIN wh.hub.record_identity ri ON ri.dataset = l.dataset AND ri.record_token = l.record_token
    """, [str(ground_truth)])
    con.execute("""
        CREATE TEMP TABLE scored_identities AS
        SELECT identity_id, mode(person_id) AS person_id, any_value(person_key) AS person_key
        FROM scored GROUP BY identity_id
    """)
    try:
        return LinkageAccuracy(_pairwise(con, "scored"), _pairwise(con, "scored_identities"))
    finally:
        con.close()
