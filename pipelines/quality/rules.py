"""Quality rules for one contract dataset: built from the contract's schema and its ODCS
``quality`` entries, plus the size of the previous accepted delivery.

A rule is plain data (a Great Expectations expectation type and its arguments, a severity
and a sentence a person can read), so rules can be listed, tested and stored without
importing Great Expectations; :mod:`pipelines.quality.gx_suite` turns them into a GX
``ExpectationSuite``.

Severities: ``error`` holds the delivery in quarantine (it never lands, so nothing
downstream sees it); ``warn`` lets it land and records the failure.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from pipelines.core.column_types import (
    YEAR_OF_BIRTH,
    is_bloom,
    is_token,
    is_token_set,
    pandas_dtypes,
)
from pipelines.governance.contracts import Contract, DataItem, Dataset

ERROR = "error"
WARN = "warn"

# First 16 bytes of HMAC-SHA256, lower-case hex. \Z, not $: $ also matches before a final
# newline, and pandas then scans every value for newlines before it can use Arrow's regex.
TOKEN_PATTERN = r"^[0-9a-f]{32}\Z"
# Several tokens, one space between each: a postal code of at most 16 characters (the partner
# kit's limit) and its forms with one character left out are at most 17.
TOKEN_SET_PATTERN = r"^[0-9a-f]{32}(?: [0-9a-f]{32}){0,16}\Z"
BLOOM_BYTES = 32  # 256-bit Bloom filter
EARLIEST_EVENT = dt.date(1990, 1, 1)
EARLIEST_BIRTH_YEAR = 1900
# A delivery outside this band of the previous accepted one (same contract and dataset)
# is most often a truncated or duplicated extract.
ROW_COUNT_BAND = (0.5, 2.0)


@dataclass(frozen=True)
class Rule:
    """One check on a delivery. ``expectation`` is a GX expectation type (snake case)."""

    name: str
    severity: str
    description: str
    expectation: str
    kwargs: dict = field(default_factory=dict, hash=False, compare=False)
    column: str | None = None
    source: str = "contract schema"
    # "rows": checked on the delivery's rows; "columns": on its column profile (one row per
    # column with its count of values), which checks every column in one expectation.
    on: str = "rows"


class QualityRuleError(ValueError):
    """An ODCS quality entry that cannot be turned into a check; names the contract and entry."""


def _severity(value: str | None, default: str = ERROR) -> str:
    if value is None:
        return default
    value = str(value).lower()
    if value in ("error", "critical", "blocker", "high"):
        return ERROR
    if value in ("warn", "warning", "info", "low", "medium"):
        return WARN
    raise QualityRuleError(f"severity '{value}' is not one of error, warning, info")


def schema_rules(dataset: Dataset, today: dt.date) -> list[Rule]:
    """The rules every delivery of ``dataset`` must meet, read from its contract schema."""
    columns = list(dataset.columns)
    rules = [
        Rule(
            "columns: as the contract lists",
            ERROR,
            f"exactly the contract's {len(columns)} columns, none missing, none added",
            "expect_table_columns_to_match_set",
            {"column_set": columns, "exact_match": True},
        )
    ]
    rules += _empty_column_rules(dataset)
    for item in dataset.items:
        rules += _item_rules(item, today)
    return rules


# Record and family keys say which record or family a row is, not who the person is.
_NOT_IDENTITY = ("record_token", "family_token")


def _among(columns: list[str]) -> dict:
    """Arguments that limit a column-profile rule to the profile rows of ``columns`` (a GX row
    condition in its serialised form: plain data, like the rest of a rule)."""
    return {
        "row_condition": {
            "type": "comparison",
            "column": {"name": "column"},
            "operator": "IN",
            "parameter": columns,
        }
    }


def _empty_column_rules(dataset: Dataset) -> list[Rule]:
    """Completeness of whole columns, checked on the delivery's column profile.

    A required item with no value in any row is an extract fault (ERROR). An optional item
    may be entirely empty: a partner that does not hold sex or NHS numbers still sends its
    records, and the delivery lands with a WARN naming the empty columns. A delivery in which
    no identifier has a value at all cannot be linked and is held.
    """
    required = [i.name for i in dataset.items if i.required]
    optional = [i.name for i in dataset.items if not i.required]
    identity = [
        i.name
        for i in dataset.items
        if i.classification in ("token", "quasi_identifier") and i.name not in _NOT_IDENTITY
    ]
    checks = (
        (
            required,
            "columns: no required column entirely empty",
            ERROR,
            "every required column has a value in at least one row (an all-empty "
            "required column is an extract fault)",
            "expect_column_values_to_be_between",
        ),
        (
            optional,
            "columns: optional columns have values",
            WARN,
            "optional columns have a value in at least one row; an entirely empty one "
            "lands, and linkage and the models treat it as not known for every record "
            "of the delivery",
            "expect_column_values_to_be_between",
        ),
        (
            identity,
            "columns: some identifier has values",
            ERROR,
            f"at least one of the {len(identity)} identifier columns has a value "
            "(without any, no record of the delivery can be linked)",
            "expect_column_sum_to_be_between",
        ),
    )
    # Each is one expectation over the rows of the column profile that belong to its columns.
    return [
        Rule(
            name,
            severity,
            description,
            expectation,
            {"column": "values", "min_value": 1, **_among(columns)},
            on="columns",
        )
        for columns, name, severity, description, expectation in checks
        if columns
    ]


def _item_rules(item: DataItem, today: dt.date) -> list[Rule]:
    c = item.name
    rules = []
    if is_bloom(c):
        # Bloom filters reach GX as hex text (GX measures lengths of text, not bytes).
        rules.append(
            Rule(
                f"{c}: {BLOOM_BYTES}-byte Bloom filter",
                ERROR,
                f"every {c} value is a {BLOOM_BYTES * 8}-bit Bloom filter ({BLOOM_BYTES} bytes)",
                "expect_column_value_lengths_to_equal",
                {"column": c, "value": BLOOM_BYTES * 2},
                c,
            )
        )
    elif item.logical_type != "string":
        # Text columns are held to their format below (tokens, allowed values); typed
        # columns must arrive typed, or ranges cannot be checked.
        types = pandas_dtypes(item.logical_type)
        rules.append(
            Rule(
                f"{c}: type {item.logical_type}",
                ERROR,
                f"{c} holds {item.logical_type} values as the contract declares",
                "expect_column_values_to_be_in_type_list",
                {"column": c, "type_list": types},
                c,
            )
        )
    if item.required:
        rules.append(
            Rule(
                f"{c}: not null",
                ERROR,
                f"{c} is required: no row may leave it empty",
                "expect_column_values_to_not_be_null",
                {"column": c},
                c,
            )
        )
    if is_token(c):
        rules.append(
            Rule(
                f"{c}: token format",
                ERROR,
                f"{c} values are keyed tokens: 32 lower-case hexadecimal characters",
                "expect_column_values_to_match_regex",
                {"column": c, "regex": TOKEN_PATTERN},
                c,
            )
        )
    if is_token_set(c):
        rules.append(
            Rule(
                f"{c}: token format",
                ERROR,
                f"{c} values are keyed tokens (32 lower-case hexadecimal characters each), "
                "at most 17, one space between each",
                "expect_column_values_to_match_regex",
                {"column": c, "regex": TOKEN_SET_PATTERN},
                c,
            )
        )
    if item.logical_type == "date":
        rules.append(
            Rule(
                f"{c}: plausible date",
                ERROR,
                f"{c} is between {EARLIEST_EVENT} and the day of the check ({today}): "
                "nothing before 1990, nothing in the future",
                "expect_column_values_to_be_between",
                {
                    "column": c,
                    "min_value": dt.datetime.combine(EARLIEST_EVENT, dt.time()),
                    "max_value": dt.datetime.combine(today, dt.time()),
                },
                c,
            )
        )
    if c == YEAR_OF_BIRTH:
        rules.append(
            Rule(
                f"{c}: plausible year",
                ERROR,
                f"{c} is between {EARLIEST_BIRTH_YEAR} and {today.year}: no births in the future",
                "expect_column_values_to_be_between",
                {"column": c, "min_value": EARLIEST_BIRTH_YEAR, "max_value": today.year},
                c,
            )
        )
    if item.allowed_values:
        rules.append(
            Rule(
                f"{c}: allowed values",
                ERROR,
                f"{c} is one of: {', '.join(item.allowed_values)}",
                "expect_column_values_to_be_in_set",
                {"column": c, "value_set": list(item.allowed_values)},
                c,
            )
        )
    if item.unique:
        rules.append(
            Rule(
                f"{c}: unique",
                ERROR,
                f"no two rows share a {c}",
                "expect_column_values_to_be_unique",
                {"column": c},
                c,
            )
        )
    return rules


def row_count_rule(
    previous_rows: int | None, band: tuple[float, float] = ROW_COUNT_BAND, severity: str = ERROR
) -> Rule | None:
    """Rows within ``band`` of the previous accepted delivery; none for a first delivery."""
    if not previous_rows:
        return None
    low, high = band
    lo, hi = math.ceil(previous_rows * low), math.floor(previous_rows * high)
    return Rule(
        "row count: close to the previous delivery",
        severity,
        f"between {lo:,} and {hi:,} rows ({low:g}x to {high:g}x the previous accepted "
        f"delivery of {previous_rows:,} rows)",
        "expect_table_row_count_to_be_between",
        {"min_value": lo, "max_value": hi},
        source="delivery history",
    )


# --- ODCS quality entries -------------------------------------------------------------


@lru_cache(maxsize=64)
def _raw_schema(path: Path, mtime: float) -> dict:
    # libyaml's loader where PyYAML has it: the pure-Python one takes ~0.1 s for the three contracts.
    document = yaml.load(
        path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )
    return {obj["name"]: obj for obj in document.get("schema") or [] if isinstance(obj, dict)}


def quality_entries(contract: Contract, dataset: str) -> list[tuple[str | None, dict]]:
    """Every ODCS ``quality`` entry of ``dataset``: (column or None for the dataset, entry).

    Read from the contract file itself, so this stays apart from the contract model.
    """
    path = Path(contract.path)
    obj = _raw_schema(path, path.stat().st_mtime).get(dataset, {})
    entries = [(None, e) for e in obj.get("quality") or []]
    for prop in obj.get("properties") or []:
        entries += [(prop.get("name"), e) for e in prop.get("quality") or []]
    return entries


_OPERATORS = (
    "mustBe",
    "mustNotBe",
    "mustBeGreaterThan",
    "mustBeGreaterOrEqualTo",
    "mustBeLessThan",
    "mustBeLessOrEqualTo",
    "mustBeBetween",
)


def _operator(entry: dict) -> tuple[str, object]:
    found = [op for op in _OPERATORS if op in entry]
    if len(found) != 1:
        raise QualityRuleError(f"needs exactly one of {', '.join(_OPERATORS)}")
    return found[0], entry[found[0]]


def _max_failing_share(entry: dict, rows: int) -> float:
    """The largest share of rows that may fail a count metric (nullValues, invalidValues, ...)."""
    op, value = _operator(entry)
    if op == "mustBeBetween":
        value = value[1]
        op = "mustBeLessOrEqualTo"
    if op == "mustBe" and value == 0:
        return 0.0
    if op not in ("mustBeLessThan", "mustBeLessOrEqualTo"):
        raise QualityRuleError(
            f"a count metric takes mustBe: 0, mustBeLessThan or mustBeLessOrEqualTo, not {op}"
        )
    value = float(value)
    if op == "mustBeLessThan":
        value = max(value - (1 if entry.get("unit", "rows") == "rows" else 1e-9), 0)
    if entry.get("unit", "rows") == "percent":
        return value / 100
    return value / rows if rows else 0.0


def _mostly(kwargs: dict, share: float) -> dict:
    return kwargs if share <= 0 else {**kwargs, "mostly": max(0.0, 1.0 - share)}


def entry_rule(
    contract: Contract, dataset: str, column: str | None, entry: dict, rows: int
) -> Rule | None:
    """One ODCS quality entry as a rule; ``None`` for human-readable ``text`` entries.

    Supported: library metrics ``nullValues``, ``missingValues``, ``invalidValues``
    (``arguments.validValues`` or ``arguments.pattern``), ``duplicateValues`` and ``rowCount``;
    ``custom`` entries with ``engine: great-expectations`` whose ``implementation`` is
    ``{type: expect_..., kwargs: {...}}``.
    """
    where = f"contract {contract.label} ({Path(contract.path).name}), {dataset}" + (
        f".{column}" if column else ""
    )
    kind = entry.get("type") or "library"
    label = entry.get("name") or entry.get("id")
    description = entry.get("description")
    try:
        severity = _severity(entry.get("severity"))
        if kind == "text":
            return None
        if kind == "custom":
            if str(entry.get("engine", "")).lower().replace("_", "-") not in (
                "great-expectations",
                "gx",
            ):
                raise QualityRuleError(
                    f"custom engine '{entry.get('engine')}' is not run by placelink "
                    "(use engine: great-expectations)"
                )
            impl = entry.get("implementation")
            if not isinstance(impl, dict) or not str(impl.get("type", "")).startswith("expect_"):
                raise QualityRuleError("implementation must be {type: expect_..., kwargs: {...}}")
            kwargs = dict(impl.get("kwargs") or {})
            if column and "column" not in kwargs and "column_A" not in kwargs:
                kwargs["column"] = column
            name = label or impl["type"].removeprefix("expect_").replace("_", " ")
            return Rule(
                f"{column + ': ' if column else ''}{name}",
                severity,
                description or f"{impl['type']} {kwargs}",
                impl["type"],
                kwargs,
                kwargs.get("column", column),
                "contract quality entry",
            )
        if kind != "library":
            raise QualityRuleError(
                f"quality type '{kind}' is not run by placelink (use library or custom)"
            )
        metric = entry.get("metric") or entry.get("rule")
        args = entry.get("arguments") or {}
        if metric == "rowCount":
            op, value = _operator(entry)
            bounds = {
                "mustBe": (value, value),
                "mustBeGreaterThan": (value + 1, None),
                "mustBeGreaterOrEqualTo": (value, None),
                "mustBeLessThan": (None, value - 1),
                "mustBeLessOrEqualTo": (None, value),
            }
            lo, hi = tuple(value) if op == "mustBeBetween" else bounds.get(op, (None, None))
            if lo is None and hi is None:
                raise QualityRuleError(f"rowCount does not take {op}")
            return Rule(
                f"row count: {label or op}",
                severity,
                description or f"row count {op} {value}",
                "expect_table_row_count_to_be_between",
                {"min_value": lo, "max_value": hi},
                None,
                "contract quality entry",
            )
        if column is None:
            raise QualityRuleError(
                f"metric '{metric}' belongs on a property (column), not the dataset"
            )
        share = _max_failing_share(entry, rows)
        text = (
            description
            or f"{metric} {_operator(entry)[0]} {_operator(entry)[1]} {entry.get('unit', 'rows')}"
        )
        if metric == "nullValues":
            return Rule(
                f"{column}: {label or 'null values'}",
                severity,
                text,
                "expect_column_values_to_not_be_null",
                _mostly({"column": column}, share),
                column,
                "contract quality entry",
            )
        if metric == "missingValues":
            # Values such as '' or 'n/a' that mean "missing"; without a list, nulls.
            missing = [v for v in args.get("missingValues", []) if v is not None]
            kwargs = _mostly({"column": column}, share)
            if missing:
                return Rule(
                    f"{column}: {label or 'missing values'}",
                    severity,
                    text,
                    "expect_column_values_to_not_be_in_set",
                    {**kwargs, "value_set": missing},
                    column,
                    "contract quality entry",
                )
            return Rule(
                f"{column}: {label or 'missing values'}",
                severity,
                text,
                "expect_column_values_to_not_be_null",
                kwargs,
                column,
                "contract quality entry",
            )
        if metric == "invalidValues":
            kwargs = _mostly({"column": column}, share)
            if "validValues" in args:
                return Rule(
                    f"{column}: {label or 'valid values'}",
                    severity,
                    description
                    or f"{column} is one of: {', '.join(map(str, args['validValues']))}",
                    "expect_column_values_to_be_in_set",
                    {**kwargs, "value_set": list(args["validValues"])},
                    column,
                    "contract quality entry",
                )
            if "pattern" in args:
                return Rule(
                    f"{column}: {label or 'pattern'}",
                    severity,
                    description or f"{column} matches {args['pattern']}",
                    "expect_column_values_to_match_regex",
                    {**kwargs, "regex": args["pattern"]},
                    column,
                    "contract quality entry",
                )
            raise QualityRuleError("invalidValues needs arguments.validValues or arguments.pattern")
        if metric == "duplicateValues":
            return Rule(
                f"{column}: {label or 'duplicates'}",
                severity,
                text,
                "expect_column_values_to_be_unique",
                _mostly({"column": column}, share),
                column,
                "contract quality entry",
            )
        raise QualityRuleError(
            f"metric '{metric}' is not one of nullValues, missingValues, invalidValues, "
            "duplicateValues, rowCount"
        )
    except QualityRuleError as exc:
        raise QualityRuleError(
            f"{where}: quality entry {label or kind}: {exc}. "
            "Fix the entry and run `placelink contracts check`."
        ) from None


def rules_for(
    contract: Contract, dataset: str, rows: int, today: dt.date, previous_rows: int | None = None
) -> list[Rule]:
    """Every rule for one delivery of ``dataset`` with ``rows`` rows, checked on ``today``."""
    rules = schema_rules(contract.datasets[dataset], today)
    band_rule = row_count_rule(previous_rows)
    extra = []
    for column, entry in quality_entries(contract, dataset):
        if (
            entry.get("type") == "custom"
            and entry.get("engine") == "placelink"
            and (entry.get("implementation") or {}).get("rule") == "rowCountChange"
        ):
            # Widen or narrow the band against the previous delivery, or change its severity.
            impl = entry["implementation"]
            band_rule = row_count_rule(
                previous_rows,
                tuple(impl.get("mustBeBetween", ROW_COUNT_BAND)),
                _severity(entry.get("severity")),
            )
            continue
        rule = entry_rule(contract, dataset, column, entry, rows)
        if rule is not None:
            extra.append(rule)
    return rules + ([band_rule] if band_rule else []) + extra
