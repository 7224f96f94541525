"""The quality worker process: the same verdicts as validating in ingest's own process."""

import datetime as dt
import logging
import pickle
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.core.rejection import ExtractRejected, Rejection
from pipelines.quality import worker
from pipelines.quality.validate import validate_delivery
from tests.quality.receiving import receive_then_read

NOW = dt.datetime(2026, 11, 2, 6, 0, tzinfo=dt.UTC)


def _spoiled(small_place) -> pa.Table:
    table = pq.read_table(small_place.extract("ae_attendances").extract_path)
    modes = table.column("arrival_mode").to_pylist()
    modes[3] = "helicopter"
    tokens = table.column("record_token").to_pylist()
    tokens[9] = tokens[8]
    table = table.set_column(
        table.schema.get_field_index("arrival_mode"), "arrival_mode", pa.array(modes)
    )
    return table.set_column(
        table.schema.get_field_index("record_token"), "record_token", pa.array(tokens)
    )


def _results(verdict):
    return [
        (r.rule.name, r.passed, r.unexpected_count, r.checked_rows, r.sample_rows, r.observed)
        for r in verdict.results
    ]


def test_the_worker_gives_the_same_verdict_as_this_process(small_place):
    table, contract = _spoiled(small_place), small_place.contracts["nhs-acute-mental-health"]
    here = validate_delivery(table, contract, "ae_attendances", "nhs-ae.plx", NOW.date(), 500)
    there = worker.submit(
        validate_delivery, table, contract, "ae_attendances", "nhs-ae.plx", NOW.date(), 500
    ).result()
    assert here.outcome == there.outcome == "held"
    assert _results(there) == _results(here)
    assert there.message() == here.message()


def test_the_worker_reads_the_decrypted_parquet_into_the_same_verdict(small_place):
    table, contract = _spoiled(small_place), small_place.contracts["nhs-acute-mental-health"]
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    here = validate_delivery(table, contract, "ae_attendances", "nhs-ae.plx", NOW.date(), 500)
    # The table given beside the bytes is only for validating here if the worker is gone: an
    # empty one shows the verdict came from the bytes.
    there = worker.submit(
        validate_delivery,
        table.slice(0, 0),
        contract,
        "ae_attendances",
        "nhs-ae.plx",
        NOW.date(),
        500,
        parquet=sink.getvalue().to_pybytes(),
    ).result()
    assert here.outcome == there.outcome == "held"
    assert _results(there) == _results(here)


def test_a_rejection_raised_in_the_worker_arrives_whole():
    rejection = Rejection(
        "quality", "quality rules that placelink can run", "an unknown rule", "fix it", "c v1"
    )
    again = pickle.loads(pickle.dumps(ExtractRejected(rejection)))
    assert isinstance(again, ExtractRejected) and again.rejection == rejection


def _receive(settings):
    receipts, waits = receive_then_read(
        settings,
        NOW,
        lambda con: con.execute(
            "SELECT file_name, outcome, seconds, waited_seconds FROM hub.quality_deliveries "
            "ORDER BY file_name"
        ).fetchall(),
    )
    return {name: r.status for name, r in receipts.items()}, waits


def test_without_a_worker_process_ingest_validates_itself(
    small_place, tmp_path, monkeypatch, caplog
):
    datasets = ["ae_attendances", "family_support_enrolments"]
    with_worker = _receive(small_place.stage_hub(tmp_path / "with", datasets=datasets))

    def no_processes(*args, **kwargs):
        raise OSError("no processes here")

    monkeypatch.setattr(worker, "_pool", None)
    monkeypatch.setattr(worker, "ProcessPoolExecutor", no_processes)
    with caplog.at_level(logging.WARNING, logger="pipelines.quality.worker"):
        without = _receive(small_place.stage_hub(tmp_path / "without", datasets=datasets))
    assert "quality checks run in the ingest process: no worker process (OSError)" in caplog.text
    assert without[0] == with_worker[0] and set(with_worker[0].values()) == {"accepted"}
    assert [w[:2] for w in without[1]] == [w[:2] for w in with_worker[1]]
    # Each delivery records how long validating took and how long ingest waited for it.
    assert all(seconds > 0 and waited is not None for _, _, seconds, waited in with_worker[1])


def test_a_worker_that_dies_is_replaced_by_validating_here(small_place, tmp_path):
    settings = small_place.stage_hub(tmp_path, datasets=["ae_attendances"])
    pool = worker._worker()
    for process in list(pool._processes.values()):
        process.kill()
        process.join()
    statuses, waits = _receive(settings)
    assert set(statuses.values()) == {"accepted"} and [w[1] for w in waits] == ["passed"]
    assert worker._worker() is not pool  # a new worker for the next run


def _start_the_worker_and_return() -> str:
    import multiprocessing.util

    # What a spawned child does after importing its main module (placelink's CLI imports ingest):
    # it forgets every finalizer registered so far.
    multiprocessing.util._finalizer_registry.clear()
    worker.start()
    worker.submit(
        validate_delivery, pa.table({"x": [1]}), None, "none", "none", NOW.date(), None
    )  # fails in the worker: fine
    return "done"


def test_a_process_that_used_the_worker_exits_cleanly_even_as_a_multiprocessing_child():
    # Dagster's multiprocess executor runs ingest in such a child; it must not hang at exit.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        assert child.submit(_start_the_worker_and_return).result(timeout=120) == "done"
        process = next(iter(child._processes.values()))
    process.join(timeout=120)
    assert process.exitcode == 0


def test_the_worker_imports_great_expectations_without_what_it_never_uses():
    """Spark, SQL and the KL-divergence expectation's scipy.stats and altair are not loaded
    (half of GX's start-up); a deferred module still works when something does use it."""
    script = """
import sys
from pipelines.quality.worker import _lean_imports, _warm_up
_lean_imports()
_warm_up()
loaded = [m for m in ("pyspark", "sqlalchemy", "scipy.stats._stats_py", "altair.vegalite") if sys.modules.get(m)]
from scipy import stats
import altair
import scipy.stats.distributions as distributions
print(loaded, round(float(stats.entropy([0.5, 0.5], [0.9, 0.1])), 6), altair.Chart.__name__,
      distributions.norm.cdf(0))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "0.510826", "Chart", "0.5"]


def _ended(pid: int, within: float) -> bool:
    """Whether process ``pid`` ends within ``within`` seconds (woken by its end, not by polling)."""
    import os
    import select

    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([handle], [], [], within)[0])
    finally:
        os.close(handle)


def test_killing_ingest_s_process_ends_its_quality_worker(tmp_path):
    # The process that runs ingest starts the worker, then is killed as the OOM killer or kill -9
    # would kill it: the worker must not be left behind holding memory and the run's output.
    child = (
        "import os, signal, sys\n"
        "from pipelines.quality import worker\n"
        "pid = worker._worker().submit(os.getpid).result()\n"
        "open(sys.argv[1], 'w').write(str(pid))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    found = tmp_path / "worker.pid"
    with open(
        tmp_path / "output.log", "w"
    ) as output:  # not a pipe: a left-behind worker would hold it
        done = subprocess.run(
            [sys.executable, "-c", child, str(found)],
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    assert done.returncode == -9
    pid = int(found.read_text())
    try:
        assert _ended(pid, within=60), "the quality worker outlived the process that started it"
    finally:
        if not _ended(pid, within=0):
            import os
            import signal

            os.kill(pid, signal.SIGKILL)


def test_dictionary_encoded_text_gets_the_verdict_of_plain_text(small_place):
    """Partners write repeated text as Parquet dictionaries, and the worker keeps it so (a
    tenth of the memory at 3M people): a bad token among the dictionary's values is still
    found, on the right row, as in the plain table."""
    table, contract = _spoiled(small_place), small_place.contracts["nhs-acute-mental-health"]
    given = table.column("given_name_token").to_pylist()
    given[5] = "not a token"
    table = table.set_column(
        table.schema.get_field_index("given_name_token"), "given_name_token", pa.array(given)
    )
    encoded = pa.table(
        [
            c.dictionary_encode() if pa.types.is_string(c.type) and n != "record_token" else c
            for n, c in zip(table.column_names, table.columns)
        ],
        names=table.column_names,
    )
    sink = pa.BufferOutputStream()
    pq.write_table(encoded, sink)
    here = validate_delivery(table, contract, "ae_attendances", "nhs-ae.plx", NOW.date(), 500)
    as_read = worker._validate(
        validate_delivery,
        sink.getvalue().to_pybytes(),
        contract,
        "ae_attendances",
        "nhs-ae.plx",
        NOW.date(),
        500,
    )
    dictionaries = validate_delivery(
        encoded, contract, "ae_attendances", "nhs-ae.plx", NOW.date(), 500
    )
    assert _results(as_read) == _results(dictionaries) == _results(here)
    failed = {r.rule.name: r for r in here.failed}
    assert failed["given_name_token: token format"].sample_rows == (6,)
    assert {"arrival_mode: allowed values", "record_token: unique"} <= set(failed)


def test_rules_on_the_column_names_see_every_column_in_the_delivery_s_order():
    # A contract's custom GX rules on the column names: each sees the delivery's columns as
    # sent, and a rule that a named column exists is run, and fails, when it is missing.
    from pipelines.quality.gx_suite import run_rules
    from pipelines.quality.rules import ERROR, Rule

    table = pa.table(
        {
            "record_token": ["a" * 43, "b" * 43, None],
            "sex": pa.array(["F", None, "M"]).dictionary_encode(),
            "visits": [1, 2, 3],
        }
    )
    rules = [
        Rule("exists", ERROR, "", "expect_column_to_exist", {"column": "visits"}),
        Rule("missing", ERROR, "", "expect_column_to_exist", {"column": "uprn_token"}),
        Rule(
            "in order",
            ERROR,
            "",
            "expect_table_columns_to_match_ordered_list",
            {"column_list": ["record_token", "sex", "visits"]},
        ),
        Rule(
            "reversed",
            ERROR,
            "",
            "expect_table_columns_to_match_ordered_list",
            {"column_list": ["visits", "sex", "record_token"]},
        ),
        Rule("three", ERROR, "", "expect_table_column_count_to_equal", {"value": 3}),
        Rule("rows", ERROR, "", "expect_table_row_count_to_equal", {"value": 3}),
    ]
    passed = {r.rule.name: r.passed for r in run_rules(table, rules, "visits")}
    assert passed == {
        "exists": True,
        "missing": False,
        "in order": True,
        "reversed": False,
        "three": True,
        "rows": True,
    }


# A contract written for GX before 1.9 may still give its condition as pandas text (deprecated).
@pytest.mark.filterwarnings("ignore:.*(row_condition|condition_parser).*:DeprecationWarning")
def test_a_rule_with_a_row_condition_reads_the_columns_of_its_condition():
    # A contract's custom rule may hold on some rows only ("visits of men at least 2"): its
    # condition reads a column the rule does not name, with or without nulls in either.
    from pipelines.quality.gx_suite import run_rules
    from pipelines.quality.rules import ERROR, Rule

    men = {"type": "comparison", "column": {"name": "sex"}, "operator": "==", "parameter": "M"}
    for visits in ([1, 1, 3, 0], [1, None, 3, 0]):
        table = pa.table(
            {
                "record_token": ["a" * 43, "b" * 43, "c" * 43, "d" * 43],
                "sex": ["F", "F", "M", "M"],
                "visits": pa.array(visits, pa.int64()),
            }
        )
        rules = [
            Rule(
                "men",
                ERROR,
                "",
                "expect_column_values_to_be_between",
                {"column": "visits", "min_value": 0, "row_condition": men},
            ),
            Rule(
                "men 2",
                ERROR,
                "",
                "expect_column_values_to_be_between",
                {"column": "visits", "min_value": 2, "row_condition": men},
            ),
            Rule(
                "women",
                ERROR,
                "",
                "expect_column_values_to_be_between",
                {
                    "column": "visits",
                    "max_value": 1,
                    "row_condition": 'sex=="F"',
                    "condition_parser": "pandas",
                },
            ),
        ]
        results = {r.rule.name: r for r in run_rules(table, rules, "visits")}
        assert [results[n].passed for n in ("men", "men 2", "women")] == [True, False, True]
        assert results["men 2"].error is None and results["men 2"].sample_rows == (4,)
