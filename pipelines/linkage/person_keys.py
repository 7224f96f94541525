"""Stable person keys: a person keeps their ``person_key`` from one month's linkage to the next.

Splink's cluster ids are arbitrary and change whenever the records change, so keys
are carried forward by overlap with the previous run's clusters:

- every (new cluster, previous key) pair is weighed by how many identity records they
  share; pairs are taken greedily, largest overlap first (ties: the larger previous
  person, then the smaller key), each cluster and each key used once;
- a cluster that wins no previous key gets a new one, derived from its smallest
  identity id and never one that was issued before;
- a cluster holding identity records of several previous keys is a **merge**: it keeps
  the key it won and the other keys are retired into it;
- a previous key whose identity records now sit in several clusters is a **split**:
  the largest share keeps the key, the rest get new keys.

Re-running on unchanged inputs therefore changes no key, and new records only move the
keys of the people they merge or split. Every merge, split, new and retired key is a
row in ``hub.person_key_events``; ``hub.person_key_register`` holds every key ever issued.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import duckdb
import polars as pl


REGISTER_DDL = """
CREATE TABLE IF NOT EXISTS hub.person_key_register (
    person_key VARCHAR PRIMARY KEY,
    issued_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP,
    retired_into VARCHAR
)"""
EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS hub.person_key_events (
    run_at TIMESTAMP NOT NULL,
    event VARCHAR NOT NULL,          -- new | merge | split | retired | erased (withdrawn)
    person_key VARCHAR NOT NULL,     -- the key the event is about
    other_person_key VARCHAR,        -- merge: the key absorbed; split: the key split off
    identity_records INTEGER         -- identity records moved by the event
)"""


@dataclass(frozen=True)
class KeyChanges:
    """How this run's keys relate to the previous run's (counts only)."""

    persons: int
    carried: int
    new: int
    merges: int
    splits: int
    retired: int
    identity_records_with_changed_key: int


def new_key(seed: str, n: int = 0) -> str:
    text = seed if n == 0 else f"{seed}#{n}"
    return "PK" + hashlib.sha256(text.encode()).hexdigest()[:14].upper()


def carry_forward(clusters: pl.DataFrame, previous: pl.DataFrame | None,
                  issued: set[str]) -> tuple[pl.DataFrame, list[tuple[str, str, str | None, int]]]:
    """Assign a person_key to every cluster.

    ``clusters``: identity_id, cluster_id (this run). ``previous``: identity_id,
    person_key (last run) or None. ``issued``: every key ever issued (never reused).
    Returns (identity_id, person_key) and events as (event, person_key, other_key, records).
    """
    clusters = clusters.select(pl.col("identity_id").cast(pl.String), pl.col("cluster_id").cast(pl.String))
    firsts = clusters.group_by("cluster_id").agg(pl.col("identity_id").min().alias("first_id"),
                                                 pl.len().alias("size"))
    assigned: dict[str, str] = {}
    events: list[tuple[str, str, str | None, int]] = []
    if previous is not None and previous.height:
        prev = previous.select(pl.col("identity_id").cast(pl.String), pl.col("person_key").cast(pl.String))
        prev_size = prev.group_by("person_key").agg(pl.len().alias("prev_size"))
        overlap = (clusters.join(prev, on="identity_id", how="inner")
                   .group_by("cluster_id", "person_key").agg(pl.len().alias("overlap"))
                   .join(prev_size, on="person_key")
                   .sort(["overlap", "prev_size", "person_key", "cluster_id"],
                         descending=[True, True, False, False]))
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
        split_parts = overlap.filter(
            pl.col("person_key").is_in(list(used_keys))
        ).rows()
        owner_of_key = {k: c for c, k in assigned.items()}
        pending_splits = [(key, cluster_id, n) for cluster_id, key, n, _ in split_parts
                          if owner_of_key.get(key) != cluster_id]
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
    keys = pl.DataFrame({"cluster_id": list(assigned), "person_key": list(assigned.values())},
                        schema={"cluster_id": pl.String, "person_key": pl.String})
    return clusters.join(keys, on="cluster_id").select("identity_id", "person_key"), events


STAGED_KEYS = "hub.person_keys_staged"
STAGED_EVENTS = "hub.person_key_events_staged"


def stage_person_keys(con: duckdb.DuckDBPyConnection, clusters: pl.DataFrame,
                      now: dt.datetime | None = None) -> KeyChanges:
    """Work out this run's keys, carried forward from the saved ``hub.person_keys``, into
    ``hub.person_keys_staged`` (and their events into ``hub.person_key_events_staged``).

    Nothing saved changes: the keys in use, the register of issued keys and the key history stay
    as they were until :func:`promote_person_keys` (issue 20: keys only from a run whose linkage
    check passed). Staging again replaces the previous staging."""
    now = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    con.execute(REGISTER_DDL)
    con.execute(EVENTS_DDL)
    # fetchall, not fetchone: DuckDB 2.0 refuses new queries while a result is unfinished.
    exists = con.execute("SELECT count(*) FROM information_schema.tables "
                         "WHERE table_schema = 'hub' AND table_name = 'person_keys'").fetchall()[0][0]
    previous = con.sql("SELECT identity_id, person_key FROM hub.person_keys").pl() if exists else None
    issued = {k for (k,) in con.execute("SELECT person_key FROM hub.person_key_register").fetchall()}
    keys, events = carry_forward(clusters, previous, issued)
    # Bulk, through Arrow: one INSERT per event row is far too slow for 100k new keys.
    frame = pl.DataFrame(events, schema={"event": pl.String, "person_key": pl.String,
                                         "other_person_key": pl.String, "identity_records": pl.Int32},
                         orient="row").with_columns(run_at=pl.lit(now))
    con.register("new_person_keys", keys.to_arrow())
    con.register("key_events_arrow", frame.to_arrow())
    try:
        con.execute(f"CREATE OR REPLACE TABLE {STAGED_KEYS} AS "
                    "SELECT identity_id, person_key, ?::TIMESTAMP AS staged_at FROM new_person_keys", [now])
        con.execute(f"CREATE OR REPLACE TABLE {STAGED_EVENTS} AS "
                    "SELECT run_at, event, person_key, other_person_key, identity_records FROM key_events_arrow")
    finally:
        con.unregister("new_person_keys")
        con.unregister("key_events_arrow")
    changed = 0
    if previous is not None:
        joined = previous.join(keys, on="identity_id", how="inner", suffix="_now")
        changed = joined.filter(pl.col("person_key") != pl.col("person_key_now")).height
    count = {e: sum(1 for ev in events if ev[0] == e) for e in ("new", "merge", "split", "retired")}
    persons = keys["person_key"].n_unique()
    return KeyChanges(persons, persons - count["new"], count["new"], count["merge"], count["split"],
                      count["retired"] + count["merge"], changed)


def promote_person_keys(con: duckdb.DuckDBPyConnection, *, also: tuple[str, ...] = ()) -> None:
    """Make the staged keys the saved ones, in one transaction: ``hub.person_keys``, the register
    of issued keys, the key history and the retirement of merged or vanished keys all change
    together or not at all (a run killed here leaves yesterday's keys). ``also``: further SQL
    statements to run in the same transaction (e.g. rebuilding ``hub.record_person``)."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE OR REPLACE TABLE hub.person_keys AS SELECT identity_id, person_key FROM {STAGED_KEYS}")
        # Every key in use is in the register (also keys from before the register existed).
        con.execute("INSERT INTO hub.person_key_register SELECT DISTINCT person_key, staged_at, NULL, NULL "
                    f"FROM {STAGED_KEYS} ON CONFLICT DO NOTHING")
        con.execute(f"""INSERT INTO hub.person_key_events
                       SELECT run_at, event, person_key, other_person_key, identity_records FROM {STAGED_EVENTS}""")
        # A key absorbed by a merge, or whose records are gone, is retired (never reissued).
        con.execute(f"""
            UPDATE hub.person_key_register r
            SET retired_at = e.run_at, retired_into = e.merged_into
            FROM (SELECT CASE WHEN event = 'merge' THEN other_person_key ELSE person_key END AS key,
                         any_value(run_at) AS run_at,
                         any_value(CASE WHEN event = 'merge' THEN person_key END) AS merged_into
                  FROM {STAGED_EVENTS} WHERE event IN ('merge', 'retired') GROUP BY key) e
            WHERE r.person_key = e.key AND r.retired_at IS NULL
        """)
        for statement in also:
            con.execute(statement)
        con.execute(f"DROP TABLE {STAGED_KEYS}")
        con.execute(f"DROP TABLE {STAGED_EVENTS}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def assign_person_keys(con: duckdb.DuckDBPyConnection, clusters: pl.DataFrame,
                       now: dt.datetime | None = None) -> KeyChanges:
    """Write ``hub.person_keys`` for this run's clusters, carrying keys forward from the
    previous ``hub.person_keys``, and record the changes (staged, then promoted at once)."""
    changes = stage_person_keys(con, clusters, now)
    promote_person_keys(con)
    return changes


def forget_identities(con: duckdb.DuckDBPyConnection, identity_ids: list[str],
                      now: dt.datetime | None = None) -> int:
    """Erase withdrawn identity records from the key history (pipelines.hub.withdrawals).

    They leave ``hub.person_keys``, so the next run cannot carry a key forward through them;
    a key left with no identity record is retired as ``erased`` in the register (and so, like
    every key ever issued, never issued again, even to the same person returning). Returns how
    many keys were retired.
    """
    exists = con.execute("SELECT count(*) FROM information_schema.tables "
                         "WHERE table_schema = 'hub' AND table_name = 'person_keys'").fetchall()[0][0]
    if not exists or not identity_ids:
        return 0
    now = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)

    def run(sql: str, params: list | None = None) -> list:
        # fetchall: DuckDB 2.0 refuses new work while a result is unfinished
        return con.execute(sql, params or []).fetchall()

    run(REGISTER_DDL)
    run(EVENTS_DDL)
    con.register("forgotten_identities", pl.DataFrame({"identity_id": identity_ids}).to_arrow())
    try:
        run("""CREATE OR REPLACE TEMP TABLE erased_keys AS
               SELECT person_key, count(*) AS identity_records FROM hub.person_keys
               WHERE identity_id IN (SELECT identity_id FROM forgotten_identities) GROUP BY person_key""")
        run("DELETE FROM hub.person_keys WHERE identity_id IN (SELECT identity_id FROM forgotten_identities)")
        run("DELETE FROM erased_keys WHERE person_key IN (SELECT person_key FROM hub.person_keys)")
        run("INSERT INTO hub.person_key_events SELECT ?::TIMESTAMP, 'erased', person_key, NULL, identity_records "
            "FROM erased_keys", [now])
        run("UPDATE hub.person_key_register SET retired_at = ?::TIMESTAMP WHERE retired_at IS NULL "
            "AND person_key IN (SELECT person_key FROM erased_keys)", [now])
        return run("SELECT count(*) FROM erased_keys")[0][0]
    finally:
        run("DROP TABLE IF EXISTS erased_keys")
        con.unregister("forgotten_identities")
