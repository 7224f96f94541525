"""The information-governance register: ``ig_register.html`` and ``ig_register.csv``.

One entry per data-sharing agreement (valid or not): status today, parties, purpose and what
the data may not be used for, lawful basis (Article 6, Article 9, gateway, confidentiality),
National Data Opt-out, DPIA, retention, delivery cadence, dates, who must sign and who has
signed (when, and which signatures do not count), a renewal waiting for signatures (version,
end date, who has signed it so far), what flowed under it (from the audit log:
deliveries, rows, quarantined, withdrawals, deletions by retention) and which published tables
rely on it (from the published file's ``_lineage``). The page says whether the audit log
verifies (chain, signed head, the head the published file carries).

It is built after every publication and on demand, without a run (``placelink contracts
register --out DIR``). The page is static (no scripts: it opens from a shared drive or an
e-mail) and reads at any width: a summary table that wraps inside the window, then one block
per agreement, nothing wider than the page. The CSV has one row per agreement for a board's
own spreadsheet.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from html import escape
from pathlib import Path

from pipelines.core.settings import Settings
from pipelines.core.stages import stage
from pipelines.governance.audit import (
    AuditHead,
    AuditLog,
    hub_audit_log,
    published_head,
    verify_log,
)
from pipelines.governance.contracts import ARTICLE6_BASES, SIGNING_ROLES, Contract, ContractError
from pipelines.governance.flows import (
    FlowHistory,
    FlowStatus,
    flow_history,
    flow_statuses,
    published_dependants,
)
from pipelines.governance.renewal import (
    RENEWALS,
    describe_renewal,
    signed_so_far,
    waiting_kind,
    waiting_renewals,
)

REGISTER_NAME = "ig_register.html"
REGISTER_CSV = "ig_register.csv"
QUALITY_REPORT = "quality.html"

_STYLE = """
html { -webkit-text-size-adjust: 100%; }
body { font-family: system-ui, sans-serif; margin: 1.2rem; color: #1b1b1b; line-height: 1.4;
       overflow-wrap: anywhere; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 1.6rem; }
h3 { font-size: 1.05rem; margin: 0 0 .5rem; }
p.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; font-size: .85rem; }
th, td { border: 1px solid #ccc; padding: .35rem .45rem; vertical-align: top; text-align: left; }
th { background: #f0f3f6; }
table.summary col.agreement { width: 24%; } table.summary col.status { width: 15%; }
table.summary col.parties { width: 25%; } table.summary col.signed { width: 12%; }
table.summary col.expires { width: 11%; } table.summary col.flowed { width: 13%; }
section.agreement { border: 1px solid #ccc; border-radius: .4rem; padding: .8rem 1rem; margin: 1rem 0; }
dl { display: grid; grid-template-columns: minmax(7rem, 13rem) minmax(0, 1fr); gap: .35rem 1rem; margin: 0; }
dt { font-weight: 600; color: #333; } dd { margin: 0; min-width: 0; }
dd ul { margin: 0; padding-left: 1.2rem; }
@media (max-width: 640px) { dl { grid-template-columns: minmax(0, 1fr); } dd { margin-bottom: .4rem; } }
code { overflow-wrap: anywhere; word-break: break-all; }
.num { font-variant-numeric: tabular-nums; }
.status { font-weight: 600; padding: .05rem .35rem; border-radius: .3rem; }
.approved { background: #d8f0dc; } .draft { background: #eee; }
.suspended, .terminated, .expired, .invalid, .missing, .unsigned { background: #f8d7d7; }
.not_yet_valid { background: #fff1c2; }
.soon { color: #a05a00; font-weight: 600; } .void { color: #9b1c1c; }
.notice { border-left: 4px solid #b00; padding: .3rem .8rem; background: #fbeeee; }
.ok { border-left: 4px solid #2a7a3a; padding: .3rem .8rem; background: #eef7ef; }
"""


def plural(count: int, one: str, many: str | None = None) -> str:
    """``1 delivery``, ``2 deliveries``, ``0 rows``, with thousands separated."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


def cadence(contract: Contract) -> str:
    """When the agreement says each dataset is delivered (its ``delivery`` term), in words."""
    if contract.terms.delivery is None:
        return "not stated in the agreement (a late or missing extract is not reported)"
    schedules = {name: contract.delivery_schedule(name) for name in contract.datasets}
    if len(set(schedules.values())) == 1:
        return next(iter(schedules.values())).describe()
    return "; ".join(f"{name}: {schedule.describe()}" for name, schedule in schedules.items())


@dataclass(frozen=True)
class Entry:
    """One agreement as the register shows it."""

    flow: FlowStatus
    contract: Contract | None
    history: FlowHistory
    tables: list[tuple[str, str]]
    # A renewal waiting in renewals/ for its signatures, or why its file is invalid.
    renewal: Contract | ContractError | None = None


def _signatures(contract: Contract) -> list[dict]:
    """Each required role: who signed, when, or that nobody has; then signatures that do not count."""
    approval = contract.approval
    if approval is None:
        return []
    met = approval.met
    rows = []
    for requirement in approval.required:
        check = met.get(requirement)
        rows.append(
            {
                "role": approval.labels[requirement],
                "signed_by": check.signer.name if check else "",
                "signed_on": check.signed_on if check else "",
                "counts": bool(check),
                "problem": "",
            }
        )
    for check in approval.void:
        role = SIGNING_ROLES.get(check.entry.role, check.entry.role)
        rows.append(
            {
                "role": f"{role} of the {check.entry.party}",
                "signed_by": check.who,
                "signed_on": check.signed_on,
                "counts": False,
                "problem": check.problem,
            }
        )
    return rows


def _status_badge(status: str) -> str:
    return f'<span class="status {escape(status)}">{escape(status.replace("_", " "))}</span>'


def _expiry(expires: dt.date, on: dt.date) -> str:
    days = (expires - on).days
    if days < 0:
        return f"{expires}<br>expired {plural(-days, 'day')} ago"
    return (
        f'{expires}<br><span class="{"soon" if days <= 90 else ""}">in {plural(days, "day")}</span>'
    )


def _flowed(h: FlowHistory) -> str:
    last = (h.last_accepted or "never")[:16].replace("T", " ")
    return (
        f"{plural(h.deliveries, 'delivery', 'deliveries')}, {plural(h.rows, 'row')}; last accepted {escape(last)}; "
        f"{plural(h.quarantined, 'file')} quarantined; "
        f"{plural(h.withdrawals, 'withdrawal list')} ({plural(h.records_withdrawn, 'record')} withdrawn); "
        f"{plural(h.extracts_deleted, 'extract')} deleted by retention"
    )


def _summary_row(entry: Entry, on: dt.date) -> str:
    flow, c, h = entry.flow, entry.contract, entry.history
    anchor = f'<a href="#c-{escape(flow.contract_id)}">{escape(flow.contract_id)}</a>'
    if c is None:
        cells = [
            f"{anchor}<br>{escape(flow.file)}",
            _status_badge(flow.status),
            "unknown (the file cannot be read)",
            "&ndash;",
            "&ndash;",
        ]
    else:
        approval = c.approval
        signed = (
            f"{len(approval.required) - len(approval.missing)} of {len(approval.required)}"
            if approval
            else "not checked"
        )
        cells = [
            f"{anchor} v{escape(c.version)}<br>{escape(c.path.name)}",
            _status_badge(flow.status),
            f"{escape(c.terms.provider.name)} &rarr; {escape(c.terms.recipient.name)}",
            signed,
            _expiry(c.terms.expires, on) + _renewal_note(entry.renewal),
        ]
    cells.append(f"{plural(h.deliveries, 'delivery', 'deliveries')}<br>{plural(h.rows, 'row')}")
    return (
        f'<tr data-contract="{escape(flow.contract_id)}">'
        + "".join(f"<td>{x}</td>" for x in cells)
        + "</tr>"
    )


def _renewal_note(renewal: Contract | ContractError | None) -> str:
    if renewal is None:
        return ""
    if isinstance(renewal, ContractError):
        return '<br><span class="void">renewal invalid</span>'
    return (
        f"<br>{waiting_kind(renewal)} v{escape(renewal.version)} waiting: {signed_so_far(renewal)}"
    )


def _renewal(renewal: Contract | ContractError) -> str:
    if isinstance(renewal, ContractError):
        return (
            f'<span class="void">The renewal in {RENEWALS}/ is not a valid agreement</span>: '
            f"{escape(str(renewal))}. The version above stays in force. Fix or delete that file "
            f"(<code>placelink contracts check --dir</code> with the agreements' {RENEWALS}/ "
            "folder says what is wrong)."
        )
    t, approval = renewal.terms, renewal.approval
    text = (
        f"Version {escape(renewal.version)} (review by {t.review_by}; expires {t.expires}) waits in "
        f"<code>{RENEWALS}/{escape(renewal.path.name)}</code> for its signatures"
    )
    if approval is not None:
        text += f": {escape(approval.summary())}"
    return (
        text + ". The version above stays in force until the last required role signs the "
        f"{waiting_kind(renewal)} (<code>placelink contracts approve</code>)."
    )


def _detail(entry: Entry, on: dt.date) -> str:
    flow, c, h = entry.flow, entry.contract, entry.history
    tables = "<br>".join(f"{escape(t)} ({escape(rel)})" for t, rel in entry.tables) or "none"
    held = (
        ""
        if flow.in_use
        else f"<br>{escape(flow.reason)}; its data is left out of linkage and publication"
    )
    items: list[tuple[str, str]] = [("Status", _status_badge(flow.status) + held)]
    if c is None:
        items.append(
            (
                "Terms",
                "The contract cannot be read, so its terms are unknown and its flow is held. Run "
                "<code>placelink contracts check</code>.",
            )
        )
    else:
        t = c.terms
        basis = f"Article {escape(t.lawful_basis_article6)}"
        basis += (
            f"<br>Article {escape(t.article9_condition)}"
            if t.special_category_data and t.article9_condition
            else "<br>No special category data"
        )
        signatures = _signatures(c)
        rows = "".join(
            f"<tr><td>{escape(s['role'])}</td><td>"
            + (escape(s["signed_by"]) if s["signed_by"] else "<b>not signed</b>")
            + f"</td><td>{escape(s['signed_on'])}</td><td>"
            + (
                "counts"
                if s["counts"]
                else f'<span class="void">{escape(s["problem"]) or "missing"}</span>'
            )
            + "</td></tr>"
            for s in signatures
        )
        items += [
            (
                "Parties",
                f"{escape(t.provider.name)} ({escape(t.provider.role.replace('_', ' '))}) &rarr; "
                f"{escape(t.recipient.name)} ({escape(t.recipient.role.replace('_', ' '))}); "
                f"{escape(t.controllership)} controllers; partner id <code>{escape(t.partner_id)}</code>",
            ),
            ("Purpose", escape(t.purpose)),
            (
                "Not to be used for",
                "<ul>" + "".join(f"<li>{escape(u)}</li>" for u in t.prohibited_uses) + "</ul>",
            ),
            ("Lawful basis", basis),
            ("Legal gateway", escape(t.legal_gateway)),
            ("Confidentiality", escape(t.common_law_duty_of_confidentiality)),
            (
                "National Data Opt-out",
                "applies: removed at the partner before tokenising"
                if t.national_data_opt_out_applies
                else "does not apply",
            ),
            ("DPIA", escape(t.dpia_reference)),
            (
                "Retention",
                f"{plural(t.retention.period_months, 'month')} from receipt, then: "
                f"{escape(t.retention.deletion_method)}",
            ),
            ("Delivery cadence", escape(cadence(c))),
            (
                "Dates",
                f"valid from {t.valid_from}; review by {t.review_by}; expires {_expiry(t.expires, on)}",
            ),
            (
                "Signatures",
                ("" if not c.approval else escape(c.approval.summary()) + ". ")
                + f"Signed content <code>{escape(c.content_sha256)}</code>"
                + (
                    '<table class="signatures"><thead><tr><th>required role</th><th>signed by</th><th>on</th>'
                    f"<th>counts?</th></tr></thead><tbody>{rows}</tbody></table>"
                    if rows
                    else ""
                ),
            ),
        ]
    if entry.renewal is not None:
        items.append(("Renewal", _renewal(entry.renewal)))
    items += [("What flowed", _flowed(h)), ("Published tables relying on it", tables)]
    title = escape(flow.contract_id) + (
        f" v{escape(c.version)}: {escape(c.name)}" if c else f" ({escape(flow.file)})"
    )
    body = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in items)
    return (
        f'<section class="agreement" id="c-{escape(flow.contract_id)}" data-contract="{escape(flow.contract_id)}">'
        f"<h3>{title}</h3><dl>{body}</dl></section>"
    )


def register_entries(
    contracts: dict[str, Contract],
    problems: dict[str, ContractError],
    audit: AuditLog,
    published: Path,
    on: dt.date,
    renewals: dict[str, Contract | ContractError] | None = None,
) -> list[Entry]:
    statuses = flow_statuses(contracts, problems, on)
    history = flow_history(audit)
    dependants = published_dependants(published)
    renewals = renewals or {}
    return [
        Entry(
            s,
            contracts.get(cid),
            history.get(cid, FlowHistory()),
            dependants.get(cid, []),
            renewals.get(cid),
        )
        for cid, s in sorted(statuses.items())
    ]


def render_register(
    contracts: dict[str, Contract],
    problems: dict[str, ContractError],
    audit: AuditLog,
    published: Path,
    quality_report: Path | None,
    on: dt.date,
    generated_at: dt.datetime,
    head: AuditHead | None = None,
    source: str = "the contracts folder",
    renewals: dict[str, Contract | ContractError] | None = None,
) -> str:
    entries = register_entries(contracts, problems, audit, published, on, renewals)
    integrity = _integrity(audit, head, published)
    excluded = [e.flow for e in entries if not e.flow.in_use]
    exclusion_note = (
        ""
        if not excluded
        else '<p class="notice">Not in force, so their data is left out of linkage and every '
        "published table: "
        + ", ".join(f"{escape(s.label)} ({escape(s.status.replace('_', ' '))})" for s in excluded)
        + "</p>"
    )
    quality = (
        f'<p>Data quality: <a href="{escape(quality_report.name)}">quality report</a></p>'
        if quality_report and quality_report.exists()
        else ""
    )
    headers = ["Agreement", "Status", "Parties", "Signed off", "Expires", "Flowed"]
    columns = "".join(
        f'<col class="{c}">'
        for c in ("agreement", "status", "parties", "signed", "expires", "flowed")
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Information-governance register</title>
<style>{_STYLE}</style></head>
<body>
<h1>Information-governance register</h1>
<p class="meta">{plural(len(entries), "data-sharing agreement")}, as of {on}. Generated
{escape(generated_at.isoformat(timespec="seconds"))} from {escape(source)}, the audit log and the published
file; the same rows are in <a href="{REGISTER_CSV}">{REGISTER_CSV}</a>. Article 6 bases:
{escape(", ".join(f"{c} {n}" for c, n in ARTICLE6_BASES.items()))}.</p>
{integrity}
{exclusion_note}
{quality}
<h2>Summary</h2>
<table id="agreements" class="summary">
<colgroup>{columns}</colgroup>
<thead><tr>{"".join(f"<th>{escape(h)}</th>" for h in headers)}</tr></thead>
<tbody>
{chr(10).join(_summary_row(e, on) for e in entries)}
</tbody>
</table>
<h2>Agreements</h2>
{chr(10).join(_detail(e, on) for e in entries)}
<p class="meta">Counts come from the append-only audit log; row counts are rows accepted at arrival
(later corrections replace earlier rows). "source": the table reads the agreement's data;
"linkage": the agreement's records only took part in matching people. A signature counts when its
key is in the hub's approver registry for that role and organisation and it covers the
agreement's current signed content.</p>
</body></html>
"""


def _integrity(audit: AuditLog, head: AuditHead | None, published: Path) -> str:
    if head is None:
        broken = audit.verify()
        return (
            f'<p class="notice">The audit log is <b>not intact</b>: line {broken.line}: {escape(broken.reason)}</p>'
            if broken
            else '<p class="ok">The audit log\'s hash chain verifies.</p>'
        )
    try:
        carried = published_head(published)
    except (ValueError, KeyError, TypeError):
        carried = None
    failed = [f for f in verify_log(audit, head, carried, published.name) if not f.ok]
    if failed:
        return (
            '<p class="notice">The audit log is <b>not intact</b>: '
            + "; ".join(f"{escape(f.check)}: {escape(f.detail)}" for f in failed)
            + "</p>"
        )
    return (
        '<p class="ok">The audit log is intact: its hash chain verifies and it ends where the hub last '
        "signed it (checked when this page was made; <code>placelink audit verify</code>).</p>"
    )


CSV_COLUMNS = (
    "contract_id",
    "version",
    "file",
    "status",
    "in_use",
    "reason",
    "provider",
    "recipient",
    "controllership",
    "purpose",
    "prohibited_uses",
    "article6",
    "article9",
    "legal_gateway",
    "confidentiality_basis",
    "national_data_opt_out",
    "dpia",
    "retention_months",
    "deletion_method",
    "delivery_cadence",
    "valid_from",
    "review_by",
    "expires",
    "signatures_required",
    "signatures_valid",
    "signatures",
    "signed_content_sha256",
    "renewal_version",
    "renewal_expires",
    "renewal_signatures",
    "deliveries",
    "rows",
    "last_accepted",
    "quarantined",
    "withdrawal_lists",
    "records_withdrawn",
    "extracts_deleted_by_retention",
    "published_tables",
)


def register_csv(entries: list[Entry]) -> str:
    """One row per agreement, the register's columns (semicolons between items of a cell)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for e in entries:
        flow, c, h = e.flow, e.contract, e.history
        row = {
            "contract_id": flow.contract_id,
            "version": flow.version or "",
            "file": flow.file,
            "status": flow.status,
            "in_use": flow.in_use,
            "reason": flow.reason,
            "deliveries": h.deliveries,
            "rows": h.rows,
            "last_accepted": h.last_accepted or "",
            "quarantined": h.quarantined,
            "withdrawal_lists": h.withdrawals,
            "records_withdrawn": h.records_withdrawn,
            "extracts_deleted_by_retention": h.extracts_deleted,
            "published_tables": "; ".join(f"{t} ({rel})" for t, rel in e.tables),
        }
        if isinstance(e.renewal, Contract):
            row.update(
                {
                    "renewal_version": e.renewal.version,
                    "renewal_expires": e.renewal.terms.expires,
                    "renewal_signatures": signed_so_far(e.renewal),
                }
            )
        elif e.renewal is not None:
            row["renewal_signatures"] = describe_renewal(e.renewal)
        if c is not None:
            t = c.terms
            signatures = _signatures(c)
            row.update(
                {
                    "provider": t.provider.name,
                    "recipient": t.recipient.name,
                    "controllership": t.controllership,
                    "purpose": t.purpose,
                    "prohibited_uses": "; ".join(t.prohibited_uses),
                    "article6": t.lawful_basis_article6,
                    "article9": t.article9_condition or "",
                    "legal_gateway": t.legal_gateway,
                    "confidentiality_basis": t.common_law_duty_of_confidentiality,
                    "national_data_opt_out": t.national_data_opt_out_applies,
                    "dpia": t.dpia_reference,
                    "retention_months": t.retention.period_months,
                    "deletion_method": t.retention.deletion_method,
                    "delivery_cadence": cadence(c),
                    "valid_from": t.valid_from,
                    "review_by": t.review_by,
                    "expires": t.expires,
                    "signatures_required": len(t.required_signatures),
                    "signatures_valid": sum(s["counts"] for s in signatures),
                    "signatures": "; ".join(
                        f"{s['role']}: "
                        + (f"{s['signed_by']} {s['signed_on']}" if s["signed_by"] else "not signed")
                        + ("" if s["counts"] else f" (does not count: {s['problem'] or 'missing'})")
                        for s in signatures
                    ),
                    "signed_content_sha256": c.content_sha256,
                }
            )
        writer.writerow(row)
    return out.getvalue()


def _write(path: Path, text: str) -> None:
    building = path.with_name(f".{path.name}.building")
    building.write_text(text, encoding="utf-8")
    building.replace(path)


@stage("reports")
def write_register(
    settings: Settings,
    contracts: dict[str, Contract],
    problems: dict[str, ContractError],
    on: dt.date | None = None,
    now: dt.datetime | None = None,
    out: Path | None = None,
) -> Path:
    """Write ``ig_register.html`` and ``ig_register.csv`` to ``out`` (default: ``reports/``);
    returns the page's path."""
    folder = out or settings.reports
    folder.mkdir(parents=True, exist_ok=True)
    on = on or settings.today()
    audit = hub_audit_log(settings)
    head = AuditHead(settings.audit_head_path, settings.audit_key_path)
    renewals = waiting_renewals(settings)
    page = folder / REGISTER_NAME
    html = render_register(
        contracts,
        problems,
        audit,
        settings.published,
        settings.reports / QUALITY_REPORT,
        on,
        now or settings.now(),
        head,
        f"{settings.contracts_dir} ({settings.contracts_source})",
        renewals,
    )
    _write(page, html)
    _write(
        folder / REGISTER_CSV,
        register_csv(
            register_entries(contracts, problems, audit, settings.published, on, renewals)
        ),
    )
    return page
