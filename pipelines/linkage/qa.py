"""Linkage QA: what a reviewer looks at before trusting this month's person keys.

:func:`linkage_qa` summarises ``hub.person_keys`` (cluster sizes, match rates between
partners, records linked to nobody), :func:`record_linkage_run` keeps the summary of
every run in ``hub.linkage_runs`` so the next run can be compared with it,
:func:`check_linkage` says whether the run looks implausible (a giant cluster is the
sign of over-linking; a sharp move of the link rate, of a model or input gone wrong),
and :func:`write_qa_report` writes ``reports/linkage_qa.html``. Counts only: no token,
identifier or key appears in the report.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from pipelines.core.clock import Clock
from pipelines.core.stages import stage
from pipelines.core.warehouse import qualified_table_exists, table_exists
from pipelines.linkage.person_keys import KeyChanges
from pipelines.linkage.placeholders import Placeholders

if TYPE_CHECKING:
    from pipelines.linkage.accepted_changes import AcceptedChange

REPORT_FILE = "linkage_qa.html"
ACCEPT_COMMAND = 'placelink linkage accept-change --reason "..."'


@dataclass(frozen=True)
class LinkageQA:
    identity_records: int
    persons: int
    link_rate: float  # share of identity records that share a person with another identity record
    max_cluster_size: int  # identity records in the largest person
    cluster_sizes: list[tuple[int, int]]  # (identity records per person, persons)
    partner_match: list[
        tuple[str, str, int, float]
    ]  # (partner, other partner, records, share linked)
    unlinked: list[tuple[str, int, int]]  # (partner, identity records, linked to nobody)

    def unlinked_share(self, partner: str) -> float:
        for name, total, alone in self.unlinked:
            if name == partner:
                return alone / total if total else 0.0
        raise KeyError(partner)


# A dataset's new records fail the check when they link less than its records did, and chance
# would give so few linked less often than this: the one-sided tail of three standard errors, as
# the other comparisons allow (RateComparison.tolerance).
NEW_RECORDS_CHANCE = 0.00135
# A dataset's new records are also compared with its new records of recent passing runs: newest
# run first, until they number RECENT_NEW_RECORDS, looking back at most RECENT_RUNS runs; fewer
# than RECENT_MIN_RECORDS are too few to say what a month's new records usually do.
RECENT_NEW_RECORDS = 200
RECENT_RUNS = 12
RECENT_MIN_RECORDS = 50


@dataclass(frozen=True)
class RateComparison:
    """One like-for-like comparison of a dataset's link rate between this run and the last run that
    passed (issue 17): the same identity records, or a dataset's new records against its own earlier
    rate, so that a run whose mix of records changed (a school term adds a row per pupil) is not
    compared with a place that held a different mix.

    ``group`` is ``"seen"``: the dataset's identity records the last passing run held too, linked now
    to another record that run held, against linked then (the same records; a new record cannot
    move it, a partner's records gone missing or a model linking differently do); ``"new"``: the
    dataset's identity records new this run, linked to any other record, against the share of the
    dataset's records linked last run and (``recent``) against its new records of recent passing
    runs (only a fall from both counts, see :meth:`moved`); or ``"first"``: a
    dataset the last passing run did not hold, which has no rate of its own, so it is judged by how
    far it moves the place's rate (``share``: its part of this run's identity records), as the
    overall check always did.
    Counts and rates only."""

    dataset: str
    group: str  # "seen", "new" or "first"
    records: int
    before: float
    now: float
    baseline: str  # what ``before`` is, in words
    share: float = 1.0  # "first": the dataset's share of this run's identity records
    # "new": (identity records, linked, runs) of the dataset's new records in its recent passing
    # runs (RECENT_NEW_RECORDS), or None when they were too few or the hub has none recorded
    recent: tuple[int, int, int] | None = None

    @property
    def linked(self) -> int:
        """How many of ``records`` linked (``now`` is their share)."""
        return round(self.now * self.records)

    def tolerance(self, max_change: float) -> float:
        """``max_change``, or three standard errors of a share of ``records`` records at the
        earlier rate if that is wider: a dataset's 40 new records may move 10 points by chance. A
        dataset's first extract may differ from the place by ``max_change`` of the place's rate."""
        if self.group == "first":
            return max_change / self.share if self.share else math.inf
        spread = math.sqrt(self.before * (1 - self.before) / self.records) if self.records else 1.0
        return max(max_change, 3 * spread)

    def chance(self) -> float:
        """How often a dataset's new records would link as rarely as these did by chance alone:
        the binomial probability of at most this many of ``records`` linked, each at the earlier
        rate. Exact at any size: the normal approximation behind :meth:`tolerance` fails on the
        few new records a small dataset brings in a month (one record of a dataset that linked
        at 97.5%, left alone, was "beyond three standard errors", though it happens one month in
        forty; a 10k place's 60-month history failed the check 12 times that way)."""
        from scipy.stats import binom  # only the check needs it; scipy is slow to import

        return float(binom.cdf(self.linked, self.records, self.before))

    def recent_chance(self) -> float:
        """How often chance alone would give these new records so few links if they linked as
        the dataset's recent new records did: Fisher's exact test, one-sided, of the two counts
        (both are samples: a month's few dozen new records are no exact rate)."""
        from scipy.stats import fisher_exact

        assert self.recent is not None
        records, linked, _ = self.recent
        table = [[self.linked, self.records - self.linked], [linked, records - linked]]
        return float(fisher_exact(table, alternative="less").pvalue)

    def moved(self, max_change: float) -> bool:
        """Beyond :meth:`tolerance` either way; a known dataset's new records only if they link
        less, by more than ``max_change`` and less often than :data:`NEW_RECORDS_CHANCE` by chance,
        than both its records did last run and (``recent``) its new records of recent runs did.

        A dataset's new identity records are mostly people it knew whose details changed (a move,
        a new name), so they link more than its records did on average, and that is no fault
        (over-linking moves the records seen before, and the largest person); new records that
        link less than its records did are records whose tokens match nothing. But as a place
        ages, more of a month's new records are people new to it, who link less than the
        dataset's records ever did (a 100k place's school attendance: 73% against 98% by month 60,
        failing 7 of 60 months), and a term start's new rows are another mix again; so the fall
        must also be one from what the dataset's new records of recent runs did. A changed key
        or a broken field falls from both."""
        if self.group == "new":
            return (
                self.before - self.now > max_change
                and self.chance() < NEW_RECORDS_CHANCE
                and (self.recent is None or self._fell_from_recent(max_change))
            )
        return abs(self.now - self.before) > self.tolerance(max_change)

    def _fell_from_recent(self, max_change: float) -> bool:
        assert self.recent is not None
        records, linked, _ = self.recent
        return (
            linked / records - self.now > max_change and self.recent_chance() < NEW_RECORDS_CHANCE
        )

    def why_moved(self, max_change: float) -> str:
        if self.group == "new":
            return f"a fall that chance gives less than once in {1 / NEW_RECORDS_CHANCE:,.0f} runs"
        return f"more than {self.tolerance(max_change) * 100:.1f} points"

    def describe(self) -> str:
        which = {
            "seen": "seen in the last passing run",
            "new": "new this run",
            "first": f"new this run in its first extract ({self.share:.1%} of the place's)",
        }[self.group]
        return (
            f"dataset {self.dataset}: {self.records:,} identity records {which} link at "
            f"{self.now:.1%}, against {self.before:.1%} ({self.baseline})"
            + (f" and {recent}" if (recent := self.recent_baseline()) else "")
        )

    def recent_baseline(self) -> str | None:
        """The recent new records' rate, in words (None without them)."""
        if self.recent is None:
            return None
        records, linked, runs = self.recent
        return (
            f"{linked / records:.1%} (its {records:,} new records of the last "
            f"{runs} passing run{'s' if runs > 1 else ''})"
        )


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    problems: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # ids of the accepted changes (pipelines.linkage.accepted_changes) the check used
    accepted: tuple[str, ...] = ()
    # the like-for-like link rates the check compared (for the QA report)
    comparisons: tuple[RateComparison, ...] = ()


def linkage_qa(con: duckdb.DuckDBPyConnection, keys_table: str = "hub.person_keys") -> LinkageQA:
    """Summarise ``keys_table`` (``hub.person_keys``, or this run's staged keys) joined to
    ``hub.person_records`` (for the partner)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE qa_members AS
        SELECT k.person_key, r.partner_id, count(*) OVER (PARTITION BY k.person_key) AS size
        FROM {keys_table} k JOIN hub.person_records r ON r.unique_id = k.identity_id
    """)
    total, persons, linked, largest = con.execute("""
        SELECT count(*), count(DISTINCT person_key), count(*) FILTER (WHERE size > 1), coalesce(max(size), 0)
        FROM qa_members
    """).fetchall()[0]
    sizes = con.execute("""
        SELECT size, count(DISTINCT person_key) FROM qa_members GROUP BY size ORDER BY size
    """).fetchall()
    # Each record joined to the other partners of its person only (not to every partner, then
    # left-joined): pairs of partners no person shares count 0.
    partner_match = con.execute("""
        WITH partners_of AS (SELECT DISTINCT person_key, partner_id FROM qa_members),
             totals AS (SELECT partner_id, count(*) AS n FROM qa_members GROUP BY partner_id),
             shared AS (SELECT a.partner_id AS a, p.partner_id AS b, count(*) AS linked
                        FROM qa_members a JOIN partners_of p
                          ON p.person_key = a.person_key AND p.partner_id <> a.partner_id
                        GROUP BY ALL)
        SELECT t.partner_id, b.partner_id, t.n, coalesce(s.linked, 0) / t.n
        FROM totals t CROSS JOIN totals b
        LEFT JOIN shared s ON s.a = t.partner_id AND s.b = b.partner_id
        WHERE t.partner_id <> b.partner_id ORDER BY 1, 2
    """).fetchall()
    unlinked = con.execute("""
        SELECT partner_id, count(*), count(*) FILTER (WHERE size = 1)
        FROM qa_members GROUP BY partner_id ORDER BY partner_id
    """).fetchall()
    con.execute("DROP TABLE qa_members")
    return LinkageQA(
        int(total),
        int(persons),
        linked / total if total else 0.0,
        int(largest),
        [(int(s), int(n)) for s, n in sizes],
        [(a, b, int(n), float(r)) for a, b, n, r in partner_match],
        [(p, int(n), int(u)) for p, n, u in unlinked],
    )


def record_linkage_run(
    con: duckdb.DuckDBPyConnection,
    qa: LinkageQA,
    changes: KeyChanges | None,
    check_passed: bool | None = None,
    now: dt.datetime | None = None,
    outcome: CheckOutcome | None = None,
    scoring: str | None = None,
) -> None:
    """Append this run to ``hub.linkage_runs``. ``scoring``: ``incremental`` (only the pairs
    touching changed identity records were scored, pipelines/linkage/incremental.py) or
    ``full relink: <why>``."""
    now = (now or Clock.from_env().now()).replace(tzinfo=None)
    problems = json.dumps(outcome.problems) if outcome is not None else None
    accepted = json.dumps(list(outcome.accepted)) if outcome is not None else None
    previous = outcome.metadata.get("previous_link_rate") if outcome is not None else None
    # counts per dataset: the baseline of later runs' new records (recent_new_records)
    new_records = (
        json.dumps(
            {c.dataset: [c.records, c.linked] for c in outcome.comparisons if c.group == "new"}
        )
        if outcome is not None
        else None
    )
    con.execute(
        """INSERT INTO hub.linkage_runs (run_at, identity_records, persons, link_rate, max_cluster_size,
                       keys_new, keys_merged, keys_split, identity_records_with_changed_key, check_passed,
                       previous_link_rate, problems, accepted_changes, scoring, new_records)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            now,
            qa.identity_records,
            qa.persons,
            qa.link_rate,
            qa.max_cluster_size,
            changes.new if changes else None,
            changes.merges if changes else None,
            changes.splits if changes else None,
            changes.identity_records_with_changed_key if changes else None,
            check_passed,
            previous,
            problems,
            accepted,
            scoring,
            new_records,
        ],
    )


@dataclass(frozen=True)
class RecordedRun:
    """What the latest linkage run's check found, as recorded (the blocking asset check reports it)."""

    passed: bool
    problems: list[str]
    metadata: dict[str, Any]


def latest_run(con: duckdb.DuckDBPyConnection) -> RecordedRun | None:
    """The newest row of ``hub.linkage_runs`` (None if linkage never ran)."""
    if not table_exists(con, "hub", "linkage_runs"):
        return None
    rows = con.execute("""SELECT check_passed, problems, link_rate, max_cluster_size, previous_link_rate,
                                 accepted_changes
                          FROM hub.linkage_runs ORDER BY run_at DESC, rowid DESC LIMIT 1""").fetchall()
    if not rows:
        return None
    passed, problems, rate, largest, previous, accepted = rows[0]
    metadata = {
        "max_cluster_size": largest,
        "link_rate": round(rate, 4),
        "previous_link_rate": None if previous is None else round(previous, 4),
    }
    if accepted and json.loads(accepted):
        metadata["accepted_changes"] = ", ".join(json.loads(accepted))
    return RecordedRun(
        bool(passed) if passed is not None else True, json.loads(problems or "[]"), metadata
    )


def previous_link_rate(
    con: duckdb.DuckDBPyConnection, *, skip_latest: bool = False
) -> float | None:
    """The link rate of the latest recorded run that passed the check (None if none did).

    ``skip_latest`` leaves out the newest run (the one being checked, when it has
    already been recorded). Runs that failed are never the baseline, so re-running a
    failed run does not quietly accept its link rate: fix the cause, or, for a change that is
    known (a partner's first extract, a dataset deleted by retention), accept it with
    `placelink linkage accept-change`; the next run then passes and becomes the baseline.
    """
    try:
        rows = con.execute(f"""
            SELECT link_rate FROM (SELECT * FROM hub.linkage_runs ORDER BY run_at DESC, rowid DESC
                                   OFFSET {int(skip_latest)})
            WHERE coalesce(check_passed, true) ORDER BY run_at DESC LIMIT 1
        """).fetchall()
    except duckdb.CatalogException:
        return None
    return float(rows[0][0]) if rows else None


def link_rate_comparisons(
    con: duckdb.DuckDBPyConnection,
    keys_table: str,
    saved_keys: str = "hub.person_keys",
) -> list[RateComparison] | None:
    """This run's link rates (``keys_table``, the staged keys) against the last passing run's
    (``saved_keys``: only a passing run saves keys), like for like, per dataset of
    ``hub.record_identity`` (see :class:`RateComparison`). None when there is nothing to compare
    with (the first run) or no record says its dataset."""
    if not (
        qualified_table_exists(con, saved_keys)
        and qualified_table_exists(con, "hub.record_identity")
        and qualified_table_exists(con, keys_table)
    ):
        return None
    rows = con.execute(f"""
        WITH now_keys AS (
                 SELECT identity_id, count(*) OVER (PARTITION BY person_key) > 1 AS linked
                 FROM {keys_table}),
             before_keys AS (
                 SELECT identity_id, count(*) OVER (PARTITION BY person_key) > 1 AS linked
                 FROM {saved_keys}),
             -- the records both runs hold: linked to another record of the last run now (a new
             -- record cannot move it; a record of the last run gone missing can), and then
             seen AS (
                 SELECT n.identity_id,
                        count(*) OVER (PARTITION BY n.person_key) > 1 AS linked_now,
                        b.linked AS linked_before
                 FROM {keys_table} n JOIN before_keys b USING (identity_id)),
             -- (per_dataset joins them to now_keys: joining here too was a second pass over
             -- every landed record)
             datasets AS (SELECT DISTINCT dataset, identity_id FROM hub.record_identity),
             place AS (SELECT avg(CAST(linked AS DOUBLE)) AS rate FROM before_keys),
             per_dataset AS (
                 SELECT d.dataset,
                        count(s.identity_id) AS seen,
                        avg(CAST(s.linked_before AS DOUBLE)) AS seen_before,
                        avg(CAST(s.linked_now AS DOUBLE)) AS seen_now,
                        count(*) FILTER (WHERE b.identity_id IS NULL) AS new,
                        avg(CAST(n.linked AS DOUBLE)) FILTER (WHERE b.identity_id IS NULL) AS new_now,
                        avg(CAST(b.linked AS DOUBLE)) AS dataset_before
                 FROM datasets d
                 JOIN now_keys n USING (identity_id)
                 LEFT JOIN before_keys b USING (identity_id)
                 LEFT JOIN seen s USING (identity_id)
                 GROUP BY d.dataset)
        SELECT p.*, place.rate, (SELECT count(*) FROM now_keys) FROM per_dataset p, place
        ORDER BY p.dataset
    """).fetchall()
    recent = recent_new_records(con)
    out = []
    for dataset, seen, seen_before, seen_now, new, new_now, dataset_before, place, total in rows:
        if seen:
            out.append(
                RateComparison(
                    dataset, "seen", seen, seen_before, seen_now, "the same records last run"
                )
            )
        if new and dataset_before is not None:
            out.append(
                RateComparison(
                    dataset,
                    "new",
                    new,
                    dataset_before,
                    new_now,
                    "the dataset's records last run",
                    recent=recent.get(dataset),
                )
            )
        elif new and place is not None:
            out.append(
                RateComparison(
                    dataset,
                    "first",
                    new,
                    place,
                    new_now,
                    "the place's records last run",
                    new / total,
                )
            )
    return out


def recent_new_records(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, int, int]]:
    """Per dataset, (identity records, linked, runs looked at) of its new records in the recent
    runs that passed (``hub.linkage_runs.new_records``): newest run first, until they number
    :data:`RECENT_NEW_RECORDS`, looking back at most :data:`RECENT_RUNS` runs. A dataset with
    fewer than :data:`RECENT_MIN_RECORDS` is left out (its new records are then compared with its
    records last run only). Runs that failed the check are never a baseline."""
    if not qualified_table_exists(con, "hub.linkage_runs"):
        return {}
    try:
        rows = con.execute(f"""
            SELECT new_records FROM hub.linkage_runs WHERE coalesce(check_passed, true)
            ORDER BY run_at DESC, rowid DESC LIMIT {RECENT_RUNS}
        """).fetchall()
    except duckdb.BinderException:
        # a warehouse not yet migrated to version 4 (a tool that opened it without migrating):
        # no run has recorded its new records, so there is no such baseline yet
        return {}
    pooled: dict[str, list[int]] = {}
    for looked, (counts,) in enumerate(rows, start=1):
        for dataset, (records, linked) in json.loads(counts or "{}").items():
            pool = pooled.setdefault(dataset, [0, 0, 0])
            if pool[0] < RECENT_NEW_RECORDS:
                pool[0] += int(records)
                pool[1] += int(linked)
                pool[2] = looked
    return {d: (n, k, runs) for d, (n, k, runs) in pooled.items() if n >= RECENT_MIN_RECORDS}


def check_linkage(
    qa: LinkageQA,
    previous_rate: float | None,
    max_cluster_size: int,
    max_link_rate_change: float,
    accepted: Sequence[AcceptedChange] = (),
    comparisons: Sequence[RateComparison] | None = None,
) -> CheckOutcome:
    """Fail when a person holds implausibly many identity records, or the link rate moved
    more than ``max_link_rate_change`` (absolute) from the previous run.

    ``comparisons`` (:func:`link_rate_comparisons`): the link rate is compared like for like, per
    dataset, and the check fails naming each dataset whose rate moved beyond
    :meth:`RateComparison.tolerance`; a run whose mix of records changed (a school term's new rows,
    linking as that dataset's records do) passes. Without them (no record says its dataset) the
    overall rate is compared with ``previous_rate``.

    ``accepted``: changes an operator (or retention) accepted for this run
    (pipelines.linkage.accepted_changes). One that covers this run's link rate (it measured a
    rate within ``max_link_rate_change`` of this one, or measured none) lets the move pass; the
    check's outcome names it. Over-linking is never accepted this way. A run that passes uses up
    every acceptance given (``CheckOutcome.accepted``); one that fails leaves them for the next."""
    problems = []
    used: tuple[str, ...] = ()
    if qa.max_cluster_size > max_cluster_size:
        giant = sum(n for size, n in qa.cluster_sizes if size > max_cluster_size)
        problems.append(
            f"over-linking: {giant} person(s) hold more than {max_cluster_size} identity records "
            f"(largest: {qa.max_cluster_size}). Look at reports/{REPORT_FILE}; usually a shared "
            "placeholder value (a default date of birth, a dummy NHS number) or a threshold set "
            "too low (PLACELINK_LINKAGE_THRESHOLD). Retrain with `placelink run --retrain` after fixing."
        )
    covering = [a for a in accepted if a.covers(qa.link_rate, max_link_rate_change)]
    waived = False
    if comparisons is not None:
        moved = [c for c in comparisons if c.moved(max_link_rate_change)]
        if moved and covering:
            waived = True
        elif moved:
            problems.append(
                "link rate moved since the last run that passed: "
                + "; ".join(f"{c.describe()} ({c.why_moved(max_link_rate_change)})" for c in moved)
                + ". Records seen before that link differently point at records gone missing (a partner's "
                "extract not landed), the model or the threshold; a dataset's new records that link to "
                "nothing, at its extract (a changed linkage key, a broken field). Look at "
                f"reports/{REPORT_FILE} before publishing; no saved person key "
                f"changed. If the change is known and right, accept it with `{ACCEPT_COMMAND}` and run again."
            )
    elif previous_rate is not None and abs(qa.link_rate - previous_rate) > max_link_rate_change:
        if covering:
            waived = True
        else:
            problems.append(
                f"link rate moved from {previous_rate:.1%} to {qa.link_rate:.1%} since the last run that passed "
                f"(more than {max_link_rate_change:.0%} points). Check which extract changed "
                f"(reports/{REPORT_FILE}, match rates by partner) before publishing; no saved person key "
                f"changed. If the change is known and right, accept it with `{ACCEPT_COMMAND}` and run again."
            )
    metadata = {
        "max_cluster_size": qa.max_cluster_size,
        "link_rate": round(qa.link_rate, 4),
        "previous_link_rate": None if previous_rate is None else round(previous_rate, 4),
        "plausible_cluster_size": max_cluster_size,
        "max_link_rate_change": max_link_rate_change,
    }
    if comparisons:
        metadata["link_rates_compared"] = "; ".join(c.describe() for c in comparisons)
    if waived:
        metadata["accepted_change"] = "; ".join(f"{a.reason} ({a.actor})" for a in covering)
    if not problems:
        # A run that passes uses up every pending acceptance, whether or not it needed one: an
        # acceptance is for the next run, never a standing waiver for a later, different move.
        used = tuple(a.id for a in accepted)
    return CheckOutcome(not problems, problems, metadata, used, tuple(comparisons or ()))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bar(share: float) -> str:
    return (
        f'<span class="bar" style="width:{max(0.0, min(1.0, share)) * 200:.0f}px"></span> '
        f"{share:.1%}"
    )


def _chart_fragment(spec: dict[str, Any] | None) -> str:
    if not spec:
        return "<p>No match-weights chart (no model).</p>"
    # Splink's own chart renderer, with vega inlined so the page works offline
    # (the hub need not reach a CDN).
    from splink.internals.html_utils import chart_html

    return chart_html(spec, inline=True, fullhtml=False)


def _placeholder_section(placeholders: list[Placeholders]) -> str:
    if not placeholders:
        return "<p>No field holds a value shared by implausibly many records.</p>"
    rows = [
        [
            html.escape(p.field.replace("_", " ")),
            f"{p.values:,}",
            f"{p.records:,}",
            _bar(p.share),
            html.escape(", ".join(f"{partner}: {n:,}" for partner, n in p.by_partner)),
        ]
        for p in placeholders
    ]
    return (
        "<p>Values shared by far more identity records than the field's values usually are "
        '(a system\'s value for "not known"). They are treated as missing for training, blocking and '
        "scoring, so they neither link strangers nor teach the model that the field means little. "
        "Ask the partner what the value stands for.</p>"
        + _table(
            [
                "field",
                "values",
                "identity records holding one",
                "share of those with the field",
                "by partner",
            ],
            rows,
        )
    )


def _comparisons_section(outcome: CheckOutcome, max_change: float | None) -> str:
    if not outcome.comparisons:
        return "<p>No earlier passing run to compare with.</p>"
    rows = [
        [
            html.escape(c.dataset),
            {"seen": "seen last run", "new": "new this run", "first": "first extract"}[c.group],
            f"{c.records:,}",
            f"{c.before:.1%} ({html.escape(c.baseline)})"
            + (f"; {html.escape(recent)}" if (recent := c.recent_baseline()) else ""),
            f"{c.now:.1%}",
            "" if max_change is None else ("moved" if c.moved(max_change) else ""),
        ]
        for c in outcome.comparisons
    ]
    return (
        "<p>Each dataset's identity records, like with like: those the last passing run held, "
        "linked now to another record it held, against then; those new this run against the "
        "dataset's records last run and, where the hub has enough of them, its new records of "
        "recent passing runs (a fall from both is what moves them).</p>"
        + _table(
            ["dataset", "which records", "identity records", "linked then", "linked now", ""], rows
        )
    )


def _training_section(training: dict[str, Any] | None) -> str:
    if not training:
        return ""
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in training.get("warnings", []))
    return (
        f"<p>Trained on the fields present; EM training rules: "
        f"{html.escape('; '.join(training.get('rules', [])) or 'none')}. "
        f"Threshold: {html.escape(str(training.get('threshold_method', '')))}.</p>"
        + (f"<ul>{warnings}</ul>" if warnings else "")
        + (
            f"<p>Scoring: {html.escape(str(training['scoring']))}.</p>"
            if training.get("scoring")
            else ""
        )
    )


@stage("reports")
def write_qa_report(
    folder: Path,
    qa: LinkageQA,
    match_weights_chart: dict[str, Any] | None,
    changes: KeyChanges | None,
    outcome: CheckOutcome,
    threshold: float,
    model_trained_at: str,
    placeholders: list[Placeholders] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``reports/linkage_qa.html`` (counts and shares only).

    ``placeholders``: the fields whose placeholder values were treated as missing;
    ``training``: the model's EM rules, warnings and threshold method (labels only)."""
    folder.mkdir(parents=True, exist_ok=True)
    largest = max((n for _, n in qa.cluster_sizes), default=1)
    size_rows = [
        [str(size), f"{n:,}", f'<span class="bar" style="width:{n / largest * 200:.0f}px"></span>']
        for size, n in qa.cluster_sizes
    ]
    partners = sorted({p for p, *_ in qa.unlinked})
    rates = {(a, b): r for a, b, _, r in qa.partner_match}
    match_rows = [
        [html.escape(a)] + [("—" if a == b else _bar(rates.get((a, b), 0.0))) for b in partners]
        for a in partners
    ]
    unlinked_rows = [
        [html.escape(p), f"{n:,}", f"{u:,}", _bar(u / n if n else 0.0)] for p, n, u in qa.unlinked
    ]
    status = (
        "<p class='pass'>Linkage check passed.</p>"
        if outcome.passed
        else "<div class='fail'><p>Linkage check FAILED:</p><ul>"
        + "".join(f"<li>{html.escape(p)}</li>" for p in outcome.problems)
        + "</ul></div>"
    )
    key_lines = (
        "<p>First run: every person got a new key.</p>"
        if changes is None or changes.carried == 0
        else f"<p>{changes.carried:,} keys carried forward, {changes.new:,} new, {changes.merges:,} merges, "
        f"{changes.splits:,} splits; {changes.identity_records_with_changed_key:,} identity records "
        "changed key since the last run.</p>"
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>placelink linkage QA</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 70rem; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25rem 0.75rem; text-align: left; }}
.bar {{ display: inline-block; height: 0.8rem; background: #4c78a8; vertical-align: middle; }}
.pass {{ color: #1a7f37; font-weight: bold; }} .fail {{ color: #b42318; font-weight: bold; }}
</style></head><body>
<h1>Linkage QA</h1>
{status}
<p id="summary">{qa.identity_records:,} identity records linked into {qa.persons:,} persons at match
probability &ge; {threshold}; {
        qa.link_rate:.1%} of identity records share a person with another record;
largest person: {qa.max_cluster_size} identity records. Model trained {
        html.escape(model_trained_at)
    }.</p>
{key_lines}
<h2>Link rates compared with the last passing run</h2>
<div id="link-rates">{
        _comparisons_section(outcome, outcome.metadata.get("max_link_rate_change"))
    }</div>
<h2>Placeholder values</h2>
<div id="placeholders">{_placeholder_section(placeholders or [])}</div>
<h2>Match weights of the model</h2>
<div id="training">{_training_section(training)}</div>
<p>Splink's chart: how much each comparison level adds to or takes from the evidence that two records
are the same person.</p>
<div id="match-weights">{_chart_fragment(match_weights_chart)}</div>
<h2>Persons by number of identity records</h2>
<div id="cluster-sizes">{_table(["identity records", "persons", ""], size_rows)}</div>
<h2>Match rates between partners</h2>
<p>Row partner's identity records that belong to a person the column partner also holds.</p>
<div id="partner-match">{_table(["partner"] + partners, match_rows)}</div>
<h2>Records linked to nobody</h2>
<div id="unlinked">{
        _table(["partner", "identity records", "linked to nobody", "share"], unlinked_rows)
    }</div>
<script type="application/json" id="qa-data">{
        json.dumps({"link_rate": qa.link_rate, "max_cluster_size": qa.max_cluster_size})
    }</script>
</body></html>
"""
    path = folder / REPORT_FILE
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
