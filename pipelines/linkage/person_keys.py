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
import logging
from dataclasses import dataclass

import duckdb
import polars as pl
import pyarrow as pa

from pipelines.core.warehouse import qualified_table_exists, table_exists
from pipelines.linkage.record_person import MOVED_IDENTITIES, update_record_person

log = logging.getLogger(__name__)


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


def carry_forward(
    clusters: pl.DataFrame, previous: pl.DataFrame | None, issued: set[str]
) -> tuple[pl.DataFrame, list[tuple[str, str, str | None, int]]]:
    """Assign a person_key to every cluster.

    ``clusters``: identity_id, cluster_id (this run). ``previous``: identity_id,
    person_key (last run) or None. ``issued``: every key ever issued (never reused).
    Returns (identity_id, person_key) and events as (event, person_key, other_key, records).
    """
    con = duckdb.connect()  # in memory: the frames are scanned through Arrow, not copied
    try:
        con.register(
            "pk_clusters_in",
            clusters.select(
                pl.col("identity_id").cast(pl.String), pl.col("cluster_id").cast(pl.String)
            ).to_arrow(),
        )
        if previous is not None:
            con.register(
                "pk_previous_in",
                previous.select(
                    pl.col("identity_id").cast(pl.String), pl.col("person_key").cast(pl.String)
                ).to_arrow(),
            )
        con.register(
            "pk_issued_in",
            pl.DataFrame(
                {"person_key": sorted(issued)}, schema={"person_key": pl.String}
            ).to_arrow(),
        )
        _carry_forward_sql(
            con,
            "pk_clusters_in",
            "pk_previous_in" if previous is not None else None,
            "pk_issued_in",
        )
        keys = con.sql(f"SELECT identity_id, person_key FROM {CARRIED_KEYS}").to_arrow_table()
        events = con.sql(
            f"SELECT {EVENT_COLUMNS} FROM {CARRIED_EVENTS} ORDER BY position"
        ).to_arrow_table()
        return pl.from_arrow(keys), list(zip(*(column.to_pylist() for column in events.columns)))
    finally:
        con.close()


# What _carry_forward_sql leaves in its connection until _drop_carry_forward_tables: a temp view of
# each identity id's key, and the temp table of events (listed in the order of its position column).
CARRIED_KEYS = "pk_keys"
CARRIED_EVENTS = "pk_events"  # ORDER BY position
EVENT_COLUMNS = "event, person_key, other_person_key, identity_records"
_WORK_TABLES = (
    "pk_clusters",
    "pk_shared",
    "pk_firsts",
    "pk_assigned",
    "pk_events",
    "pk_overlap",
    "pk_free",
    "pk_fresh",
)


def _drop_carry_forward_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"DROP VIEW IF EXISTS {CARRIED_KEYS}")
    for table in _WORK_TABLES:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _carry_forward_sql(
    con: duckdb.DuckDBPyConnection, clusters: str, previous: str | None, issued: str
) -> None:
    """:func:`carry_forward` as set-based SQL in ``con`` over the relations named: ``clusters``
    (identity_id, cluster_id), ``previous`` (identity_id, person_key; None on a first run) and
    ``issued`` (person_key). Leaves the keys (identity_id, person_key) in the temp view
    ``CARRIED_KEYS`` and the events (event, person_key, other_person_key, identity_records), in
    the order :func:`carry_forward` lists them, in ``CARRIED_EVENTS``, for the caller to read in
    SQL and then drop (:func:`_drop_carry_forward_tables`): nothing passes through Python.

    The greedy pairing (largest overlap first; ties by the larger previous person, then the
    smaller key, then the smaller cluster id: a strict order) is taken in rounds: every pair
    that is the first remaining pair of both its cluster and its key is taken at once. The
    first remaining pair overall always is, and a pair taken in a round can never lose to a
    pair after it, so the rounds give exactly the pairs the one-at-a-time greedy gives
    (tests/linkage/test_person_keys.py compares them on random histories).
    """

    def run(sql: str, params: list | None = None) -> list:
        return con.execute(
            sql, params or []
        ).fetchall()  # fetchall: DuckDB refuses work while a result is open

    run(
        f"CREATE OR REPLACE TEMP TABLE pk_clusters AS SELECT CAST(identity_id AS VARCHAR) AS identity_id, "
        f"CAST(cluster_id AS VARCHAR) AS cluster_id FROM {clusters}"
    )
    run("""CREATE OR REPLACE TEMP TABLE pk_firsts AS
           SELECT cluster_id, min(identity_id) AS first_id, count(*) AS size FROM pk_clusters GROUP BY cluster_id""")
    run("CREATE OR REPLACE TEMP TABLE pk_assigned (cluster_id VARCHAR, person_key VARCHAR)")
    run(
        "CREATE OR REPLACE TEMP TABLE pk_events (position BIGINT, event VARCHAR, person_key VARCHAR, "
        "other_person_key VARCHAR, identity_records INTEGER)"
    )
    prev_keys = "(SELECT NULL::VARCHAR AS person_key WHERE false)"
    if previous is not None:
        prev_keys = f"(SELECT DISTINCT CAST(person_key AS VARCHAR) AS person_key FROM {previous})"
        run(f"""CREATE OR REPLACE TEMP TABLE pk_shared AS
                WITH prev AS (SELECT CAST(identity_id AS VARCHAR) AS identity_id,
                                     CAST(person_key AS VARCHAR) AS person_key FROM {previous}),
                     sizes AS (SELECT person_key, count(*) AS prev_size FROM prev GROUP BY person_key),
                     shared AS (SELECT c.cluster_id, p.person_key, count(*) AS overlap
                                FROM pk_clusters c JOIN prev p USING (identity_id) GROUP BY ALL)
                SELECT s.*, z.prev_size, s.overlap = z.prev_size AND s.overlap = f.size AS same
                FROM shared s JOIN sizes z USING (person_key) JOIN pk_firsts f USING (cluster_id)""")
        # A cluster that holds exactly a previous key's identity records (most of them, month to
        # month) is the only pair of its cluster and of its key: the greedy takes it whatever the
        # other pairs are, and it makes no event. Only the other pairs are ranked and taken in
        # rounds; ranked among themselves they keep their order, so the same pairs are taken.
        run("INSERT INTO pk_assigned SELECT cluster_id, person_key FROM pk_shared WHERE same")
        run("""CREATE OR REPLACE TEMP TABLE pk_overlap AS
               SELECT cluster_id, person_key, overlap, prev_size,
                      row_number() OVER (ORDER BY overlap DESC, prev_size DESC, person_key, cluster_id) AS rank
               FROM pk_shared WHERE NOT same""")
        run(
            "CREATE OR REPLACE TEMP TABLE pk_free AS SELECT cluster_id, person_key, rank FROM pk_overlap"
        )
        while True:
            taken = run("""
                INSERT INTO pk_assigned
                WITH by_cluster AS (SELECT cluster_id, min(rank) AS rank FROM pk_free GROUP BY cluster_id),
                     by_key AS (SELECT person_key, min(rank) AS rank FROM pk_free GROUP BY person_key)
                SELECT f.cluster_id, f.person_key FROM pk_free f
                JOIN by_cluster USING (rank) JOIN by_key USING (rank)""")[0][0]
            if not taken:
                break
            run("""DELETE FROM pk_free WHERE cluster_id IN (SELECT cluster_id FROM pk_assigned)
                   OR person_key IN (SELECT person_key FROM pk_assigned)""")
        # Merges: a cluster that holds records of keys other than the one it kept (overlap order).
        run("""INSERT INTO pk_events
               SELECT o.rank, 'merge', a.person_key, o.person_key, o.overlap FROM pk_overlap o
               JOIN pk_assigned a USING (cluster_id)
               WHERE a.person_key <> o.person_key AND o.person_key NOT IN (SELECT person_key FROM pk_assigned)""")
        # Keys of the previous run that no cluster kept and no merge absorbed (in key order).
        run(f"""INSERT INTO pk_events
                SELECT 1000000000000 + row_number() OVER (ORDER BY person_key), 'retired', person_key, NULL, 0
                FROM {prev_keys} k
                WHERE person_key NOT IN (SELECT person_key FROM pk_assigned)
                  AND person_key NOT IN (SELECT other_person_key FROM pk_events WHERE event = 'merge')""")
    # New keys, from each remaining cluster's smallest identity id, never one issued or in use.
    run("""
        CREATE OR REPLACE TEMP TABLE pk_fresh AS
        SELECT f.cluster_id, f.first_id, f.size, 'PK' || upper(substr(sha256(f.first_id), 1, 14)) AS person_key
        FROM pk_firsts f ANTI JOIN pk_assigned a USING (cluster_id)""")
    clashes = run(f"""
        SELECT count(*) FROM pk_fresh
        WHERE person_key IN (SELECT person_key FROM {issued}) OR person_key IN (SELECT person_key FROM pk_assigned)
           OR person_key IN (SELECT person_key FROM {prev_keys})
           OR person_key IN (SELECT person_key FROM pk_fresh GROUP BY person_key HAVING count(*) > 1)""")[
        0
    ][0]
    if clashes:
        # A first identity id whose key was issued before (its person was retired or erased), or two
        # clusters whose keys share 56 bits: number them one by one, as they always were.
        taken = {
            k
            for (k,) in run(
                f"SELECT person_key FROM {issued} UNION SELECT person_key FROM pk_assigned "
                f"UNION SELECT person_key FROM {prev_keys}"
            )
            if k is not None
        }
        rows = run("SELECT cluster_id, first_id FROM pk_fresh ORDER BY first_id")
        numbered = []
        for cluster_id, first_id in rows:
            n = 0
            while (key := new_key(first_id, n)) in taken:
                n += 1
            taken.add(key)
            numbered.append((cluster_id, key))
        con.register(
            "pk_numbered",
            pa.table(
                {"cluster_id": [c for c, _ in numbered], "person_key": [k for _, k in numbered]}
            ),
        )
        run("""CREATE OR REPLACE TEMP TABLE pk_fresh AS
               SELECT f.cluster_id, f.first_id, f.size, n.person_key FROM pk_fresh f JOIN pk_numbered n USING (cluster_id)""")
        con.unregister("pk_numbered")
    run("""INSERT INTO pk_events
           SELECT 2000000000000 + row_number() OVER (ORDER BY first_id), 'new', person_key, NULL, size FROM pk_fresh""")
    run("INSERT INTO pk_assigned SELECT cluster_id, person_key FROM pk_fresh")
    if previous is not None:
        # Splits: a previous key whose records also went to a cluster that kept another key or a new one.
        run("""INSERT INTO pk_events
               SELECT 3000000000000 + o.rank, 'split', o.person_key, a.person_key, o.overlap FROM pk_overlap o
               JOIN pk_assigned a USING (cluster_id)
               WHERE o.person_key <> a.person_key
                 AND o.person_key IN (SELECT person_key FROM pk_assigned)""")
    run(
        f"CREATE OR REPLACE TEMP VIEW {CARRIED_KEYS} AS "
        "SELECT c.identity_id, a.person_key FROM pk_clusters c JOIN pk_assigned a USING (cluster_id)"
    )


# This run's keys and events until promote_person_keys saves them: temp tables of the run's
# connection (one write of the keys to the warehouse, not two; a run whose check fails leaves
# nothing staged behind, and the next run stages afresh anyway).
STAGED_KEYS = "temp.main.person_keys_staged"
STAGED_EVENTS = "temp.main.person_key_events_staged"
# With the staged keys: the saved keys whose identity records did not all stay together in one
# cluster (absent on a first run). Saved rows of any other key need no writing.
KEYS_LEFT = "temp.main.person_keys_left"


def stage_person_keys(
    con: duckdb.DuckDBPyConnection,
    clusters: pl.DataFrame | pa.Table,
    now: dt.datetime,
) -> KeyChanges:
    """Work out this run's keys, carried forward from the saved ``hub.person_keys``, into
    :data:`STAGED_KEYS` (and their events into :data:`STAGED_EVENTS`), temp tables of ``con``.

    Nothing saved changes: the keys in use, the register of issued keys and the key history stay
    as they were until :func:`promote_person_keys` (issue 20: keys only from a run whose linkage
    check passed). Staging again replaces the previous staging."""
    now = now.replace(tzinfo=None)  # the caller's clock: settings.now()
    # fetchall, not fetchone: DuckDB 2.0 refuses new queries while a result is unfinished.
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'hub' AND table_name = 'person_keys'"
    ).fetchall()[0][0]
    # Set-based in the warehouse: no key, identity id or event passes through Python (issue 24);
    # the clusters' Arrow table is scanned in place, not copied.
    con.register("this_run_clusters", clusters)
    try:
        _carry_forward_sql(
            con,
            "this_run_clusters",
            "hub.person_keys" if exists else None,
            "hub.person_key_register",
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {STAGED_KEYS} AS "
            f"SELECT identity_id, person_key, ?::TIMESTAMP AS staged_at FROM {CARRIED_KEYS}",
            [now],
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {STAGED_EVENTS} AS "
            f"SELECT ?::TIMESTAMP AS run_at, {EVENT_COLUMNS} FROM {CARRIED_EVENTS} ORDER BY position",
            [now],
        )
        # The identity records whose key may differ from the saved one, for hub.record_person
        # (pipelines/linkage/record_person.py): those of the clusters that are not exactly a
        # previous person (ranked, or given a new key). No table on a first run: every key is new.
        con.execute(f"DROP TABLE IF EXISTS {MOVED_IDENTITIES}")
        # And the previous keys whose identity records are not all still together (ranked, or
        # retired): every saved row of another key is already this run's.
        con.execute(f"DROP TABLE IF EXISTS {KEYS_LEFT}")
        if exists:
            con.execute(f"""
                CREATE TEMP TABLE {MOVED_IDENTITIES} AS
                SELECT identity_id FROM pk_clusters WHERE cluster_id IN (
                    SELECT cluster_id FROM pk_overlap UNION SELECT cluster_id FROM pk_fresh)""")
            con.execute(f"""
                CREATE TEMP TABLE {KEYS_LEFT} AS
                SELECT person_key FROM pk_overlap
                UNION SELECT person_key FROM pk_events WHERE event = 'retired'""")
        # From the carry-forward's own tables, not by joining the staged keys to the saved ones
        # again on identity ids: the identity records whose key changed are those a cluster
        # shares with a previous key other than the one it got (a cluster that is exactly a
        # previous person kept its key); each cluster has one key, so the persons are the keys.
        persons, changed = con.execute(
            "SELECT (SELECT count(DISTINCT person_key) FROM pk_assigned), "
            + (
                "(SELECT coalesce(sum(o.overlap), 0) FROM pk_overlap o JOIN pk_assigned a "
                "USING (cluster_id) WHERE o.person_key <> a.person_key)"
                if exists
                else "0"
            )
        ).fetchall()[0]
    finally:
        _drop_carry_forward_tables(con)
        con.unregister("this_run_clusters")
    count = con.execute(
        f"""SELECT map(list(event), list(n)) FROM
                (SELECT event, count(*) AS n FROM {STAGED_EVENTS} GROUP BY event)"""
    ).fetchall()[0][0]
    count = dict(count or {})
    count = {e: count.get(e, 0) for e in ("new", "merge", "split", "retired")}
    return KeyChanges(
        persons,
        persons - count["new"],
        count["new"],
        count["merge"],
        count["split"],
        count["retired"] + count["merge"],
        int(changed),
    )


def promote_person_keys(con: duckdb.DuckDBPyConnection) -> int | None:
    """Make the staged keys the saved ones, in one transaction: ``hub.person_keys``, the register
    of issued keys, the key history, the retirement of merged or vanished keys and, where
    ``hub.record_identity`` exists, ``hub.record_person`` all change together or not at all (a run
    killed here leaves yesterday's keys). Returns how many records' rows of ``hub.record_person``
    were written again (None: all, or there is no such table; :mod:`pipelines.linkage.record_person`)."""
    rewritten = None
    con.execute("BEGIN TRANSACTION")
    try:
        _save_keys(con)
        # Every key in use is in the register (also keys from before the register existed).
        con.execute(
            "INSERT INTO hub.person_key_register SELECT DISTINCT person_key, staged_at, NULL, NULL "
            f"FROM {STAGED_KEYS} ON CONFLICT DO NOTHING"
        )
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
        if table_exists(con, "hub", "record_identity"):
            rewritten = update_record_person(con)
        con.execute(f"DROP TABLE {STAGED_KEYS}")
        con.execute(f"DROP TABLE {STAGED_EVENTS}")
        con.execute(f"DROP TABLE IF EXISTS {MOVED_IDENTITIES}")
        con.execute(f"DROP TABLE IF EXISTS {KEYS_LEFT}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return rewritten


def _save_keys(con: duckdb.DuckDBPyConnection) -> None:
    """``hub.person_keys`` made the staged keys: only the rows of keys whose identity records did
    not all stay together are deleted, and the staged rows of the identity records in clusters
    that are not exactly a previous person inserted (a month with nothing new writes nothing; the
    whole table was written every run, 1.1M rows at 1M people). Written whole on a first run, and
    as a guard when the result would not hold one row per staged key."""

    def run(sql: str) -> list:
        return con.execute(sql).fetchall()

    if table_exists(con, "hub", "person_keys") and all(
        qualified_table_exists(con, t) for t in (MOVED_IDENTITIES, KEYS_LEFT)
    ):
        if run(f"SELECT count(*) FROM {KEYS_LEFT}")[0][0]:
            run(
                f"DELETE FROM hub.person_keys WHERE person_key IN (SELECT person_key FROM {KEYS_LEFT})"
            )
        if run(f"SELECT count(*) FROM {MOVED_IDENTITIES}")[0][0]:
            run(f"""INSERT INTO hub.person_keys SELECT s.identity_id, s.person_key
                    FROM {STAGED_KEYS} s SEMI JOIN {MOVED_IDENTITIES} m USING (identity_id)""")
        saved, staged = run(
            f"SELECT (SELECT count(*) FROM hub.person_keys), (SELECT count(*) FROM {STAGED_KEYS})"
        )[0]
        if saved == staged:
            return
        log.warning("hub.person_keys held %d rows for %d staged keys: written whole", saved, staged)
    run(
        f"CREATE OR REPLACE TABLE hub.person_keys AS SELECT identity_id, person_key FROM {STAGED_KEYS}"
    )


def assign_person_keys(
    con: duckdb.DuckDBPyConnection,
    clusters: pl.DataFrame | pa.Table,
    now: dt.datetime,
) -> KeyChanges:
    """Write ``hub.person_keys`` for this run's clusters, carrying keys forward from the
    previous ``hub.person_keys``, and record the changes (staged, then promoted at once)."""
    changes = stage_person_keys(con, clusters, now)
    promote_person_keys(con)
    return changes


def forget_identities(
    con: duckdb.DuckDBPyConnection, identity_ids: list[str], now: dt.datetime
) -> int:
    """Erase withdrawn identity records from the key history (pipelines.hub.withdrawals).

    They leave ``hub.person_keys``, so the next run cannot carry a key forward through them;
    a key left with no identity record is retired as ``erased`` in the register (and so, like
    every key ever issued, never issued again, even to the same person returning). Returns how
    many keys were retired.
    """
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'hub' AND table_name = 'person_keys'"
    ).fetchall()[0][0]
    if not exists or not identity_ids:
        return 0
    now = now.replace(tzinfo=None)  # the caller's clock: settings.now()

    def run(sql: str, params: list | None = None) -> list:
        # fetchall: DuckDB 2.0 refuses new work while a result is unfinished
        return con.execute(sql, params or []).fetchall()

    con.register("forgotten_identities", pl.DataFrame({"identity_id": identity_ids}).to_arrow())
    try:
        run("""CREATE OR REPLACE TEMP TABLE erased_keys AS
               SELECT person_key, count(*) AS identity_records FROM hub.person_keys
               WHERE identity_id IN (SELECT identity_id FROM forgotten_identities) GROUP BY person_key""")
        run(
            "DELETE FROM hub.person_keys WHERE identity_id IN (SELECT identity_id FROM forgotten_identities)"
        )
        run("DELETE FROM erased_keys WHERE person_key IN (SELECT person_key FROM hub.person_keys)")
        run(
            "INSERT INTO hub.person_key_events SELECT ?::TIMESTAMP, 'erased', person_key, NULL, identity_records "
            "FROM erased_keys",
            [now],
        )
        run(
            "UPDATE hub.person_key_register SET retired_at = ?::TIMESTAMP WHERE retired_at IS NULL "
            "AND person_key IN (SELECT person_key FROM erased_keys)",
            [now],
        )
        return run("SELECT count(*) FROM erased_keys")[0][0]
    finally:
        run("DROP TABLE IF EXISTS erased_keys")
        con.unregister("forgotten_identities")
