"""How the keyed Bloom-filter columns are read in SQL: which columns they are, their popcounts,
and what a ``bit_count(...)`` counts. Used by the DuckDB model (:mod:`pipelines.linkage.model`)
and the Spark backend (:mod:`pipelines.linkage.spark`) alike; kept apart from both because the
model imports the Spark backend when it scores on Spark (issue 19: no module imports back).
"""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from pipelines.linkage.comparisons import BLOOM_BITS


def bloom_bit_counts(columns: list[str]) -> str:
    """SQL select items: each Bloom-filter column's popcount (the columns are ``BIT`` or binary)."""
    return ", ".join(f"bit_count(CAST({c} AS BIT)) AS {c}{BLOOM_BITS}" for c in columns)


def bloom_columns(records: pa.Table) -> list[str]:
    """The Bloom-filter columns: DuckDB ``BIT`` travels through Arrow as binary."""
    return [
        f.name
        for f in records.schema
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
    ]


def bit_count_argument(node: exp.Expression) -> exp.Expression | None:
    """What a one-argument ``bit_count(...)`` counts (sqlglot parses it either way), else None."""
    if isinstance(node, exp.BitwiseCount):
        return node.this
    if (
        isinstance(node, exp.Anonymous)
        and node.name.lower() == "bit_count"
        and len(node.expressions) == 1
    ):
        return node.expressions[0]
    return None
