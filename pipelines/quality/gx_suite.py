"""Run quality rules with Great Expectations 1.x on a pandas frame (handed over via Arrow).

Great Expectations is slow to import and initialise, so the ephemeral context and its one
pandas data asset are made once per process. Most of the rest of its cost is
per expectation and per metric, not per row, and copies of the delivery: see
:func:`run_rules` for how both are kept down. Results are reduced to counts
and *row numbers*: GX's own result carries sample values, which may be tokens, so they
never leave this module.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.quality.rules import Rule

SAMPLE_ROWS = 5
_lock = threading.Lock()
_state: dict = {}


@dataclass(frozen=True)
class RuleResult:
    """What one rule found in one delivery: never a value, only counts and row numbers."""

    rule: Rule
    passed: bool
    unexpected_count: int | None = None
    sample_rows: tuple[int, ...] = ()  # 1 = first data row of the delivery
    observed: str | None = None  # aggregate only: a row count or a column type
    error: str | None = None  # the rule could not be evaluated (e.g. wrong type)
    checked_rows: int = 0

    def summary(self) -> str:
        if self.passed:
            return f"{self.rule.name}: passed"
        if self.error:
            return f"{self.rule.name}: could not be checked ({self.error})"
        if self.unexpected_count is not None and self.rule.on == "rows":
            rows = ""
            if self.sample_rows:
                more = ", ..." if self.unexpected_count > len(self.sample_rows) else ""
                rows = f" (rows {', '.join(map(str, self.sample_rows))}{more})"
            return f"{self.rule.name}: {self.unexpected_count:,} of {self.checked_rows:,} rows fail{rows}"
        found = f"found {self.observed}; " if self.observed else ""
        return f"{self.rule.name}: failed ({found}expected {self.rule.description})"


def _gx():
    """Import Great Expectations quietly: no usage statistics (no network), no progress bars."""
    # Left in the environment on purpose (issue 19): GX reads the variable itself, at import and
    # whenever a context leaves analytics_enabled unset, so it must be set before GX is imported,
    # in the process that validates (the quality worker, pipelines/quality/worker.py). It is GX's
    # switch, not placelink configuration: no placelink setting is read from or written to it.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    with warnings.catch_warnings():
        # GX imports pyspark when it is installed (the Spark linkage backend brings it), and
        # pyspark warns on every import that it does not support pandas 3 yet: not our concern.
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
        )
        import great_expectations as gx
    return gx


def _batch_definition():
    """The one GX batch definition every delivery is validated through (made once per process:
    each data asset or batch definition added to a context re-serialises its whole config)."""
    with _lock:
        if "definition" not in _state:
            gx = _gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.execution_engine import pandas_execution_engine

            # GX fingerprints every in-memory batch by hashing all of its values (an MD5 of
            # pandas' row hashes), only to label the batch; we never use the label, and on a
            # wide extract the hash costs more than every check together. Off for our batches.
            pandas_execution_engine.HASH_THRESHOLD = 0
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(
                globally=False, metric_calculations=False
            )
            asset = context.data_sources.add_pandas("placelink_deliveries").add_dataframe_asset(
                "delivery"
            )
            _state["context"] = context
            _state["definition"] = asset.add_batch_definition_whole_dataframe("delivery")
        return _state["definition"]


def build_suite(name: str, rules: list[Rule]):
    """A GX ``ExpectationSuite`` for ``rules``; each expectation's ``meta`` names its rule."""
    gx = _gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for index, rule in enumerate(rules):
        config = ExpectationConfiguration(
            type=rule.expectation,
            kwargs=rule.kwargs,
            meta={"rule_index": index, "rule": rule.name, "severity": rule.severity},
        )
        expectations.append(config.to_domain_obj())
    return gx.ExpectationSuite(name=name, expectations=expectations)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas in the shapes GX checks fast and correctly: dates as datetime64[ns]
    and integers as int64 (or float64 with nulls), which GX compares vectorised (other dtypes
    fall back to a Python loop per value); text in pandas' Arrow-backed string dtype (fast
    null and regex checks); Bloom filters stay Arrow binary, and become hex text (GX measures
    lengths of text) only where a check needs them: see :func:`_for_gx`. Dictionary-encoded
    columns are decoded first, so a column is checked the same however it was read."""
    table = pa.table([_plain(c) for c in table.columns], names=table.column_names)
    frame = table.to_pandas(date_as_object=False, types_mapper=_pandas_dtype)
    for name, dtype in frame.dtypes.items():
        kind = table.schema.field(name).type
        if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
            try:
                frame[name] = frame[name].astype("datetime64[ns]")
            except pd.errors.OutOfBoundsDatetime:
                # A date before 1677 or after 2262 (year 9999 as "not known", a typo) does not fit
                # nanoseconds: kept in its own unit, still compared vectorised, so the column's
                # date rules name its rows instead of the check failing.
                pass
        elif pa.types.is_integer(kind) and pd.api.types.is_integer_dtype(dtype):
            frame[name] = frame[name].astype("int64")
    return frame


# Text as pandas' Arrow-backed string dtype, which pandas 2 (installed with GX 1.24) does not
# choose by itself: its default, one Python object per value, made GX's null checks scan every
# object and kept text columns from being stacked (see _stackable), so each token column's
# pattern was matched on every row by a Python loop (docs/benchmarks.md, ingest).
_TEXT = pd.StringDtype("pyarrow")


def _pandas_dtype(kind: pa.DataType):
    if pa.types.is_binary(kind):
        return pd.ArrowDtype(kind)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _TEXT
    return None


# The two hex digits of each byte value, as one 2-byte unit in memory order (digits[0] first).
_HEX_PAIRS = np.frombuffer(b"".join(f"{b:02x}".encode() for b in range(256)), dtype=np.uint16)


def hex_text(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Binary values as lower-case hex text (nulls stay null), without a Python call per value."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = pa.concat_arrays([values.cast(pa.large_binary())])  # 64-bit offsets, starting at row 0
    validity, offsets, data = values.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64, count=len(values) + 1)
    data = (
        np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
        if data is not None
        else np.empty(0, dtype=np.uint8)
    )
    return pa.Array.from_buffers(
        pa.large_string(),
        len(values),
        [validity, pa.py_buffer((offsets - offsets[0]) * 2), pa.py_buffer(_HEX_PAIRS[data])],
        null_count=values.null_count,
    )


def _columns(rule: Rule) -> tuple[str, ...]:
    kwargs = rule.kwargs
    named = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    named += list(kwargs.get("column_list") or [])
    return tuple(dict.fromkeys(named))


_TYPE_RULE = "expect_column_values_to_be_in_type_list"
_UNIQUE_RULE = "expect_column_values_to_be_unique"
# A passing result of these says more than "passed": a value we keep (a column type, a row
# count, a share of filled rows), so they always run with the full result format.
_KEEPS_OBSERVED = frozenset(
    {
        _TYPE_RULE,
        "expect_table_row_count_to_be_between",
        "expect_column_proportion_of_non_null_values_to_be_between",
    }
)
# Per-value checks whose arguments do not depend on the column: several columns with the same
# arguments are checked as one column of all their values (e.g. the 14 token columns).
_STACKABLE = frozenset(
    {"expect_column_values_to_match_regex", "expect_column_value_lengths_to_equal"}
)
_STACKED = "values of several columns"
_PASS_OR_FAIL = {"result_format": "BOOLEAN_ONLY"}
_DETAILED = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_ROWS}


class _Delivery:
    """One delivery's columns as Arrow, made into pandas only where a GX check reads them.

    Validating the whole delivery as one pandas frame held every column decoded at once: at
    3M people the largest delivery (5.4M rows) took 9.1 GB in the worker, while most of its
    columns are tokens whose only per-row checks (a pattern, a length) are judged on their
    distinct values (:func:`_stacked`). So text stays dictionary-encoded as read from Parquet,
    and each GX run gets a frame of just the columns its rules name, decoded as
    :func:`to_pandas` decodes them; the verdicts are those of the whole frame.
    """

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.columns = table.column_names
        self.rows = table.num_rows

    def kind(self, name: str) -> pa.DataType:
        kind = self.table.schema.field(name).type
        return kind.value_type if pa.types.is_dictionary(kind) else kind

    def arrow(self, name: str) -> pa.ChunkedArray:
        """The column with dictionary-encoded values decoded."""
        return _plain(self.table.column(name))

    def frame(self, names) -> pd.DataFrame:
        """The rows of the columns ``names`` as GX checks them; no columns: the rows only."""
        names = list(dict.fromkeys(names))
        if not names:
            return pd.DataFrame(index=pd.RangeIndex(self.rows))
        return to_pandas(self.table.select(names))

    def names(self) -> pd.DataFrame:
        """Every column, no rows: what a rule on the column names alone reads."""
        return to_pandas(self.table.schema.empty_table())

    def has_missing(self, name: str) -> bool:
        """Whether pandas would find a missing value in the column (a null, or a float NaN)."""
        column = self.table.column(name)
        if column.null_count:
            return True
        return pa.types.is_floating(self.kind(name)) and bool(
            pc.any(pc.is_nan(column)).as_py() or False
        )

    def filled(self, name: str) -> int:
        """Rows with a value, as pandas' ``notna`` counts them."""
        column = self.table.column(name)
        missing = column.null_count
        if pa.types.is_floating(self.kind(name)):
            missing += pc.sum(pc.is_nan(column)).as_py() or 0
        return self.rows - missing


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


# Rules that read only the delivery's column names (checked on no rows, and run even when a
# column they name is missing: that is what they check), or only its row count.
_NAMES_ONLY = frozenset(
    {
        "expect_column_to_exist",
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
    }
)
_ROWS_ONLY = frozenset({"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"})


def run_rules(table: pa.Table, rules: list[Rule], dataset: str) -> list[RuleResult]:
    """Validate the delivery ``table`` against ``rules``; one result per rule that could run, in order.

    Two passes, so the common case (everything passes) asks GX for the least work. First,
    every rule whose passing result is just "passed" runs for pass or fail only
    (``BOOLEAN_ONLY``), with same-argument value checks on several columns run as one.
    Then the rules that failed, and those whose result carries more (``mostly``, a column
    type, a row count), run with counts and sample row numbers: a failed rule's result is
    exactly what a detailed run of that rule alone would give. Row numbers are positions in
    the delivery (1 = its first data row).
    """
    delivery = _Delivery(table)
    profile = column_profile(delivery)
    # A missing column fails the columns rule; its own rules cannot be run.
    runnable = [
        r
        for r in rules
        if r.on == "columns"
        or r.expectation in _NAMES_ONLY
        or all(c in delivery.columns for c in _columns(r))
    ]
    definition = _batch_definition()
    quick = [
        i
        for i, r in enumerate(runnable)
        if r.expectation not in _KEEPS_OBSERVED and "mostly" not in r.kwargs
    ]
    by_index = {}
    for indices, result in _validate(
        definition, dataset, delivery, profile, runnable, quick, _PASS_OR_FAIL, stack=True
    ):
        if result.success:
            map_rule = _is_map(result.expectation_config.type)
            for i in indices:
                by_index[i] = RuleResult(
                    runnable[i], True, 0 if map_rule else None, checked_rows=delivery.rows
                )
    detailed = [i for i in range(len(runnable)) if i not in by_index]
    for (i,), result in _validate(
        definition, dataset, delivery, profile, runnable, detailed, _DETAILED, stack=False
    ):
        by_index[i] = _reduce(runnable[i], result, delivery.rows)
    results = [by_index[i] for i in range(len(runnable))]
    return [_name_columns(r, profile) if r.rule.on == "columns" else r for r in results]


def _validate(
    definition,
    dataset: str,
    delivery: _Delivery,
    profile: pd.DataFrame,
    rules: list[Rule],
    indices: list[int],
    result_format: dict,
    stack: bool,
):
    """Run ``rules[i]`` for ``i`` in ``indices``: one GX validation of the columns the rules
    on columns without nulls name, one per column with nulls (or binary), one per stack of
    columns, one of the column names and one of the column profile; yields (the rule indices a
    GX result stands for, the result). Each frame is made when its run starts and let go after
    it, so at most one is held."""
    calls: dict[tuple, list[tuple[list[int], Rule]]] = {}
    stacks: dict[tuple, list[int]] = {}
    for i in indices:
        rule = rules[i]
        if (
            stack
            and rule.expectation in _STACKABLE
            and "mostly" not in rule.kwargs
            and _stackable(delivery.kind(rule.kwargs["column"]))
        ):
            same = tuple(sorted((k, repr(v)) for k, v in rule.kwargs.items() if k != "column"))
            stacks.setdefault((rule.expectation, same), []).append(i)
        elif rule.on == "columns":
            calls.setdefault(("columns",), []).append(([i], rule))
        elif rule.expectation in _NAMES_ONLY:
            calls.setdefault(("names",), []).append(([i], rule))
        else:
            # GX drops a column's nulls by copying the frame it checks; pandas copies nothing
            # when no row is dropped. So rules on columns without nulls share one frame
            # (one GX run), and a column with nulls gets a frame of its own, as does a binary
            # column (converted to hex for it). A type rule reads the column's dtype (per value
            # only for text): it never needs a frame of its own.
            columns = _columns(rule)
            own = rule.expectation != _TYPE_RULE and any(
                delivery.has_missing(c) or pa.types.is_binary(delivery.kind(c)) for c in columns
            )
            if own and "row_condition" in rule.kwargs:
                columns = tuple(delivery.columns)  # the condition may read any column
            calls.setdefault(("own", *columns) if own else ("shared",), []).append(([i], rule))
    # A column that must be unique has as many distinct values as rows: not worth collecting.
    unique = {
        r.kwargs["column"]
        for r in rules
        if r.expectation == _UNIQUE_RULE and "mostly" not in r.kwargs
    }
    parts = [(key, members) for key, members in calls.items()]
    for members in stacks.values():
        rule = replace(rules[members[0]], kwargs={**rules[members[0]].kwargs, "column": _STACKED})
        parts.append((("stack", *(rules[i].kwargs["column"] for i in members)), [(members, rule)]))
    for key, members in parts:
        part = _part(delivery, profile, key, [rule for _, rule in members], unique)
        suite = build_suite(f"{dataset}_delivery", [rule for _, rule in members])
        part_format = result_format
        if part is profile and "partial_unexpected_count" in result_format:
            # A profile's "rows" are columns, named in full: a warning lists every empty column.
            part_format = {
                **result_format,
                "partial_unexpected_count": max(len(profile), SAMPLE_ROWS),
            }
        validation = definition.get_batch(batch_parameters={"dataframe": part}).validate(
            suite, result_format=part_format
        )
        del part
        for result in validation.results:
            yield members[result.expectation_config.meta["rule_index"]][0], result


def _part(
    delivery: _Delivery, profile: pd.DataFrame, key: tuple, rules: list[Rule], unique: set[str]
) -> pd.DataFrame:
    """The frame one GX run checks (see :func:`_validate` for the kinds of ``key``)."""
    kind, columns = key[0], key[1:]
    if kind == "columns":
        return profile
    if kind == "names":
        return delivery.names()
    if kind == "stack":
        return _stacked(delivery, list(columns), unique)
    if kind == "own":
        return _for_gx(delivery.frame(columns))
    # Shared: the columns its rules name. A rule on the whole table other than its row count
    # (a custom expectation may be one), or with a row condition (which may read any column),
    # reads every column.
    whole = any(
        (not _columns(r) and r.expectation not in _ROWS_ONLY) or "row_condition" in r.kwargs
        for r in rules
    )
    return delivery.frame(delivery.columns if whole else [c for r in rules for c in _columns(r)])


def _binary(column: pd.Series) -> bool:
    return isinstance(column.dtype, pd.ArrowDtype) and pa.types.is_binary(
        column.dtype.pyarrow_dtype
    )


def _stackable(kind: pa.DataType) -> bool:
    """Text or binary (as :func:`to_pandas` keeps them in Arrow): its values can be stacked
    without a Python object each."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)


def _for_gx(part: pd.DataFrame) -> pd.DataFrame:
    """``part`` with its Arrow binary columns (Bloom filters) as hex text, which GX can check."""
    binary = [c for c in part.columns if _binary(part[c])]
    if not binary:
        return part
    return part.assign(
        **{
            c: pa.table({c: hex_text(pa.array(part[c]))}).to_pandas(types_mapper=_pandas_dtype)[c]
            for c in binary
        }
    )


def _stacked(delivery: _Delivery, columns: list[str], unique: set[str]) -> pd.DataFrame:
    """One text column of the distinct non-null values of each of ``columns`` (text, or
    binary as hex); of the ``unique`` columns, every non-null value.

    Both stackable expectations judge each value on its own and skip nulls, so every row
    passes if and only if every distinct value does: the verdict is the same, for about a
    tenth of the values (a column of birth-year tokens has a few dozen). A failure is
    counted and located afterwards on the column's own rows (see :func:`run_rules`).
    """
    values = [
        _every_value(delivery.arrow(c)) if c in unique else _distinct(delivery.table.column(c))
        for c in columns
    ]
    values = [hex_text(v) if pa.types.is_binary(v.type) else v for v in values]  # Bloom filters
    chunks = [
        c.cast(pa.large_string())
        for v in values
        for c in (v.chunks if isinstance(v, pa.ChunkedArray) else [v])
    ]
    return pa.table({_STACKED: pa.chunked_array(chunks, pa.large_string())}).to_pandas(
        types_mapper=_pandas_dtype
    )


def _every_value(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.drop_null() if column.null_count else column


def _distinct(column: pa.ChunkedArray) -> pa.Array:
    """The distinct non-null values of a column; of a dictionary-encoded one, read from the
    entries its rows use (each chunk's dictionary may hold values other chunks use)."""
    if pa.types.is_dictionary(column.type):
        used = [
            chunk.dictionary.take(pc.unique(chunk.indices).drop_null())
            for chunk in column.chunks
            if len(chunk)
        ]
        if not used:
            return pa.array([], column.type.value_type)
        column = pa.chunked_array(used, column.type.value_type)
    return pc.unique(column).drop_null()


@cache
def _is_map(expectation: str) -> bool:
    """Whether a GX expectation counts failing values (its passing result counts 0 of them)."""
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl

    return issubclass(
        get_expectation_impl(expectation),
        (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation),
    )


def column_profile(delivery: _Delivery) -> pd.DataFrame:
    """One row per column of the delivery: its name and how many rows have a value."""
    return pd.DataFrame(
        {
            "column": delivery.columns,
            "values": np.array([delivery.filled(c) for c in delivery.columns], dtype=np.int64),
        }
    )


def _name_columns(result: RuleResult, profile: pd.DataFrame) -> RuleResult:
    """A column-profile result names columns (from its 'row numbers'), not rows."""
    if result.passed:
        return replace(result, checked_rows=len(profile))
    if result.unexpected_count is None:  # a rule on the columns together, such as a sum
        return replace(
            result,
            sample_rows=(),
            checked_rows=len(profile),
            observed="no value in any of these columns",
        )
    named = [profile["column"].iloc[i - 1] for i in result.sample_rows]
    return replace(
        result,
        sample_rows=(),
        checked_rows=len(profile),
        observed=f"{result.unexpected_count} column(s): {', '.join(named)}",
    )


def _reduce(rule: Rule, result, rows: int) -> RuleResult:
    info = result.exception_info or {}
    if info.get("raised_exception"):
        # The message can quote values; keep the exception's class name only.
        last = (str(info.get("exception_traceback") or "").strip().splitlines() or ["error"])[-1]
        kind = last.split(":", 1)[0].strip()[:60] or "error"
        return RuleResult(rule, False, error=f"{kind}; check the column's type", checked_rows=rows)
    r = result.result or {}
    observed = r.get("observed_value")
    if rule.expectation == "expect_table_columns_to_match_set":
        details = (r.get("details") or {}).get("mismatched") or {}
        observed = (
            "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in details.items() if v) or None
        )
    elif rule.expectation in _KEEPS_OBSERVED:
        observed = (
            None
            if observed is None
            else (f"{observed:.1%} filled" if isinstance(observed, float) else str(observed))
        )
    else:
        observed = None  # may be a value (a min, a max): not kept
    indices = r.get("partial_unexpected_index_list") or []
    if rule.on != "columns":
        indices = indices[:SAMPLE_ROWS]
    sample = tuple(int(i) + 1 for i in indices if isinstance(i, (int,)) or hasattr(i, "__int__"))
    return RuleResult(
        rule, bool(result.success), r.get("unexpected_count"), sample, observed, None, rows
    )
