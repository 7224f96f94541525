"""Statistical disclosure control for published tables (the OpenSAFELY rule).

Counts of 1..``threshold`` are redacted (NULL) and every other count is rounded to the
nearest ``base``; zero stays zero. Rates are computed from the unrounded counts, then
suppressed wherever a count they use is redacted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

RATE_PATTERN = re.compile(r"^(\w+)\s*=\s*(\w+)\s*/\s*(\w+)(?:\s*\*\s*([0-9.]+))?$")


@dataclass(frozen=True)
class DisclosureRule:
    threshold: int = 7
    rounding_base: int = 5

    def describe(self) -> str:
        return (f"counts of 1-{self.threshold} redacted (NULL); all other counts rounded to the nearest "
                f"{self.rounding_base}; rates computed from unrounded counts and suppressed where their "
                f"numerator or denominator is redacted")


@dataclass(frozen=True)
class Rate:
    name: str
    numerator: str
    denominator: str
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "Rate":
        match = RATE_PATTERN.match(text.strip())
        if not match:
            raise ValueError(f"rate '{text}' must look like 'name = numerator / denominator [* scale]'")
        name, num, den, scale = match.groups()
        return cls(name, num, den, float(scale) if scale else 1.0)


def suppress_small_counts(table: pl.DataFrame, counts: list[str], rates: list[Rate],
                          rule: DisclosureRule = DisclosureRule()) -> pl.DataFrame:
    """Apply the rule to ``counts`` and derive ``rates``; other columns pass unchanged."""
    missing = [c for c in counts + [r.numerator for r in rates] + [r.denominator for r in rates]
               if c not in table.columns]
    if missing:
        raise ValueError(f"columns named for disclosure control are not in the table: {', '.join(missing)}")
    redacted = {c: pl.col(c).is_between(1, rule.threshold) for c in counts}
    rate_exprs = []
    for rate in rates:
        # Float division: DuckDB sums arrive as integer-scale decimals that would truncate.
        unrounded = (pl.col(rate.numerator).cast(pl.Float64) / pl.col(rate.denominator).cast(pl.Float64)
                     * rate.scale)
        hidden = pl.lit(False)
        for column in (rate.numerator, rate.denominator):
            if column in redacted:
                hidden = hidden | redacted[column]
        rate_exprs.append(pl.when(hidden | (pl.col(rate.denominator) == 0)).then(None)
                          .otherwise(unrounded.round(2)).alias(rate.name))
    base = rule.rounding_base
    count_exprs = [pl.when(redacted[c]).then(None)
                   .otherwise(((pl.col(c) / base).round(0) * base).cast(pl.Int64)).alias(c) for c in counts]
    return table.with_columns(rate_exprs).with_columns(count_exprs)


def unsafe_cells(table: pl.DataFrame, counts: list[str], rule: DisclosureRule = DisclosureRule()) -> int:
    """Cells that break the rule (a count in 1..threshold, or not a multiple of the base)."""
    bad = 0
    for c in counts:
        values = table.get_column(c).drop_nulls()
        bad += int((values.is_between(1, rule.threshold) | (values % rule.rounding_base != 0)).sum())
    return bad
