"""The one-at-a-time carry-forward of person keys, kept as the reference the set-based one
(pipelines/linkage/person_keys.py) must equal: the code as it stood before issue 24."""

from __future__ import annotations

import polars as pl

from pipelines.linkage.person_keys import new_key


def greedy_carry_forward(
    clusters: pl.DataFrame, previous: pl.DataFrame | None, issued: set[str]
) -> tuple[pl.DataFrame, list[tuple[str, str, str | None, int]]]:
    """The one-at-a-time greedy carry-forward, as it was written before issue 24 (Python loops).

    ``clusters``: identity_id, cluster_id (this run). ``previous``: identity_id,
    person_key (last run) or None. ``issued``: every key ever issued (never reused).
    Returns (identity_id, person_key) and events as (event, person_key, other_key, records).
    """
    clusters = clusters.select(
        pl.col("identity_id").cast(pl.String), pl.col("cluster_id").cast(pl.String)
    )
    firsts = clusters.group_by("cluster_id").agg(
        pl.col("identity_id").min().alias("first_id"), pl.len().alias("size")
    )
    assigned: dict[str, str] = {}
    events: list[tuple[str, str, str | None, int]] = []
    if previous is not None and previous.height:
        prev = previous.select(
            pl.col("identity_id").cast(pl.String), pl.col("person_key").cast(pl.String)
        )
        prev_size = prev.group_by("person_key").agg(pl.len().alias("prev_size"))
        overlap = (
            clusters.join(prev, on="identity_id", how="inner")
            .group_by("cluster_id", "person_key")
            .agg(pl.len().alias("overlap"))
            .join(prev_size, on="person_key")
            .sort(
                ["overlap", "prev_size", "person_key", "cluster_id"],
                descending=[True, True, False, False],
            )
        )
        used_keys: set[str] = set()
        for cluster_id, key, _, _ in overlap.iter_rows():
            if cluster_id in assigned or key in used_keys:
                continue
            assigned[cluster_id] = key
            used_keys.add(key)
        # Merges: a cluster that holds records of keys other than the one it kept.
        for cluster_id, key, n, _ in overlap.iter_rows():
            kept = assigned.get(cluster_id)
            if kept is not None and kept != key and key not in used_keys:
                events.append(("merge", kept, key, n))
        # Splits: a previous key whose records also went to clusters that kept another key or a new one.
        split_parts = overlap.filter(pl.col("person_key").is_in(list(used_keys))).rows()
        owner_of_key = {k: c for c, k in assigned.items()}
        pending_splits = [
            (key, cluster_id, n)
            for cluster_id, key, n, _ in split_parts
            if owner_of_key.get(key) != cluster_id
        ]
        retired = set(prev["person_key"].unique().to_list()) - used_keys
        absorbed = {e[2] for e in events}
        events += [("retired", k, None, 0) for k in sorted(retired - absorbed)]
    else:
        pending_splits = []
    taken = set(issued) | set(assigned.values())
    if previous is not None:
        taken |= set(previous["person_key"].cast(pl.String).to_list())
    for cluster_id, first_id, size in firsts.sort("first_id").iter_rows():
        if cluster_id in assigned:
            continue
        n = 0
        while (key := new_key(first_id, n)) in taken:
            n += 1
        assigned[cluster_id] = key
        taken.add(key)
        events.append(("new", key, None, size))
    for key, cluster_id, n in pending_splits:
        events.append(("split", key, assigned[cluster_id], n))
    keys = pl.DataFrame(
        {"cluster_id": list(assigned), "person_key": list(assigned.values())},
        schema={"cluster_id": pl.String, "person_key": pl.String},
    )
    return clusters.join(keys, on="cluster_id").select("identity_id", "person_key"), events
