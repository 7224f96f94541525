"""The information-governance register: ``reports/ig_register.html``.

One row per data-sharing agreement (valid or not) with its status, dates, lawful basis,
what flowed under it (from the audit log: deliveries, rows, last accepted, quarantined,
deleted by retention) and which published tables rely on it (from the published file's
``_lineage``). A static page: no scripts, so it opens from a shared drive or an e-mail.
"""
from __future__ import annotations

import datetime as dt
from html import escape
from pathlib import Path

from pipelines.audit import AuditLog
from pipelines.contracts import ARTICLE6_BASES, Contract, ContractError
from pipelines.governance import (FlowHistory, FlowStatus, flow_history, flow_statuses,
                                  published_dependants)
from pipelines.settings import Settings
from pipelines.stages import stage

REGISTER_NAME = "ig_register.html"
QUALITY_REPORT = "quality.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; font-size: .82rem; }
th, td { border: 1px solid #ccc; padding: .4rem .5rem; vertical-align: top; text-align: left; }
th { background: #f0f3f6; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.agreement { min-width: 11rem; } td.parties { min-width: 11rem; } td.purpose { min-width: 15rem; }
td.basis { min-width: 8rem; } td.flowed { min-width: 12rem; }
.nowrap { white-space: nowrap; }
.status { font-weight: 600; padding: .1rem .4rem; border-radius: .3rem; white-space: nowrap; }
.approved { background: #d8f0dc; } .draft { background: #eee; }
.suspended, .terminated, .expired, .invalid, .missing { background: #f8d7d7; }
.not_yet_valid { background: #fff1c2; }
.soon { color: #a05a00; font-weight: 600; }
.notice { border-left: 4px solid #b00; padding: .3rem .8rem; background: #fbeeee; }
.ok { border-left: 4px solid #2a7a3a; padding: .3rem .8rem; background: #eef7ef; }
"""


def _status_badge(status: str) -> str:
    return f'<span class="status {escape(status)}">{escape(status.replace("_", " "))}</span>'


def _expiry(expires: dt.date, on: dt.date) -> str:
    days = (expires - on).days
    if days < 0:
        return f"{expires}<br>expired {-days} days ago"
    note = f"in {days} days"
    return f'{expires}<br><span class="{"soon" if days <= 90 else ""}">{note}</span>'


def _row(flow: FlowStatus, contract: Contract | None, history: FlowHistory,
         dependants: list[tuple[str, str]], on: dt.date) -> str:
    tables = "<br>".join(f"{escape(t)} ({escape(rel)})" for t, rel in dependants) or "none"
    last = (history.last_accepted or "never")[:16].replace("T", " ")
    flowed = [f'<td class="flowed"><b>{history.deliveries}</b> deliveries, <b>{history.rows:,}</b> rows'
              f"<br>last accepted: {escape(last)}<br><b>{history.quarantined}</b> quarantined"
              f"<br><b>{history.extracts_deleted}</b> deleted (retention)</td>"]
    if contract is None:
        cells = [f'<td class="agreement"><b>{escape(flow.contract_id)}</b><br>{escape(flow.file)}</td>',
                 f"<td>{_status_badge(flow.status)}<br>{escape(flow.reason)}</td>",
                 '<td colspan="6">The contract cannot be read, so its terms are unknown and its flow '
                 "is held. Run <code>placelink contracts check</code>.</td>"]
    else:
        t = contract.terms
        basis = escape(t.lawful_basis_article6)
        if t.article9_condition:
            basis += f"<br>{escape(t.article9_condition)}"
        reason = "" if flow.in_use else f"<br>{escape(flow.reason)}; data left out of linkage and publication"
        cells = [
            f'<td class="agreement"><b>{escape(contract.id)}</b> v{escape(contract.version)}<br>'
            f"{escape(contract.path.name)}</td>",
            f"<td>{_status_badge(flow.status)}{reason}</td>",
            f'<td class="parties">{escape(t.provider.name)} &rarr; {escape(t.recipient.name)}<br>'
            f"({escape(t.controllership)} controllers)</td>",
            f'<td class="purpose">{escape(t.purpose)}</td>',
            f'<td class="basis">{basis}</td>',
            f"<td>{'applies' if t.national_data_opt_out_applies else 'does not apply'}</td>",
            f'<td>from <span class="nowrap">{t.valid_from}</span><br>review by <span class="nowrap">{t.review_by}</span></td>',
            f'<td class="nowrap">{_expiry(t.expires, on)}</td>',
        ]
    return (f'<tr data-contract="{escape(flow.contract_id)}">' + "".join(cells) + "".join(flowed)
            + f"<td>{tables}</td></tr>")


def render_register(contracts: dict[str, Contract], problems: dict[str, ContractError],
                    audit: AuditLog, published: Path, quality_report: Path | None,
                    on: dt.date, generated_at: dt.datetime) -> str:
    statuses = flow_statuses(contracts, problems, on)
    history = flow_history(audit)
    dependants = published_dependants(published)
    tampering = audit.verify()
    integrity = (f'<p class="notice">The audit log is <b>not intact</b>: line {tampering.line}: '
                 f"{escape(tampering.reason)}</p>" if tampering else
                 '<p class="ok">The audit log is intact (hash chain verified when this page was made).</p>')
    excluded = [s for s in statuses.values() if not s.in_use]
    exclusion_note = ("" if not excluded else
                      '<p class="notice">Not in force, so their data is left out of linkage and every '
                      "published table: " + ", ".join(f"{escape(s.label)} ({escape(s.status)})"
                                                      for s in excluded) + "</p>")
    quality = (f'<p>Data quality: <a href="{escape(quality_report.name)}">quality report</a></p>'
               if quality_report and quality_report.exists() else "")
    rows = "\n".join(_row(s, contracts.get(cid), history.get(cid, FlowHistory()), dependants.get(cid, []), on)
                     for cid, s in sorted(statuses.items()))
    headers = ["Agreement", "Status", "Parties", "Purpose", "Lawful basis (Art. 6 / Art. 9)",
               "National Data Opt-out", "Dates", "Expires", "What flowed under it",
               "Published tables relying on it"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Information-governance register</title>
<style>{_STYLE}</style></head>
<body>
<h1>Information-governance register</h1>
<p class="meta">{len(statuses)} data-sharing agreements. Generated {escape(generated_at.isoformat(timespec="seconds"))}
from <code>contracts/</code>, the audit log and the published file. Article 6 bases:
{escape(", ".join(f"{c} {n}" for c, n in ARTICLE6_BASES.items()))}.</p>
{integrity}
{exclusion_note}
{quality}
<table id="agreements">
<thead><tr>{"".join(f"<th>{escape(h)}</th>" for h in headers)}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="meta">Counts come from the append-only audit log; row counts are rows accepted at arrival
(later corrections replace earlier rows). "source": the table reads the agreement's data;
"linkage": the agreement's records only took part in matching people.</p>
</body></html>
"""


@stage("reports")
def write_register(settings: Settings, contracts: dict[str, Contract], problems: dict[str, ContractError],
                   on: dt.date | None = None, now: dt.datetime | None = None) -> Path:
    """Write ``reports/ig_register.html`` and return its path."""
    settings.reports.mkdir(parents=True, exist_ok=True)
    page = settings.reports / REGISTER_NAME
    html = render_register(contracts, problems, settings.audit_log(), settings.published,
                           settings.reports / QUALITY_REPORT, on or settings.today(),
                           now or settings.now())
    building = page.with_name(f".{page.name}.building")
    building.write_text(html, encoding="utf-8")
    building.replace(page)
    return page
