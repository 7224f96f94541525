"""Person keys carried forward from one month's linkage to the next."""

import datetime as dt
import logging

import duckdb
import polars as pl
import pytest

from pipelines.core.warehouse_schema import migrate
from pipelines.linkage.person_keys import (
    STAGED_KEYS,
    assign_person_keys,
    carry_forward,
    new_key,
    promote_person_keys,
    stage_person_keys,
)


def clusters(*groups: str) -> pl.DataFrame:
    """One cluster per string of identity ids: clusters("abc", "d") -> {a,b,c}, {d}."""
    rows = [(i, f"c{n}") for n, group in enumerate(groups) for i in group]
    return pl.DataFrame(
        rows, schema={"identity_id": pl.String, "cluster_id": pl.String}, orient="row"
    )


def keyed(keys: pl.DataFrame) -> dict[str, str]:
    return dict(keys.iter_rows())


@pytest.fixture()
def hub():
    con = duckdb.connect()
    migrate(con, dt.datetime(2026, 10, 1))  # the hub's tables, the person-key register among them
    yield con
    con.close()


def run(con, *groups, day=1):
    changes = assign_person_keys(con, clusters(*groups), now=dt.datetime(2026, 10, day))
    return dict(
        con.execute("SELECT identity_id, person_key FROM hub.person_keys").fetchall()
    ), changes


def test_unchanged_clusters_keep_every_key_even_when_cluster_ids_change(hub):
    first, _ = run(hub, "abc", "de", "f")
    again, changes = run(
        hub, "f", "ed", "cab", day=2
    )  # same people, Splink numbered them differently
    assert again == first
    assert (
        changes.new
        == changes.merges
        == changes.splits
        == changes.identity_records_with_changed_key
        == 0
    )


def test_new_records_join_their_person_and_new_people_get_new_keys(hub):
    first, _ = run(hub, "abc", "de")
    now, changes = run(hub, "abcx", "de", "y", day=2)
    assert now["x"] == first["a"] and now["d"] == first["d"]
    assert now["y"] not in first.values()
    assert (changes.new, changes.identity_records_with_changed_key) == (1, 0)


def test_a_merge_keeps_the_larger_persons_key_and_retires_the_other(hub):
    first, _ = run(hub, "abc", "de")
    now, changes = run(hub, "abcde", day=2)
    assert set(now.values()) == {first["a"]}
    assert changes.merges == 1 and changes.identity_records_with_changed_key == 2
    merge = hub.execute(
        "SELECT person_key, other_person_key FROM hub.person_key_events WHERE event = 'merge'"
    ).fetchall()
    assert merge == [(first["a"], first["d"])]
    retired = hub.execute(
        "SELECT retired_into FROM hub.person_key_register WHERE person_key = ?", [first["d"]]
    ).fetchall()
    assert retired == [(first["a"],)]


def test_a_split_keeps_the_key_on_the_larger_part_and_records_the_new_key(hub):
    first, _ = run(hub, "abcde")
    now, changes = run(hub, "abc", "de", day=2)
    assert now["a"] == first["a"]
    assert now["d"] == now["e"] != first["a"]
    assert changes.splits == 1 and changes.new == 1
    split = hub.execute(
        "SELECT person_key, other_person_key, identity_records FROM hub.person_key_events "
        "WHERE event = 'split'"
    ).fetchall()
    assert split == [(first["a"], now["d"], 2)]


def test_a_person_whose_every_record_is_gone_leaves_the_saved_keys(hub, caplog):
    # Saved by what moved: the rows of a retired key are deleted, the rest stay as they were.
    first, _ = run(hub, "ab", "c", "d")
    with caplog.at_level(logging.WARNING, logger="pipelines.linkage.person_keys"):
        second, changes = run(hub, "ab", "d", day=2)
    assert not caplog.records
    assert second == {i: first[i] for i in "abd"} and changes.retired == 1


def test_a_retired_key_is_never_issued_again(hub):
    # {a, b} is keyed from "a"; "a" then leaves and later comes back on its own: the key
    # derived from "a" stays with b's person, and a's new person gets a different key.
    first, _ = run(hub, "abz")
    second, _ = run(hub, "a", "bz", day=2)
    assert second["b"] == first["a"] and second["a"] != first["a"]
    third, _ = run(hub, "abz", day=3)  # merge again: one key survives, the other is retired
    fourth, _ = run(hub, "a", "bz", day=4)
    issued = [
        k for (k,) in hub.execute("SELECT person_key FROM hub.person_key_register").fetchall()
    ]
    assert len(issued) == len(set(issued))
    assert fourth["b"] == third["b"]


def test_carry_forward_prefers_the_largest_overlap():
    previous = pl.DataFrame({"identity_id": list("abcde"), "person_key": ["K1"] * 2 + ["K2"] * 3})
    keys, events = carry_forward(clusters("ab", "cde"), previous, {"K1", "K2"})
    assert keyed(keys) == {"a": "K1", "b": "K1", "c": "K2", "d": "K2", "e": "K2"}
    assert events == []
    keys, events = carry_forward(clusters("abc", "de"), previous, {"K1", "K2"})
    # c moved from K2's person to K1's: K1 keeps {a,b,c}, K2 keeps {d,e}; a split of K2 is recorded
    assert keyed(keys)["c"] == "K1" and keyed(keys)["d"] == "K2"
    assert [e[0] for e in events] == ["split"]


def _history(seed: int, people: int = 60, moved: float = 1.0):
    """A random month-to-month history: previous keys, and this month's clusters that keep,
    merge, split and add people, with some first identity ids whose key was issued before.
    ``moved`` scales the share of identity records that leave, merge or move (1: half of them)."""
    import random

    from tests.linkage.greedy_person_keys import greedy_carry_forward

    rng = random.Random(seed)
    ids = [f"id{n:03d}" for n in range(people)]
    before = {i: f"g{rng.randrange(people // 3)}" for i in ids if rng.random() < 0.8}
    previous_clusters = pl.DataFrame(
        {"identity_id": list(before), "cluster_id": list(before.values())}
    )
    previous, _ = greedy_carry_forward(previous_clusters, None, set())
    now = {}
    for i in ids + [f"new{n}" for n in range(people // 5)]:
        roll, group = rng.random(), before.get(i, f"s{i}")
        if roll < 0.1 * moved:
            continue  # withdrawn or gone: a key may lose every record and retire
        if roll < 1 - 0.5 * moved:
            now[i] = group  # the same person
        elif roll < 1 - 0.3 * moved:
            now[i] = (
                f"joined{sum(map(ord, group)) % (people // 6)}"  # whole persons merged together
            )
        elif roll < 1 - 0.1 * moved:
            now[i] = f"m{rng.randrange(people // 4)}"  # records moved between persons
        else:
            now[i] = f"s{i}"  # split off alone
    issued = set(previous["person_key"]) | {new_key(i) for i in rng.sample(sorted(now), 5)}
    return (
        pl.DataFrame({"identity_id": list(now), "cluster_id": list(now.values())}),
        previous,
        issued,
    )


@pytest.mark.parametrize("seed", range(12))
def test_set_based_keys_equal_the_one_at_a_time_greedy(seed):
    # The keys and events are exactly those of the Python code they replaced (issue 24).
    from tests.linkage.greedy_person_keys import greedy_carry_forward

    now, previous, issued = _history(seed)
    for prev, known in ((previous, issued), (None, set()), (None, issued)):
        keys, events = carry_forward(now, prev, known)
        want_keys, want_events = greedy_carry_forward(now, prev, known)
        assert keyed(keys) == keyed(want_keys)
        assert events == want_events


@pytest.mark.parametrize("seed", range(8))
def test_a_quiet_month_keeps_the_keys_events_and_counts_of_the_one_at_a_time_greedy(
    seed, hub, caplog
):
    # Most clusters are exactly a previous person, and are given its key without being ranked
    # (person_keys.py); the keys and events are still the greedy's, and the counts of changed
    # keys and persons, taken from the carry-forward's tables, are those of the keys themselves.
    from tests.linkage.greedy_person_keys import greedy_carry_forward

    now, previous, issued = _history(seed, people=120, moved=0.1)
    want_keys, want_events = greedy_carry_forward(now, previous, issued)
    keys, events = carry_forward(now, previous, issued)
    assert keyed(keys) == keyed(want_keys)
    assert events == want_events
    hub.register("previous_keys", previous.to_arrow())
    hub.execute("CREATE TABLE hub.person_keys AS SELECT identity_id, person_key FROM previous_keys")
    hub.executemany(
        "INSERT INTO hub.person_key_register VALUES (?, ?, NULL, NULL)",
        [(k, dt.datetime(2026, 9, 1)) for k in sorted(issued)],
    )
    changes = stage_person_keys(hub, now, now=dt.datetime(2026, 10, 1))
    staged = dict(hub.execute(f"SELECT identity_id, person_key FROM {STAGED_KEYS}").fetchall())
    assert staged == keyed(want_keys)
    before = keyed(previous)
    seen = [i for i in staged if i in before]
    assert sum(before[i] == staged[i] for i in seen) > 0.8 * len(seen)  # a quiet month
    assert changes.persons == len(set(staged.values()))
    assert changes.identity_records_with_changed_key == sum(
        i in before and before[i] != k for i, k in staged.items()
    )
    assert (changes.new, changes.merges, changes.splits) == tuple(
        sum(e[0] == kind for e in want_events) for kind in ("new", "merge", "split")
    )
    # Saved by what moved (the rows of keys that did not stay together), not rewritten whole:
    # the saved keys are still exactly the staged ones.
    with caplog.at_level(logging.WARNING, logger="pipelines.linkage.person_keys"):
        promote_person_keys(hub)
    assert not caplog.records
    saved = dict(hub.execute("SELECT identity_id, person_key FROM hub.person_keys").fetchall())
    assert saved == keyed(want_keys)
