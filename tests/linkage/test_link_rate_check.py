"""The link-rate rule of the linkage check compares like with like (issue 17): a school term's new
rows, linking as that dataset's rows always have, pass; a partner whose new records link to nothing,
and a model that suddenly links records it kept apart last run, fail, naming the dataset."""

import datetime as dt
import json

import duckdb
import pytest

from pipelines.core.warehouse_schema import migrate
from pipelines.linkage.accepted_changes import AcceptedChange
from pipelines.linkage.qa import (
    CheckOutcome,
    RateComparison,
    check_linkage,
    link_rate_comparisons,
    linkage_qa,
    previous_link_rate,
    recent_new_records,
    record_linkage_run,
    write_qa_report,
)

STAGED = "hub.person_keys_staged"


def keys(con, table: str, persons: list[list[str]]) -> None:
    """``table`` (identity_id, person_key) for persons given as lists of identity ids."""
    con.execute(f"CREATE OR REPLACE TABLE {table} (identity_id VARCHAR, person_key VARCHAR)")
    con.executemany(
        f"INSERT INTO {table} VALUES (?, ?)",
        [(i, f"PK{n}") for n, members in enumerate(persons) for i in members],
    )


def records(con, persons: list[list[str]]) -> None:
    """This run's hub.record_identity and hub.person_records; an id is '<dataset>:<n>'."""
    ids = [i for members in persons for i in members]
    con.execute(
        "CREATE OR REPLACE TABLE hub.record_identity (dataset VARCHAR, identity_id VARCHAR)"
    )
    con.executemany(
        "INSERT INTO hub.record_identity VALUES (?, ?)", [(i.split(":")[0], i) for i in ids]
    )
    con.execute(
        "CREATE OR REPLACE TABLE hub.person_records (unique_id VARCHAR, partner_id VARCHAR)"
    )
    con.executemany(
        "INSERT INTO hub.person_records VALUES (?, ?)", [(i, i.split(":")[0]) for i in ids]
    )


def ids(dataset: str, start: int, stop: int) -> list[str]:
    return [f"{dataset}:{n}" for n in range(start, stop)]


# Last run: 400 GP registrations, 240 of them with a pupil's school record and 50 with a VCS
# enrolment (72.5% linked); 300 school records, 60 of them alone (80% linked); 100 VCS enrolments,
# half with a GP registration (50%).
GP, SCHOOL, VCS = ids("gp", 0, 400), ids("school", 0, 300), ids("vcs", 0, 100)
LAST_RUN = (
    [[GP[n], SCHOOL[n]] for n in range(240)]
    + [[GP[n], VCS[n - 240]] for n in range(240, 290)]
    + [[g] for g in GP[290:]]
    + [[s] for s in SCHOOL[240:]]
    + [[v] for v in VCS[50:]]
)


@pytest.fixture
def con():
    con = duckdb.connect()
    migrate(con, dt.datetime(2026, 10, 1))  # the hub's tables, hub.linkage_runs among them
    records(con, LAST_RUN)
    keys(con, "hub.person_keys", LAST_RUN)
    record_linkage_run(con, linkage_qa(con), None, check_passed=True)
    return con


def check(con, this_run: list[list[str]], accepted=()):
    records(con, this_run)
    keys(con, STAGED, this_run)
    qa = linkage_qa(con, STAGED)
    comparisons = link_rate_comparisons(con, STAGED)
    return qa, check_linkage(qa, previous_link_rate(con), 40, 0.05, accepted, comparisons)


def test_a_term_start_whose_new_rows_link_as_the_school_rows_did_passes(con):
    # A new term: a row per pupil, 400 of them; 320 join a pupil's GP registration (80%, the
    # school dataset's usual rate), 80 are pupils seen nowhere else.
    new_rows = ids("school", 300, 700)
    with_gp = [
        [*members, new_rows[n]] if n < 240 else members for n, members in enumerate(LAST_RUN)
    ]
    this_run = (
        with_gp
        + [[GP[290 + n], new_rows[240 + n]] for n in range(80)]
        + [[s] for s in new_rows[320:]]
    )
    # LAST_RUN's singleton GP registrations 290..369 now each hold a new school row too
    this_run = [m for m in this_run if m not in [[g] for g in GP[290:370]]]
    qa, outcome = check(con, this_run)
    # the overall rate jumps (the mix changed), which the old overall rule failed on
    assert qa.link_rate - previous_link_rate(con) > 0.05
    assert outcome.passed, outcome.problems
    assert (
        "dataset school: 400 identity records new this run link at 80.0%"
        in (outcome.metadata["link_rates_compared"])
    )


def test_a_months_changed_registrations_linking_to_the_people_they_were_pass(con):
    # A month's GP delta: 90 new identity records, 88 of them people it knew who moved or changed
    # name (linked to their earlier registration), 2 new arrivals: 98% linked against 72.5%.
    new = ids("gp", 400, 490)
    this_run = [[*m, new[n]] if n < 88 else m for n, m in enumerate(LAST_RUN)]
    _, outcome = check(con, this_run + [[g] for g in new[88:]])
    assert outcome.passed, outcome.problems


def test_a_partner_whose_new_records_link_to_nothing_fails_naming_the_dataset(con):
    # The VCS partner's new enrolments carry tokens made with a changed linkage key: 120 new
    # identity records, none linked, where half of its records linked last run.
    this_run = LAST_RUN + [[v] for v in ids("vcs", 100, 220)]
    qa, outcome = check(con, this_run)
    assert not outcome.passed
    (problem,) = outcome.problems
    assert "dataset vcs: 120 identity records new this run link at 0.0%, against 50.0%" in problem
    assert "dataset gp" not in problem and "dataset school" not in problem
    assert "accept-change" in problem
    assert "vcs:" not in problem.replace("dataset vcs:", "")  # names the dataset, no identity id


def test_the_qa_report_shows_each_datasets_rates_and_which_moved(con, tmp_path):
    qa, outcome = check(con, LAST_RUN + [[v] for v in ids("vcs", 100, 220)])
    page = write_qa_report(tmp_path, qa, None, None, outcome, 0.9, "2026-11-01").read_text()
    section = page.split('id="link-rates">')[1].split("</div>")[0]
    assert "<td>vcs</td><td>new this run</td><td>120</td><td>50.0%" in section
    assert section.count("moved") == 1 and "PK" not in section and "vcs:" not in section


def test_a_model_that_suddenly_links_records_it_kept_apart_fails(con):
    # Same records, no new ones; 100 of the GP registrations that were alone are now merged in
    # pairs (a broken model or a threshold set too low): GP records linked 72.5% -> 97.5%.
    alone = GP[290:390]
    this_run = [m for m in LAST_RUN if not (len(m) == 1 and m[0] in alone)]
    this_run += [[alone[n], alone[n + 1]] for n in range(0, 100, 2)]
    qa, outcome = check(con, this_run)
    assert not outcome.passed
    assert (
        "dataset gp: 400 identity records seen in the last passing run link at 97.5%"
        in (outcome.problems[0])
    )
    assert "against 72.5% (the same records last run)" in outcome.problems[0]


def test_a_small_datasets_new_records_are_allowed_their_chance_spread(con):
    # 12 new VCS enrolments, 4 of them linked (33% against 50%): 17 points, but three standard
    # errors of a share of 12 records are 43 points, so this is not evidence of a fault.
    new = ids("vcs", 100, 112)
    this_run = LAST_RUN + [[GP[290 + n], new[n]] for n in range(4)] + [[v] for v in new[4:]]
    this_run = [m for m in this_run if m not in [[g] for g in GP[290:294]]]
    _, outcome = check(con, this_run)
    assert outcome.passed, outcome.problems


def test_a_month_with_a_few_new_records_passes_unless_chance_cannot_explain_them(con):
    # A hub sees this every month: a council dataset whose records link at 97.5% brings one new
    # identity record (a child new to the area) that links to nothing. Three standard errors of a
    # share of one record called that a fault: a 10k place's 60-month history failed 12 times so.
    # It happens one month in 40; ten new records alone is a changed key.
    csc = ids("csc", 0, 40)
    singles = [[g] for g in GP[290:329]]
    last = [m for m in LAST_RUN if m not in singles]
    last += [[g[0], csc[n]] for n, g in enumerate(singles)] + [[csc[39]]]
    records(con, last)
    keys(con, "hub.person_keys", last)
    record_linkage_run(con, linkage_qa(con), None, check_passed=True)
    one, ten = (check(con, last + [[c] for c in ids("csc", 40, 40 + n)])[1] for n in (1, 10))
    assert one.passed, one.problems
    assert not ten.passed
    assert "dataset csc: 10 identity records new this run link at 0.0%, against 97.5%" in "".join(
        ten.problems
    )


def test_new_records_linking_less_fail_only_past_three_standard_errors_chance(con):
    # The VCS records linked at 50% last run. Nine new ones all alone happens by chance once in
    # 2**9 = 512 runs: more often than three standard errors' one-sided tail (once in 741), so it
    # passes; ten alone, once in 1,024 runs, fails, naming the dataset.
    nine = LAST_RUN + [[v] for v in ids("vcs", 100, 109)]
    _, outcome = check(con, nine)
    assert outcome.passed, outcome.problems
    ten = LAST_RUN + [[v] for v in ids("vcs", 100, 110)]
    _, outcome = check(con, ten)
    assert not outcome.passed
    (problem,) = outcome.problems
    assert "dataset vcs: 10 identity records new this run link at 0.0%, against 50.0%" in problem
    assert "less than once in 741 runs" in problem


def test_an_accepted_change_still_lets_a_measured_move_pass(con):
    this_run = LAST_RUN + [[v] for v in ids("vcs", 100, 220)]
    qa, failed = check(con, this_run)
    assert not failed.passed
    measured = AcceptedChange("a1", "user:ops", "VCS rekeyed, re-sending", 0.6625, qa.link_rate)
    _, outcome = check(con, this_run, [measured])
    assert outcome.passed and outcome.accepted == ("a1",)


def test_the_first_run_has_nothing_to_compare_with():
    con = duckdb.connect()
    migrate(con, dt.datetime(2026, 10, 1))  # the hub's tables, hub.linkage_runs among them
    records(con, LAST_RUN)
    keys(con, STAGED, LAST_RUN)
    assert link_rate_comparisons(con, STAGED) is None


def test_a_datasets_first_extract_is_judged_by_how_far_it_moves_the_place(con):
    # A new partner's first extract has no rate of its own: 40 enrolments linking at 90% pass (they
    # move the place's rate by about 1 point); 400 that link to nothing (a key made wrongly from
    # the start) move it by 25 points and fail, naming the dataset.
    linked = ids("homeless", 0, 40)
    small = [[*m, linked[n]] if n < 36 else m for n, m in enumerate(LAST_RUN)]
    _, outcome = check(con, small + [[h] for h in linked[36:]])
    assert outcome.passed, outcome.problems
    _, outcome = check(con, LAST_RUN + [[h] for h in ids("homeless", 0, 400)])
    assert not outcome.passed
    assert (
        "dataset homeless: 400 identity records new this run in its first extract"
        in (outcome.problems[0])
    )


def test_a_partner_whose_records_went_missing_fails_naming_the_datasets_left_unlinked(con):
    # The school's records did not land this run: the GP registrations that linked to a pupil's
    # record now link to nothing (a bad month's input, not a change of the place).
    this_run = [[m for m in members if not m.startswith("school:")] for members in LAST_RUN]
    _, outcome = check(con, [m for m in this_run if m])
    assert not outcome.passed
    assert (
        "dataset gp: 400 identity records seen in the last passing run link at 12.5%, "
        in (outcome.problems[0])
    )


# An aged place (issue 24's 100k x 60-month history): a council dataset whose records link at
# 97.5% (39 of 40 children's social care records share a person with a GP registration) brings
# new records each month, and by now most of them are people new to the place, who link less.
CSC = ids("csc", 0, 40)
GP_ALONE = [[g] for g in GP[290:329]]
AGED = [m for m in LAST_RUN if m not in GP_ALONE] + [[g[0], CSC[n]] for n, g in enumerate(GP_ALONE)]
AGED += [[CSC[39]]]
FREE_GP = GP[329:400]  # 71 GP registrations alone, for new records that link


def aged(con, *history: tuple[int, int, bool]) -> None:
    """The aged place as the last passing run, after earlier runs (oldest first) that recorded the
    counts the check recorded: (csc identity records new that run, linked, passed)."""
    con.execute("DELETE FROM hub.linkage_runs")  # this history replaces the fixture's run
    records(con, AGED)
    keys(con, "hub.person_keys", AGED)
    qa = linkage_qa(con)
    for n, (new, linked, passed) in enumerate(history):
        month = RateComparison("csc", "new", new, 0.975, linked / new, "the dataset's records")
        outcome = CheckOutcome(passed, comparisons=(month,))
        at = dt.datetime(2026, 1, 1) + dt.timedelta(days=n)
        record_linkage_run(con, qa, None, check_passed=passed, now=at, outcome=outcome)
    record_linkage_run(con, qa, None, check_passed=True, now=dt.datetime(2026, 9, 1))


def month(new: int, linked: int) -> list[list[str]]:
    """This run: the aged place and ``new`` csc records, ``linked`` of them with a GP registration."""
    arrivals = ids("csc", 40, 40 + new)
    with_gp = [[FREE_GP[n], arrivals[n]] for n in range(linked)]
    alone = [[g] for g in FREE_GP[linked:]] + [[c] for c in arrivals[linked:]]
    return [m for m in AGED if len(m) > 1 or not m[0].startswith("gp:")] + with_gp + alone


def test_new_records_linking_as_recent_months_new_records_did_pass(con):
    # 60 new records linking at 73% against 97.5% for the dataset's records: a fall that chance
    # cannot explain, which the check called a fault 7 times in 60 months. Its new records of the
    # recent passing runs linked at 75%, so this month is what the place now looks like.
    aged(con, (100, 76, True), (120, 89, True))
    _, outcome = check(con, month(60, 44))
    assert outcome.passed, outcome.problems
    assert (
        "dataset csc: 60 identity records new this run link at 73.3%, against 97.5% (the "
        "dataset's records last run) and 75.0% (its 220 new records of the last 3 passing runs)"
        in outcome.metadata["link_rates_compared"]
    )


def test_a_changed_key_still_fails_against_recent_months_new_records(con):
    # The same history; this month's 60 new records link to nothing (a changed linkage key).
    aged(con, (100, 76, True), (120, 89, True))
    _, outcome = check(con, month(60, 0))
    assert not outcome.passed
    (problem,) = outcome.problems
    assert (
        "dataset csc: 60 identity records new this run link at 0.0%, against 97.5% (the "
        "dataset's records last run) and 75.0% (its 220 new records of the last 3 passing runs)"
        in problem
    )
    # a fall from the recent new records that chance explains is no fault, even with few records
    _, outcome = check(con, month(8, 4))
    assert outcome.passed, outcome.problems


def test_recent_new_records_are_pooled_newest_first_and_only_from_passing_runs(con):
    # A failed run's new records are never a baseline; the newest passing runs are pooled until
    # they hold 200 records; a dataset with fewer than 50 recent new records has no such baseline.
    aged(con, (300, 150, True), (120, 90, True), (90, 0, False), (100, 75, True))
    assert recent_new_records(con) == {"csc": (220, 165, 3)}  # the last run brought none
    aged(con, (30, 23, True))
    assert recent_new_records(con) == {}
    _, outcome = check(con, month(60, 44))  # against 97.5% alone, as before: a fault
    assert not outcome.passed


def test_each_run_records_its_datasets_new_record_counts_and_nothing_else(con):
    # What a run records is the next runs' baseline: per dataset, its new identity records and how
    # many linked; counts only, no identity id or key.
    aged(con)
    _, outcome = check(con, month(60, 58))
    assert outcome.passed, outcome.problems
    after = dt.datetime(2026, 10, 1)  # after aged()'s runs
    record_linkage_run(con, linkage_qa(con, STAGED), None, True, now=after, outcome=outcome)
    (recorded,) = con.execute(
        "SELECT new_records FROM hub.linkage_runs ORDER BY rowid DESC LIMIT 1"
    ).fetchall()[0]
    assert json.loads(recorded) == {"csc": [60, 58]}
    assert recent_new_records(con) == {"csc": (60, 58, 1)}


def test_a_warehouse_from_before_the_new_records_column_compares_as_before(con):
    # A warehouse an earlier placelink wrote, opened by a tool that did not migrate it: no run has
    # recorded its new records, so the check compares them with the dataset's records alone.
    aged(con, (100, 76, True), (120, 89, True))
    con.execute("ALTER TABLE hub.linkage_runs DROP COLUMN new_records")
    assert recent_new_records(con) == {}
    _, outcome = check(con, month(60, 44))
    assert not outcome.passed
    assert "against 97.5% (the dataset's records last run) (a fall" in outcome.problems[0]
