"""What the published file was built from, so that a run with nothing new says so and leaves
linkage and publication alone (issue 21).

A publication's inputs are everything that can change a published figure: the deliveries the
warehouse holds (accepted extracts and withdrawals), retention deletions, each agreement's file and
its status today, the saved linkage model, the SQL models, the hub's own code, the area reference
and the settings that change results. Each is kept as a SHA-256 of its parts (extract ids, file
bytes; never a record, a token or a value), with the published file's own SHA-256, in
``hub.publications`` when a publication is complete. A run whose inputs equal the last
publication's, and whose published file is the one that publication wrote, has nothing new.

Recording is the last thing a publication does: a run killed before it is simply not a
publication, and the next run builds the file again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.core.settings import REPO_ROOT, Settings
from pipelines.core.warehouse import table_exists
from pipelines.governance.audit import AuditLog
from pipelines.governance.contracts import Contract, ContractError
from pipelines.governance.flows import flow_statuses
from pipelines.linkage.model import MODEL_FILE

# What each input is, as a run's output says it changed.
INPUT_NAMES = {
    "deliveries": "deliveries (new extracts or withdrawals)",
    "retention": "retention deletions",
    "agreements": "data-sharing agreements (files or status today)",
    "linkage_model": "the saved linkage model",
    "sql_models": "the SQL models",
    "code": "the hub's code",
    "area_reference": "the area reference",
    "settings": "settings that change results",
}
# The hub's code: what is imported to link, model and publish.
CODE_FOLDERS = ("pipelines", "assets")


@dataclass(frozen=True)
class Publication:
    run_id: str | None
    published_at: dt.datetime
    inputs: dict[str, str]
    published_sha256: str


@dataclass(frozen=True)
class Verdict:
    """Whether a run has anything new to link and publish, and why (one line a person reads)."""

    nothing_new: bool
    reason: str
    changed: list[str]
    last: Publication | None


def _digest(parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.rglob(pattern) if p.is_file()) if folder.is_dir() else []


def _file_digest(path: Path) -> str:
    if not path.is_file():
        return "absent"
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _folder_digest(folder: Path, pattern: str) -> str:
    return _digest(
        part
        for path in _files(folder, pattern)
        for part in (path.relative_to(folder).as_posix(), _file_digest(path))
    )


def current_inputs(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    problems: dict[str, ContractError],
) -> dict[str, str]:
    """The SHA-256 of each input of a publication as the hub stands now (INPUT_NAMES)."""
    deliveries = (
        con.execute(
            "SELECT extract_id, coalesce(kind, 'extract') FROM hub.deliveries "
            "WHERE status = 'accepted' ORDER BY 1, 2"
        ).fetchall()
        if table_exists(con, "hub", "deliveries")
        else []
    )
    deleted = (
        con.execute("SELECT extract_id FROM hub.retention_deletions ORDER BY 1").fetchall()
        if table_exists(con, "hub", "retention_deletions")
        else []
    )
    statuses = flow_statuses(contracts, problems, settings.today())
    return {
        "deliveries": _digest(f"{extract_id} {kind}" for extract_id, kind in deliveries),
        "retention": _digest(row[0] for row in deleted),
        "agreements": _digest(
            [
                _folder_digest(settings.contracts_dir, "*.yaml"),
                *(
                    f"{s.contract_id} {s.version} {s.status} {s.in_use}"
                    for _, s in sorted(statuses.items())
                ),
            ]
        ),
        "linkage_model": _file_digest(settings.models / MODEL_FILE),
        "sql_models": _folder_digest(settings.sql_dir, "*.sql"),
        "code": _digest(_folder_digest(REPO_ROOT / folder, "*.py") for folder in CODE_FOLDERS),
        "area_reference": _file_digest(settings.reference / "lsoa_reference.csv"),
        "settings": _digest(
            [
                settings.linkage_threshold,
                settings.linkage_max_cluster_size,
                settings.linkage_max_link_rate_change,
                settings.linkage_backend,
                settings.linkage_sensitivity_thresholds,
            ]
        ),
    }


def last_publication(con: duckdb.DuckDBPyConnection) -> Publication | None:
    if not table_exists(con, "hub", "publications"):
        return None
    rows = con.execute(
        "SELECT run_id, published_at, inputs, published_sha256 FROM hub.publications"
    ).fetchall()
    if not rows:
        return None
    run_id, published_at, inputs, published_sha256 = rows[0]
    return Publication(run_id, published_at, json.loads(inputs), published_sha256)


def record_publication(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    problems: dict[str, ContractError],
    run_id: str | None,
    now: dt.datetime,
) -> Publication:
    """Record what the file just published was built from (the last step of a publication)."""
    publication = Publication(
        run_id,
        now.replace(tzinfo=None),
        current_inputs(settings, con, contracts, problems),
        _file_digest(settings.published),
    )
    # One row, the latest publication's: by when it was written, not by the clock's times (a hub's clock
    # may be set back; the audit log keeps every publication).
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM hub.publications")
        con.execute(
            "INSERT INTO hub.publications VALUES (?, ?, ?, ?)",
            [
                publication.run_id,
                publication.published_at,
                json.dumps(publication.inputs, sort_keys=True),
                publication.published_sha256,
            ],
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return publication


def anything_new(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    problems: dict[str, ContractError],
    forced: str | None = None,
) -> Verdict:
    """Whether linkage and publication have anything new to do since the last publication.

    ``forced``: why this run rebuilds whatever the inputs say (a retrain, a backfill), or None."""
    last = last_publication(con)
    if forced:
        return Verdict(False, forced, [], last)
    if last is None:
        return Verdict(False, "nothing has been published yet", [], None)
    now = current_inputs(settings, con, contracts, problems)
    changed = [
        INPUT_NAMES.get(name, name)
        for name in INPUT_NAMES
        if now.get(name) != last.inputs.get(name)
    ]
    if _file_digest(settings.published) != last.published_sha256:
        changed.append("the published file is missing or not the one last published")
    when = f"{last.published_at:%Y-%m-%d %H:%M} UTC" + (
        f" by run {last.run_id}" if last.run_id else ""
    )
    if changed:
        return Verdict(
            False, f"changed since the publication of {when}: {', '.join(changed)}", changed, last
        )
    return Verdict(
        True,
        f"nothing new since the publication of {when} (no new delivery, withdrawal, retention "
        "deletion, agreement change, model retrain, or code or SQL change): linkage, the models "
        "and publication are skipped and the published file is unchanged",
        [],
        last,
    )


def audit_nothing_new(audit: AuditLog, verdict: Verdict) -> dict:
    """The ``run_nothing_new`` audit event of a run that skipped linkage and publication."""
    return audit.append(
        "run_nothing_new",
        reason="no input changed since the last publication",
        last_publication_run=verdict.last.run_id,
    )
