"""``reports/quality.html``: every delivery, every rule, pass or fail with counts.

A plain page (no scripts, no external assets) so it opens from disk and prints. It shows
rule names, counts and row numbers only, never values.
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from pathlib import Path

from pipelines.core.clock import Clock
from pipelines.core.stages import stage
from pipelines.core.warehouse import table_exists
from pipelines.quality.results import DeliveryQuality, deliveries

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1b;max-width:80rem}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{border-bottom:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f2f2f2} td.num{text-align:right;font-variant-numeric:tabular-nums} td{overflow-wrap:anywhere}
.held{color:#fff;background:#b00020;padding:0 .4rem;border-radius:3px}
.warned{background:#f5c518;padding:0 .4rem;border-radius:3px}
.passed{color:#fff;background:#2e7d32;padding:0 .4rem;border-radius:3px}
.error{color:#b00020;font-weight:600} .warn{color:#8a6d00;font-weight:600}
details{margin:.25rem 0} summary{cursor:pointer}
"""


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else str(value)


def _badge(outcome: str) -> str:
    label = {"held": "held (not landed)", "warned": "landed, warnings", "passed": "passed"}[outcome]
    return f'<span class="{outcome}">{label}</span>'


def _rule_row(r: dict) -> str:
    failing = "" if r["failing_rows"] is None else f"{r['failing_rows']:,}"
    result = "pass" if r["passed"] else "<b>FAIL</b>"
    samples = ", ".join(map(str, r["sample_rows"]))
    return (
        f'<tr><td>{escape(r["rule"])}</td><td class="{r["severity"]}">{r["severity"].upper()}</td>'
        f'<td>{result}</td><td class="num">{failing}</td><td>{escape(samples)}</td>'
        f"<td>{escape(r['expected'] or '')}</td><td>{escape(r['source'] or '')}</td></tr>"
    )


def render(
    deliveries: list[DeliveryQuality],
    rules_by_delivery: dict[tuple, list[dict]],
    generated_at: dt.datetime,
) -> str:
    """The page as a string; ``rules_by_delivery`` maps (file, received_at) to every rule's result."""
    held = sum(d.outcome == "held" for d in deliveries)
    warned = sum(d.outcome == "warned" for d in deliveries)
    rows = []
    for d in deliveries:
        previous = "" if d.previous_rows is None else f"{d.previous_rows:,}"
        rows.append(
            f"<tr><td>{escape(_when(d.received_at))}</td><td>{escape(d.file_name)}</td>"
            f"<td>{escape(d.contract)}</td><td>{escape(d.dataset)}</td>"
            f'<td class="num">{d.rows:,}</td>'
            f'<td class="num">{previous}</td>'
            f'<td>{_badge(d.outcome)}</td><td class="num">{d.rules}</td>'
            f'<td class="num">{d.failed_errors}</td><td class="num">{d.failed_warnings}</td>'
            f'<td class="num">{d.seconds:.2f}</td></tr>'
        )
    sections = []
    for d in deliveries:
        results = rules_by_delivery.get((d.file_name, d.received_at), [])
        body = "".join(_rule_row(r) for r in results)
        open_attr = " open" if d.outcome != "passed" else ""
        sections.append(
            f"<details{open_attr}><summary><b>{escape(d.file_name)}</b> "
            f"({escape(d.dataset)}, received {escape(_when(d.received_at))}) {_badge(d.outcome)}</summary>"
            "<table><tr><th>rule</th><th>severity</th><th>result</th><th>failing rows</th>"
            "<th>sample row numbers</th><th>expected</th><th>from</th></tr>"
            f"{body}</table></details>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>placelink: data quality</title>
<style>{_STYLE}</style></head><body>
<h1>Data quality of partner deliveries</h1>
<p>Generated {escape(generated_at.isoformat(timespec="seconds"))}. {len(deliveries)} deliveries validated:
{len(deliveries) - held - warned} passed, {warned} landed with warnings, {held} held in quarantine.
Each delivery is checked against its data-sharing contract before it lands (Great Expectations suites
built from the contract). A failed <span class="error">ERROR</span> rule holds the delivery in quarantine
so nothing downstream sees it; a failed <span class="warn">WARN</span> rule is shown here and the delivery lands.
Rows are named by number (1 = first data row of the delivery); values are never shown.</p>
<h2>Deliveries</h2>
<table id="deliveries"><tr><th>received</th><th>file</th><th>contract</th><th>dataset</th><th>rows</th>
<th>previous delivery rows</th><th>outcome</th><th>rules</th><th>ERROR failed</th><th>WARN failed</th>
<th>seconds</th></tr>
{"".join(rows) or '<tr><td colspan="11">No deliveries validated yet.</td></tr>'}</table>
<h2>Rules per delivery</h2>
{"".join(sections)}
</body></html>
"""


@stage("reports")
def write_report(con, target: Path, now: dt.datetime | None = None) -> Path:
    """Write the report for every validated delivery in the warehouse to ``target``."""
    found = deliveries(con)
    by_delivery: dict[tuple, list[dict]] = {}
    if table_exists(con, "hub", "quality_results"):
        for row in con.execute("""
                SELECT file_name, received_at, rule, severity, passed, unexpected_count, sample_rows,
                       description, source
                FROM hub.quality_results ORDER BY passed, severity, rule""").fetchall():
            by_delivery.setdefault((row[0], row[1]), []).append(
                {
                    "rule": row[2],
                    "severity": row[3],
                    "passed": row[4],
                    "failing_rows": row[5],
                    "sample_rows": json.loads(row[6] or "[]"),
                    "expected": row[7],
                    "source": row[8],
                }
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".{target.name}.building")
    building.write_text(render(found, by_delivery, now or Clock.from_env().now()), encoding="utf-8")
    building.replace(target)
    return target
