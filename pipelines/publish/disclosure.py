"""Statistical disclosure control for published tables (the OpenSAFELY rule).

Counts of 1..``threshold`` are redacted (NULL) and every other count is rounded to the
nearest ``base``; zero stays zero. Rates are computed from the unrounded counts, then
suppressed wherever a count they use is redacted.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipelines.core.stages import stage

RATE_PATTERN = re.compile(r"^(\w+)\s*=\s*(\w+)\s*/\s*(\w+)(?:\s*\*\s*([0-9.]+))?$")


@dataclass(frozen=True)
class DisclosureRule:
    threshold: int = 7
    rounding_base: int = 5

    def describe(self) -> str:
        return (
            f"counts of 1-{self.threshold} redacted (NULL); all other counts rounded to the nearest "
            f"{self.rounding_base}; rates computed from unrounded counts and suppressed where their "
            f"numerator, denominator or the row's population count is redacted; totals and subtotals "
            f"computed from unrounded counts, and further cells redacted (secondary suppression) "
            f"until no redacted cell can be recovered by subtraction from a published total"
        )


@dataclass(frozen=True)
class Rate:
    name: str
    numerator: str
    denominator: str
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = RATE_PATTERN.match(text.strip())
        if not match:
            raise ValueError(
                f"rate '{text}' must look like 'name = numerator / denominator [* scale]'"
            )
        name, num, den, scale = match.groups()
        return cls(name, num, den, float(scale) if scale else 1.0)


def unsafe_cells(
    table: pl.DataFrame, counts: list[str], rule: DisclosureRule = DisclosureRule()
) -> int:
    """Cells that break the rule (a count in 1..threshold, or not a multiple of the base)."""
    bad = 0
    for c in counts:
        values = table.get_column(c).drop_nulls()
        bad += int(
            (values.is_between(1, rule.threshold) | (values % rule.rounding_base != 0)).sum()
        )
    return bad


# --- Tables with margins: totals, secondary suppression and the differencing check -------------


@dataclass(frozen=True)
class TableSpec:
    """What a published table declares for disclosure control.

    ``totals`` maps a dimension to the label of its total rows (e.g. ``{"age_band": "All ages"}``):
    the publisher adds, for every combination of the other dimensions, a row summing the counts
    over that dimension. ``subtotals`` adds rows summing a named subset of a dimension's values,
    e.g. ``("age_band", "0-17", ("0-4", "5-10", "11-17"))``. Every total and subtotal is a margin
    that secondary suppression protects. ``population`` is the count of people behind a row:
    every rate in a row is hidden when it is redacted, so no rate describes fewer than
    ``threshold + 1`` people.
    """

    dimensions: tuple[str, ...]
    counts: tuple[str, ...]
    rates: tuple[Rate, ...] = ()
    population: str | None = None
    totals: tuple[tuple[str, str], ...] = ()
    subtotals: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @property
    def total_labels(self) -> dict[str, str]:
        return dict(self.totals)

    def margins(self) -> list[tuple[str, str, tuple[str, ...] | None]]:
        """(dimension, label, member values or None for all values) of every total row kind."""
        return [(d, label, None) for d, label in self.totals] + [
            (d, label, tuple(members)) for d, label, members in self.subtotals
        ]

    def labels(self, dimension: str) -> set[str]:
        return {label for d, label, _ in self.margins() if d == dimension}


def _members(column: str, members: tuple[str, ...] | None, labels: set[str]) -> pl.Expr:
    """Rows whose ``column`` is a plain value (not a total label) inside the margin."""
    plain = ~pl.col(column).is_in(sorted(labels)) if labels else pl.lit(True)
    return plain & pl.col(column).is_in(list(members)) if members is not None else plain


def add_totals(table: pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """``table`` (dimensions as text) plus total and subtotal rows for every declared margin,
    and for every combination of margins over different dimensions.

    Totals are sums of the unrounded counts, so each is the true margin; disclosure control
    is applied to them like any other cell.
    """
    table = table.with_columns(pl.col(d).cast(pl.String) for d in spec.dimensions)
    by_dim: dict[str, list[tuple[str, tuple[str, ...] | None]]] = {}
    for dim, label, members in spec.margins():
        by_dim.setdefault(dim, []).append((label, members))
    dims = list(by_dim)
    frames = [table]
    for combination in itertools.product(*[[None] + by_dim[d] for d in dims]):
        chosen = [(d, c) for d, c in zip(dims, combination) if c is not None]
        if not chosen:
            continue
        subset = table
        for dim, (_, members) in chosen:
            subset = subset.filter(_members(dim, members, set()))
        keep = [d for d in spec.dimensions if d not in {dim for dim, _ in chosen}]
        summed = subset.group_by(keep, maintain_order=True).agg(
            pl.col(c).sum() for c in spec.counts
        )
        summed = summed.with_columns(pl.lit(label).alias(dim) for dim, (label, _) in chosen)
        frames.append(summed.select(table.columns).cast(table.schema))
    return pl.concat(frames)


def _margin_groups(table: pl.DataFrame, spec: TableSpec) -> list[tuple[list[int], int | None]]:
    """(cell rows, total row) for every margin: cells that add up to a total or subtotal row."""
    groups = []
    indexed = table.with_row_index("_row")
    for dim, label, members in spec.margins():
        others = [d for d in spec.dimensions if d != dim]
        grouped = indexed.group_by(others, maintain_order=True).agg(
            cells=pl.col("_row").filter(_members(dim, members, spec.labels(dim))),
            total=pl.col("_row").filter(pl.col(dim) == label).first(),
        )
        for cells, total in grouped.select("cells", "total").iter_rows():
            groups.append((list(cells), total))
    # Subtotals that do not overlap also add up to the total, with the values no subtotal covers:
    # e.g. All ages = 0-17 + 18+. An attacker can use that equation, so it is a margin too.
    for dim, total_label in spec.totals:
        parts = [(label, members) for d, label, members in spec.subtotals if d == dim]
        covered = [v for _, members in parts for v in members]
        if not parts or len(covered) != len(set(covered)):
            continue
        others = [d for d in spec.dimensions if d != dim]
        in_equation = pl.col(dim).is_in([label for label, _ in parts]) | (
            ~pl.col(dim).is_in(sorted(spec.labels(dim))) & ~pl.col(dim).is_in(covered)
        )
        grouped = indexed.group_by(others, maintain_order=True).agg(
            cells=pl.col("_row").filter(in_equation),
            total=pl.col("_row").filter(pl.col(dim) == total_label).first(),
        )
        for cells, total in grouped.select("cells", "total").iter_rows():
            groups.append((list(cells), total))
    return groups


def secondary_suppression(
    table: pl.DataFrame, spec: TableSpec, redacted: dict[str, list[bool]]
) -> dict[str, list[bool]]:
    """Redact more cells until no margin has exactly one redacted cell.

    A margin (the cells over one totals dimension plus their total row) with a single redacted
    member gives that member away by subtraction, so another visible, non-zero member is redacted
    too, one cell at a time until every margin is safe. Each time, the cell chosen is the one that
    protects the most exposed margins while exposing the fewest safe ones (so the fewest cells end
    up hidden: a total that two exposed margins share beats a subtotal whose own margin would then
    need another cell), then the smallest count, then the first by dimension values (so tables
    that repeat the same counts, e.g. ``people`` per outcome, make the same choice).
    """
    groups = [
        (members, total)
        for cells, total in _margin_groups(table, spec)
        if total is not None
        for members in [cells + [total]]
    ]
    of_cell: dict[int, list[int]] = {}
    for g, (members, _) in enumerate(groups):
        for i in members:
            of_cell.setdefault(i, []).append(g)
    sort_keys = [tuple(str(v) for v in row) for row in table.select(spec.dimensions).iter_rows()]
    result = {}
    for column in spec.counts:
        values = table.get_column(column).to_list()
        mask = list(redacted[column])
        hidden = [sum(mask[i] for i in members) for members, _ in groups]
        while True:
            exposed = [g for g, n in enumerate(hidden) if n == 1]
            candidates = {
                i for g in exposed for i in groups[g][0] if not mask[i] and (values[i] or 0) > 0
            }
            if not candidates:
                break  # every exposed margin's other members are exact zeros: then its total is hidden too

            def cost(i: int, hidden: list[int] = hidden, values: list = values) -> tuple:
                protects = sum(1 for g in of_cell[i] if hidden[g] == 1)
                exposes = sum(1 for g in of_cell[i] if hidden[g] == 0)
                return exposes - protects, values[i], sort_keys[i]

            choice = min(candidates, key=cost)
            mask[choice] = True
            for g in of_cell[choice]:
                hidden[g] += 1
        result[column] = mask
    return result


@stage("disclosure control")
def control_table(
    raw: pl.DataFrame, spec: TableSpec, rule: DisclosureRule = DisclosureRule()
) -> pl.DataFrame:
    """The table as it may be published: totals added, small counts redacted, margins protected,
    counts rounded, rates derived from unrounded counts and hidden with their inputs."""
    declared = list(spec.dimensions) + list(spec.counts)
    missing = [
        c
        for c in declared
        + [r.numerator for r in spec.rates]
        + [r.denominator for r in spec.rates]
        + ([spec.population] if spec.population else [])
        if c not in raw.columns
    ]
    if missing:
        raise ValueError(
            f"columns named for disclosure control are not in the table: {', '.join(missing)}"
        )
    table = add_totals(raw.select(declared), spec) if spec.margins() else raw.select(declared)
    primary = {
        c: table.get_column(c).is_between(1, rule.threshold).fill_null(False).to_list()
        for c in spec.counts
    }
    redacted = secondary_suppression(table, spec, primary) if spec.margins() else primary
    masks = {c: pl.Series(f"_hide_{c}", redacted[c], dtype=pl.Boolean) for c in spec.counts}
    out = table.with_columns(masks.values())
    rate_exprs = []
    for rate in spec.rates:
        hidden = pl.col(rate.denominator) == 0
        for column in {rate.numerator, rate.denominator, spec.population} - {None}:
            if column in masks:
                hidden = hidden | pl.col(f"_hide_{column}")
        unrounded = (
            pl.col(rate.numerator).cast(pl.Float64)
            / pl.col(rate.denominator).cast(pl.Float64)
            * rate.scale
        )
        rate_exprs.append(pl.when(hidden).then(None).otherwise(unrounded.round(2)).alias(rate.name))
    base = rule.rounding_base
    count_exprs = [
        pl.when(pl.col(f"_hide_{c}"))
        .then(None)
        .otherwise(((pl.col(c) / base).round(0) * base).cast(pl.Int64))
        .alias(c)
        for c in spec.counts
    ]
    return (
        out.with_columns(rate_exprs)
        .with_columns(count_exprs)
        .drop([f"_hide_{c}" for c in spec.counts])
    )


@dataclass(frozen=True)
class Recovered:
    """A redacted cell an attacker pinned down from a margin: ``low <= value <= high``."""

    row: int
    column: str
    low: float
    high: float


def differencing_attack(
    published: pl.DataFrame, spec: TableSpec, rule: DisclosureRule = DisclosureRule()
) -> list[Recovered]:
    """What an attacker learns by subtracting visible cells from margins, repeated to a fixpoint.

    A margin with exactly one unknown member yields that member as total minus the other
    cells, within the rounding error of the cells used (+/- base/2 each; exact when the base
    is 1). Every recovered cell is then used in other margins. An empty list means the attack
    failed: every margin still has at least two unknowns.
    """
    groups = _margin_groups(published, spec)
    half = rule.rounding_base / 2 if rule.rounding_base > 1 else 0.0
    found: list[Recovered] = []
    for column in spec.counts:
        values = published.get_column(column).to_list()
        bounds: dict[int, tuple[float, float]] = {
            i: (v - half, v + half) if v else (0.0, 0.0)
            for i, v in enumerate(values)
            if v is not None
        }
        changed = True
        while changed:
            changed = False
            for cells, total in groups:
                if total is None:
                    continue
                unknown = [i for i in cells + [total] if i not in bounds]
                if len(unknown) != 1:
                    continue
                target = unknown[0]
                if target == total:
                    low = sum(bounds[i][0] for i in cells)
                    high = sum(bounds[i][1] for i in cells)
                else:
                    others = [i for i in cells if i != target]
                    low = bounds[total][0] - sum(bounds[i][1] for i in others)
                    high = bounds[total][1] - sum(bounds[i][0] for i in others)
                low, high = max(low, 0.0), high
                bounds[target] = (low, high)
                found.append(Recovered(target, column, low, high))
                changed = True
    return found


def published_unsafe_cells(
    published: Path, counts_by_table: dict[str, list[str]], rule: DisclosureRule = DisclosureRule()
) -> dict[str, int]:
    """Count cells in the published file that break the disclosure rule, per table."""
    con = duckdb.connect(str(published), read_only=True)
    try:
        found = {}
        for table, counts in counts_by_table.items():
            frame = pl.from_arrow(
                con.sql(f'SELECT {", ".join(counts)} FROM "{table}"').to_arrow_table()
            )
            found[table] = unsafe_cells(frame, counts, rule)
        return found
    finally:
        con.close()
