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

from pipelines.stages import stage

SUPPRESSED = "suppressed"
PERIODS = ["before", "after"]
COHORTS = ["programme", "comparison"]
COLOURS = {"programme": "#1b6ca8", "comparison": "#9aa5b1"}
AGE_ORDER = ["0-4", "5-10", "11-17", "0-17", "18-64", "65+", "18+", "All ages"]
VL_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


@dataclass(frozen=True)
class OutcomePanel:
    outcome: str
    definition: str
    measure: str
    rows: pl.DataFrame  # cohort, age_band, period, value (None = suppressed), people


def _panels(con: duckdb.DuckDBPyConnection) -> list[OutcomePanel]:
    definitions = dict(con.execute("SELECT name, definition FROM _definitions WHERE kind = 'outcome'").fetchall())
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    panels = []
    if "outcomes_before_after" in tables:
        counts = pl.from_arrow(con.sql(
            "SELECT outcome, cohort, age_band, period, events_per_100_people AS value, people "
            "FROM outcomes_before_after").to_arrow_table())
        for outcome in sorted(counts["outcome"].unique().to_list()):
            panels.append(OutcomePanel(outcome, definitions.get(outcome, ""), "events per 100 people",
                                       counts.filter(pl.col("outcome") == outcome).drop("outcome")))
    if "school_attendance_before_after" in tables:
        school = pl.from_arrow(con.sql(
            "SELECT cohort, age_band, period, absence_rate_pct AS value, pupils AS people "
            "FROM school_attendance_before_after").to_arrow_table())
        panels.append(OutcomePanel("school_absence", definitions.get("school_absence", ""),
                                   "% of sessions missed", school))
    return panels


def _chart_svg(panel: OutcomePanel) -> str:
    """Grouped bars: before/after for each cohort, one small chart per age band."""
    bands = [b for b in AGE_ORDER if b in set(panel.rows["age_band"].to_list())]
    data = panel.rows.with_columns(
        shown=pl.col("value").fill_null(0.0),
        label=pl.when(pl.col("value").is_null()).then(pl.lit(SUPPRESSED))
        .otherwise(pl.col("value").round(1).cast(pl.String)),
        state=pl.when(pl.col("value").is_null()).then(pl.lit(SUPPRESSED)).otherwise(pl.col("cohort")),
    ).to_dicts()
    base = alt.Chart().encode(  # data comes from the facet, so each panel shows its own age band
        x=alt.X("period:N", sort=PERIODS, title=None),
        xOffset=alt.XOffset("cohort:N", sort=COHORTS),
    )
    top = max([r["shown"] for r in data] + [1.0])
    bars = base.mark_bar().encode(
        y=alt.Y("shown:Q", title=panel.measure, scale=alt.Scale(domain=[0, top * 1.25])),
        color=alt.Color("state:N", title="cohort",
                        scale=alt.Scale(domain=COHORTS + [SUPPRESSED],
                                        range=[COLOURS["programme"], COLOURS["comparison"], "#ffffff"])),
        stroke=alt.value("#555"), strokeDash=alt.value([3, 2]),
        strokeWidth=alt.condition(alt.datum.state == SUPPRESSED, alt.value(1), alt.value(0)),
    )
    placeholder = base.transform_filter(alt.datum.state == SUPPRESSED).mark_bar(
        fill="#eeeeee", stroke="#555", strokeDash=[3, 2]).encode(y=alt.datum(top * 0.25))  # a fixed height: not a value
    labels = base.transform_filter(alt.datum.state != SUPPRESSED).mark_text(dy=-6, fontSize=9).encode(
        y=alt.Y("shown:Q"), text="label:N", color=alt.value("#222"))
    # Written upright inside the placeholder, so neighbouring suppressed bars stay legible.
    suppressed = base.transform_filter(alt.datum.state == SUPPRESSED).mark_text(
        angle=270, fontSize=9, color="#b00020").encode(y=alt.datum(top * 0.125), text="label:N")
    chart = (alt.layer(bars, placeholder, labels, suppressed)
             .properties(width=150, height=170)
             .facet(column=alt.Column("age_band:N", sort=bands, title=None), data=alt.Data(values=data))
             .properties(title=f"{panel.outcome.replace('_', ' ')}: {panel.measure}"))
    return vlc.vegalite_to_svg(chart.to_dict(), vl_version=VL_VERSION)


def _table_html(panel: OutcomePanel) -> str:
    bands = [b for b in AGE_ORDER if b in set(panel.rows["age_band"].to_list())]
    index = {(r["cohort"], r["age_band"], r["period"]): r for r in panel.rows.to_dicts()}
    head = "".join(f"<th>{html.escape(b)}</th>" for b in bands)
    body = []
    for cohort in COHORTS:
        for period in PERIODS:
            cells = []
            for band in bands:
                row = index.get((cohort, band, period))
                if row is None:
                    cells.append('<td class="none">no one</td>')
                elif row["value"] is None:
                    cells.append(f'<td class="suppressed" title="redacted by disclosure control">{SUPPRESSED}</td>')
                else:
                    cells.append(f'<td>{row["value"]:.1f} <span class="n">(n={row["people"]})</span></td>')
            body.append(f"<tr><th>{cohort}</th><th>{period}</th>{''.join(cells)}</tr>")
    return (f'<table><thead><tr><th>cohort</th><th>period</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shared outcomes report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }}
h2 {{ margin-top: 2em; border-bottom: 1px solid #ccc; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }}
td, th {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
td.suppressed {{ color: #b00020; font-style: italic; background: repeating-linear-gradient(45deg,#fff,#fff 4px,#f3f3f3 4px,#f3f3f3 8px); }}
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
    now = now or dt.datetime.now(dt.UTC)
    con = duckdb.connect(str(published), read_only=True)
    try:
        about = dict(con.execute("SELECT key, value FROM _about").fetchall())
        panels = _panels(con)
    finally:
        con.close()
    sections = []
    for panel in panels:
        sections.append(
            f'<section id="{html.escape(panel.outcome)}"><h2>{html.escape(panel.outcome.replace("_", " "))}</h2>'
            f'<p class="note">{html.escape(panel.definition)}</p>'
            f'<div class="chart">{_chart_svg(panel)}</div>{_table_html(panel)}</section>')
    page = PAGE.format(built_at=now.isoformat(timespec="seconds"), source=html.escape(str(published)),
                       published_at=html.escape(about.get("built_at", "?")),
                       rule=html.escape(about.get("disclosure_rule", "")), sections="\n".join(sections))
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
