"""The outcomes report: a static HTML page of the published, disclosure-controlled tables.

It reads only the analysts' published file, so it can show nothing that disclosure control
has not already passed. Charts are drawn with Altair and rendered to inline SVG with
vl-convert, so the page needs no JavaScript and no network (the hub has neither).
Redacted cells are drawn as hatched placeholders labelled "suppressed", never as zero.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import duckdb
import polars as pl
import vl_convert as vlc

from pipelines.core.clock import Clock
from pipelines.core.stages import stage

SUPPRESSED = "suppressed"
PERIODS = ["before", "after"]
COHORTS = ["programme", "comparison"]
COLOURS = {"programme": "#1b6ca8", "comparison": "#9aa5b1"}
AGE_ORDER = ["0-4", "5-10", "11-17", "0-17", "18-64", "65+", "18+", "All ages"]
VL_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


@dataclass(frozen=True)
class OutcomePanel:
    outcome: str
    label: str  # readable name from _definitions, e.g. "A&E attendances"
    definition: str
    measure: str
    rows: pl.DataFrame  # cohort, age_band, period, value (None = suppressed), people
    band_notes: dict[str, str]  # age band -> how it is made ('subtotal of 0-4, 5-10, 11-17', ...)


def _labels(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, str]]:
    """outcome name -> (label, definition), from _definitions (kind 'outcome')."""
    columns = {
        c
        for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = '_definitions'"
        ).fetchall()
    }
    label = "coalesce(label, name)" if "label" in columns else "name"
    return {
        name: (text_label, definition)
        for name, text_label, definition in con.execute(
            f"SELECT name, {label}, definition FROM _definitions WHERE kind = 'outcome'"
        ).fetchall()
    }


def band_notes(margins: dict, table: str, bands_present: set[str]) -> dict[str, str]:
    """Age band -> what it adds up (from _about.disclosure_margins), e.g. '18+' -> 'subtotal of
    18-64 and 65+; no one was 65+, so it equals 18-64'. Plain bands get no note."""
    spec = margins.get(table) or {}
    notes = {}
    for label, sub in (spec.get("subtotals") or {}).items():
        if sub.get("dimension") != "age_band":
            continue
        members = sub.get("of") or []
        note = f"subtotal of {', '.join(members)}"
        present = [m for m in members if m in bands_present]
        if len(present) == 1 and len(members) > 1:
            note += f"; no one was in {', '.join(m for m in members if m not in present)}, so it equals {present[0]}"
        notes[label] = note
    for dimension, label in (spec.get("totals") or {}).items():
        if dimension == "age_band":
            notes[label] = "total of every age band"
    return notes


def _panels(con: duckdb.DuckDBPyConnection) -> list[OutcomePanel]:
    labels = _labels(con)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    about = dict(con.execute("SELECT key, value FROM _about").fetchall())
    margins = json.loads(about.get("disclosure_margins") or "{}")
    panels = []
    if "outcomes_before_after" in tables:
        counts = pl.from_arrow(
            con.sql(
                "SELECT outcome, cohort, age_band, period, events_per_100_people AS value, people "
                "FROM outcomes_before_after"
            ).to_arrow_table()
        )
        notes = band_notes(margins, "outcomes_before_after", set(counts["age_band"].to_list()))
        for outcome in sorted(counts["outcome"].unique().to_list()):
            label, definition = labels.get(outcome, (outcome.replace("_", " "), ""))
            panels.append(
                OutcomePanel(
                    outcome,
                    label,
                    definition,
                    "events per 100 people",
                    counts.filter(pl.col("outcome") == outcome).drop("outcome"),
                    notes,
                )
            )
    if "school_attendance_before_after" in tables:
        school = pl.from_arrow(
            con.sql(
                "SELECT cohort, age_band, period, absence_rate_pct AS value, pupils AS people "
                "FROM school_attendance_before_after"
            ).to_arrow_table()
        )
        label, definition = labels.get("school_absence", ("school absence", ""))
        notes = band_notes(
            margins, "school_attendance_before_after", set(school["age_band"].to_list())
        )
        panels.append(
            OutcomePanel("school_absence", label, definition, "% of sessions missed", school, notes)
        )
    return panels


def _band_title(band: str, notes: dict[str, str]) -> str:
    if band not in notes:
        return band
    return f"{band} (total)" if notes[band].startswith("total") else f"{band} (subtotal)"


def _chart_svg(panel: OutcomePanel) -> str:
    """Grouped bars: before/after for each cohort, one small chart per age band."""
    bands = [
        _band_title(b, panel.band_notes)
        for b in AGE_ORDER
        if b in set(panel.rows["age_band"].to_list())
    ]
    data = panel.rows.with_columns(
        age_band=pl.col("age_band").map_elements(
            lambda b: _band_title(b, panel.band_notes), return_dtype=pl.String
        ),
        shown=pl.col("value").fill_null(0.0),
        label=pl.when(pl.col("value").is_null())
        .then(pl.lit(SUPPRESSED))
        .otherwise(pl.col("value").round(1).cast(pl.String)),
        state=pl.when(pl.col("value").is_null())
        .then(pl.lit(SUPPRESSED))
        .otherwise(pl.col("cohort")),
    ).to_dicts()
    base = alt.Chart().encode(  # data comes from the facet, so each panel shows its own age band
        x=alt.X("period:N", sort=PERIODS, title=None),
        xOffset=alt.XOffset("cohort:N", sort=COHORTS),
    )
    top = max([r["shown"] for r in data] + [1.0])
    bars = base.mark_bar().encode(
        y=alt.Y("shown:Q", title=panel.measure, scale=alt.Scale(domain=[0, top * 1.25])),
        color=alt.Color(
            "state:N",
            title="cohort",
            scale=alt.Scale(
                domain=COHORTS + [SUPPRESSED],
                range=[COLOURS["programme"], COLOURS["comparison"], "#ffffff"],
            ),
        ),
        stroke=alt.value("#555"),
        strokeDash=alt.value([3, 2]),
        strokeWidth=alt.condition(alt.datum.state == SUPPRESSED, alt.value(1), alt.value(0)),
    )
    placeholder = (
        base.transform_filter(alt.datum.state == SUPPRESSED)
        .mark_bar(fill="#eeeeee", stroke="#555", strokeDash=[3, 2])
        .encode(y=alt.datum(top * 0.25))
    )  # a fixed height: not a value
    labels = (
        base.transform_filter(alt.datum.state != SUPPRESSED)
        .mark_text(dy=-6, fontSize=9)
        .encode(y=alt.Y("shown:Q"), text="label:N", color=alt.value("#222"))
    )
    # Written upright inside the placeholder, so neighbouring suppressed bars stay legible.
    suppressed = (
        base.transform_filter(alt.datum.state == SUPPRESSED)
        .mark_text(angle=270, fontSize=9, color="#b00020")
        .encode(y=alt.datum(top * 0.125), text="label:N")
    )
    chart = (
        alt.layer(bars, placeholder, labels, suppressed)
        .properties(width=150, height=170)
        .facet(column=alt.Column("age_band:N", sort=bands, title=None), data=alt.Data(values=data))
        .properties(title=f"{panel.label}: {panel.measure}")
    )
    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=VL_VERSION)


def _table_html(panel: OutcomePanel) -> str:
    bands = [b for b in AGE_ORDER if b in set(panel.rows["age_band"].to_list())]
    index = {(r["cohort"], r["age_band"], r["period"]): r for r in panel.rows.to_dicts()}
    head = "".join(
        f'<th class="{"margin" if b in panel.band_notes else "band"}" title="{html.escape(panel.band_notes.get(b, "age band at the index date"))}">'
        f"{html.escape(_band_title(b, panel.band_notes))}</th>"
        for b in bands
    )
    body = []
    for cohort in COHORTS:
        for period in PERIODS:
            cells = []
            for band in bands:
                row = index.get((cohort, band, period))
                if row is None:
                    cells.append('<td class="none">no one</td>')
                elif row["value"] is None:
                    cells.append(
                        f'<td class="suppressed" title="redacted by disclosure control">{SUPPRESSED}</td>'
                    )
                else:
                    cells.append(
                        f'<td>{row["value"]:.1f} <span class="n">(n={row["people"]})</span></td>'
                    )
            body.append(f"<tr><th>{cohort}</th><th>{period}</th>{''.join(cells)}</tr>")
    notes = "; ".join(
        f"{html.escape(b)}: {html.escape(panel.band_notes[b])}"
        for b in bands
        if b in panel.band_notes
    )
    return (
        f"<table><thead><tr><th>cohort</th><th>period</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
        + (f'<p class="note bands">Subtotal and total columns: {notes}.</p>' if notes else "")
    )


HEADLINE_BANDS = ("0-17", "18+", "All ages")


def _table(con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame | None:
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return (
        pl.from_arrow(con.sql(f'SELECT * FROM "{name}"').to_arrow_table())
        if name in tables
        else None
    )


def _in_band_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows by outcome, then age band as the charts show them (0-4, 5-10, 11-17, 0-17, ...)."""
    order = {band: i for i, band in enumerate(AGE_ORDER)}
    return (
        frame.with_columns(_band=pl.col("age_band").replace_strict(order, default=len(order)))
        .sort("outcome", "_band")
        .drop("_band")
    )


def _interval(value, low, high, decimals: int) -> str:
    if value is None:
        return ""
    return f"{value:.{decimals}f} ({low:.{decimals}f} to {high:.{decimals}f})"


def _forest_svg(effects: pl.DataFrame, labels: dict[str, tuple[str, str]]) -> str:
    """Rate ratios with their 95% intervals, one line per outcome and headline band, on a log scale."""
    shown = effects.filter(
        pl.col("rate_ratio").is_not_null() & pl.col("age_band").is_in(HEADLINE_BANDS)
    )
    if shown.is_empty():
        return '<p class="note">No estimate could be published (see the table below for why).</p>'
    data = [
        {
            "row": f"{labels.get(r['outcome'], (r['outcome'],))[0]} · {r['age_band']}",
            "rate_ratio": r["rate_ratio"],
            "low": r["rate_ratio_ci_low"],
            "high": r["rate_ratio_ci_high"],
            "interval": _interval(
                r["rate_ratio"], r["rate_ratio_ci_low"], r["rate_ratio_ci_high"], 2
            ),
        }
        for r in _in_band_order(shown).iter_rows(named=True)
    ]
    order = [d["row"] for d in data]
    low = min(min(d["low"] for d in data), 0.9)
    high = max(max(d["high"] for d in data), 1.1)
    scale = alt.Scale(type="log", domain=[low * 0.9, high * 1.1])
    base = alt.Chart(alt.Data(values=data)).encode(y=alt.Y("row:N", sort=order, title=None))
    whiskers = base.mark_rule(strokeWidth=2, color=COLOURS["programme"]).encode(
        x=alt.X(
            "low:Q",
            scale=scale,
            title="rate ratio, programme vs comparison (log scale; 1 = no effect)",
        ),
        x2="high:Q",
    )
    points = base.mark_point(filled=True, size=60, color=COLOURS["programme"]).encode(
        x=alt.X("rate_ratio:Q", scale=scale), tooltip=["row:N", "interval:N"]
    )
    text = base.mark_text(align="left", dx=6, dy=-8, fontSize=9, color="#222").encode(
        x=alt.X("high:Q", scale=scale), text="interval:N"
    )
    no_effect = (
        alt.Chart(alt.Data(values=[{"x": 1.0}]))
        .mark_rule(color="#b00020", strokeDash=[4, 3])
        .encode(x=alt.X("x:Q", scale=scale))
    )
    chart = alt.layer(no_effect, whiskers, points, text).properties(
        width=640,
        height=26 * len(data),
        title="Effect of the programme: rate ratio with 95% confidence interval",
    )
    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=VL_VERSION)


def _effects_html(effects: pl.DataFrame, labels: dict[str, tuple[str, str]]) -> str:
    rows = []
    for r in _in_band_order(effects).iter_rows(named=True):
        label = labels.get(r["outcome"], (r["outcome"],))[0]
        status = (
            ""
            if r["status"] == "estimated"
            else f'<td class="suppressed" colspan="2">{html.escape(r["status"])}</td>'
        )
        cells = status or (
            f"<td>{_interval(r['rate_difference'], r['rate_difference_ci_low'], r['rate_difference_ci_high'], 1)}</td>"
            f"<td>{_interval(r['rate_ratio'], r['rate_ratio_ci_low'], r['rate_ratio_ci_high'], 2)}</td>"
        )
        rows.append(
            f"<tr><th>{html.escape(label)}</th><th>{html.escape(r['age_band'])}</th>"
            f'<td class="measure">{html.escape(r["measure"])}</td>{cells}</tr>'
        )
    return (
        '<table class="effects"><thead><tr><th>outcome</th><th>age band</th><th>measure</th>'
        "<th>difference in differences (95% CI)</th><th>rate ratio (95% CI)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _sensitivity_html(sensitivity: pl.DataFrame, labels: dict[str, tuple[str, str]]) -> str:
    thresholds = sorted(set(sensitivity["linkage_threshold"].to_list()))
    kinds = dict(sensitivity.select("linkage_threshold", "analysis").unique().iter_rows())
    head = "".join(f"<th>{t:g} ({html.escape(kinds[t])})</th>" for t in thresholds)
    index = {
        (r["outcome"], r["age_band"], r["linkage_threshold"]): r
        for r in sensitivity.iter_rows(named=True)
    }
    rows = []
    for outcome, band in sorted(
        {(o, b) for o, b, _ in index},
        key=lambda k: (k[0], AGE_ORDER.index(k[1]) if k[1] in AGE_ORDER else 99),
    ):
        cells = []
        for t in thresholds:
            r = index.get((outcome, band, t))
            cells.append(
                f"<td>{_interval(r['rate_ratio'], r['rate_ratio_ci_low'], r['rate_ratio_ci_high'], 2)}</td>"
                if r and r["rate_ratio"] is not None
                else '<td class="none">-</td>'
            )
        rows.append(
            f"<tr><th>{html.escape(labels.get(outcome, (outcome,))[0])}</th><th>{html.escape(band)}</th>"
            f"{''.join(cells)}</tr>"
        )
    return (
        f'<table class="sensitivity"><thead><tr><th>outcome</th><th>age band</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _balance_html(balance: pl.DataFrame) -> str:
    def number(value, fmt: str) -> str:
        return (
            '<td class="suppressed">suppressed</td>'
            if value is None
            else f"<td>{format(value, fmt)}</td>"
        )

    rows = []
    for r in balance.iter_rows(named=True):
        cells = "".join(
            number(r[f"{s}_pct"], ".1f") for s in ("programme", "candidates", "comparison")
        )
        smds = "".join(
            ("<td></td>" if r["level"] == "All" else number(r[k], ".2f"))
            for k in ("smd_before_matching", "smd_after_matching")
        )
        people = "".join(
            number(r[f"{s}_people"], ",d") for s in ("programme", "candidates", "comparison")
        )
        rows.append(
            f"<tr><th>{html.escape(r['variable'])}</th><th>{html.escape(r['level'])}</th>{cells}{smds}{people}</tr>"
        )
    return (
        '<table class="balance"><thead><tr><th>variable</th><th>level</th><th>programme %</th>'
        "<th>candidates % (before matching)</th><th>comparison % (after matching)</th>"
        "<th>SMD before</th><th>SMD after</th><th>programme people</th><th>candidates</th>"
        f"<th>comparison people</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _effects_section(con: duckdb.DuckDBPyConnection) -> str:
    labels = _labels(con)
    effects, sensitivity, balance = (
        _table(con, "effects"),
        _table(con, "effects_linkage_sensitivity"),
        _table(con, "matching_balance"),
    )
    parts = []
    if effects is not None:
        parts.append(
            '<section id="effects"><h2>Effect of the programme</h2>'
            '<p class="note">Difference in differences of the rates (programme vs comparison, after vs before) and '
            "the ratio of the two groups' after/before rate ratios, each with a 95% confidence interval that allows "
            "for every person being counted twice and for family members being alike (Poisson GLMs with "
            "cluster-robust errors; method in <code>_about.effects_parameters</code>). An estimate resting on a "
            "suppressed cell is not shown.</p>"
            f'<div class="chart forest">{_forest_svg(effects, labels)}</div>{_effects_html(effects, labels)}</section>'
        )
    if balance is not None:
        parts.append(
            '<section id="balance"><h2>Matching: how alike the groups are</h2>'
            '<p class="note">Share of each group with each value of the matching variables, and the standardised '
            "mean difference (SMD) from the programme: before matching (all never-enrolled candidates) and after "
            "(the matched comparison group). |SMD| below 0.1 is usually read as balanced.</p>"
            f"{_balance_html(balance)}</section>"
        )
    if sensitivity is not None:
        parts.append(
            '<section id="linkage-sensitivity"><h2>Sensitivity to linkage</h2>'
            '<p class="note">Rate ratios (95% CI) with persons linked at a looser and a stricter Splink match '
            "probability than the published tables use; if they barely move, linkage choices do not drive the "
            "answer.</p>"
            f"{_sensitivity_html(sensitivity, labels)}</section>"
        )
    return "\n".join(parts)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shared outcomes report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }}
h2 {{ margin-top: 2em; border-bottom: 1px solid #ccc; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
td.suppressed {{ color: #b00020; font-style: italic; background: repeating-linear-gradient(45deg,#fff,#fff 4px,#f3f3f3 4px,#f3f3f3 8px); }}
th.margin {{ background: #eef3f8; font-style: italic; }} td.measure {{ text-align: left; color: #555; }}
.n {{ color: #777; font-size: 0.85em; }} .note {{ color: #555; }} .chart svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>Shared outcomes: before and after the programme</h1>
<p class="note">Built {built_at} from <code>{source}</code> (published {published_at}). Every number here
comes from the disclosure-controlled published file: {rule}. Cells marked <em>suppressed</em> were redacted
by that rule (or to protect a redacted cell from subtraction); they are not zero.</p>
<p class="note">Windows: 'before' = the 12 months before the index date, 'after' = the 12 months from it.
Programme = members of families enrolled in the family-support programme (index date = first enrolment);
comparison = matched non-enrolled people (see <code>_definitions</code>).</p>
{sections}
</body></html>
"""


@stage("reports")
def build_outcomes_report(published: Path, out: Path, now: dt.datetime | None = None) -> Path:
    """Write the HTML report for ``published`` to ``out``; returns ``out``."""
    now = now or Clock.from_env().now()
    con = duckdb.connect(str(published), read_only=True)
    try:
        about = dict(con.execute("SELECT key, value FROM _about").fetchall())
        panels = _panels(con)
        effects_section = _effects_section(con)
    finally:
        con.close()
    sections = [effects_section]
    for panel in panels:
        sections.append(
            f'<section id="{html.escape(panel.outcome)}"><h2>{html.escape(panel.label)}</h2>'
            f'<p class="note">{html.escape(panel.definition)}</p>'
            f'<div class="chart">{_chart_svg(panel)}</div>{_table_html(panel)}</section>'
        )
    page = PAGE.format(
        built_at=now.isoformat(timespec="seconds"),
        source=html.escape(str(published)),
        published_at=html.escape(about.get("built_at", "?")),
        rule=html.escape(about.get("disclosure_rule", "")),
        sections="\n".join(sections),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(out)
    return out


def report_summary(published: Path) -> str:
    """JSON-ready counts of what the report shows (outcomes, suppressed cells), for asset metadata."""
    con = duckdb.connect(str(published), read_only=True)
    try:
        panels = _panels(con)
    finally:
        con.close()
    return json.dumps({p.outcome: int(p.rows["value"].is_null().sum()) for p in panels})


# The programme's primary outcome: children's A&E attendances (docs/outcomes.md).
HEADLINE = ("ae_attendance", "0-17")


def headline_effect(
    published: Path, outcome: str = HEADLINE[0], age_band: str = HEADLINE[1]
) -> str | None:
    """One sentence with the headline effect and its 95% intervals, from the published file
    (None if the file has no effects table)."""
    con = duckdb.connect(str(published), read_only=True)
    try:
        effects = _table(con, "effects")
        labels = _labels(con)
    finally:
        con.close()
    if effects is None:
        return None
    rows = effects.filter(
        (pl.col("outcome") == outcome) & (pl.col("age_band") == age_band)
    ).to_dicts()
    label = labels.get(outcome, (outcome,))[0]
    if not rows:
        return f"{label}, ages {age_band}: no estimate (no one in that group)"
    r = rows[0]
    if r["rate_ratio"] is None:
        return f"{label}, ages {age_band}: no estimate published ({r['status']})"
    return (
        f"{label}, ages {age_band}, programme vs comparison: rate ratio {r['rate_ratio']:.2f} "
        f"(95% CI {r['rate_ratio_ci_low']:.2f} to {r['rate_ratio_ci_high']:.2f}); difference in differences "
        f"{r['rate_difference']:+.1f} {r['measure']} (95% CI {r['rate_difference_ci_low']:+.1f} to "
        f"{r['rate_difference_ci_high']:+.1f})"
    )
