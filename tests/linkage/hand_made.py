"""Hand-made records linked among a stress place's records: the failure-class tests' probe."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from pipelines.linkage.model import predict_clusters
from pipelines.tooling.bench.linkage_profiles import partner_records


def linked(place, left: dict, right: dict, fields: tuple[str, ...]) -> bool:
    """Whether two hand-made records (raw ``fields``; a field left out is missing) end up as one
    person among the place's records. ``place`` is (linkage key, the place's records, a model
    trained on them)."""
    key, records, model = place
    rows = pl.DataFrame(
        [{"record_id": "HAND-L", **left}, {"record_id": "HAND-R", **right}],
        schema={"record_id": pl.String, **{f: pl.String for f in fields}},
    )
    hand = partner_records(rows, "hand", key).to_arrow().cast(records.schema)
    clusters = predict_clusters(pa.concat_tables([records, hand]), model).clusters.to_pylist()
    of = {c["unique_id"]: c["cluster_id"] for c in clusters}
    return of["HAND-L"] == of["HAND-R"]
