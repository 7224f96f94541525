"""Withdraw records the hub already holds: a person opted out, or a record must be erased.

``prepare_withdrawal`` is what ``placelink partner withdraw`` runs at the partner. It takes the
partner's own record ids, finds their ``record_token`` in the partner-only lookups that
``partner prepare`` kept (``OUT/partner-only/<contract>__<dataset>__*.lookup.parquet``), and
writes a withdrawal list: one column, ``record_token``, with a header saying why (``opt_out``
or ``erasure``) and how many ids were not found. Nothing else about the records leaves the
partner. The list is then sealed like an extract (encrypted for the hub, signed by the partner,
envelope ``kind: withdrawal``); the hub deletes those records and everything derived from them
(:mod:`pipelines.hub.withdrawals`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.exchange.envelope import ENVELOPE_SUFFIX, EnvelopeHeader, seal
from pipelines.exchange.extract_file import HEADER_METADATA_KEY, LOOKUP_SUFFIX, PARTNER_ONLY_DIR
from pipelines.exchange.keys import HubPublicKey, SigningKey
from pipelines.governance.contracts import Contract
from pipelines.partner_kit.errors import PartnerKitError

WITHDRAWAL_FORMAT = "placelink-withdrawal/1"
REASONS = ("opt_out", "erasure")


@dataclass(frozen=True)
class PreparedWithdrawal:
    """The sealed withdrawal list for the hub, and what the partner keeps."""

    envelope_path: Path
    envelope: EnvelopeHeader
    list_path: Path  # partner-only: the clear list inside the envelope
    report_path: Path  # partner-only: counts
    withdrawn: int  # record tokens in the list
    not_found: int  # record ids in no lookup (never sent, or sent under another dataset)


def read_record_ids(path: Path) -> pl.Series:
    """Record ids from a CSV with a ``record_id`` column (or one id per line), as text."""
    path = Path(path)
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise PartnerKitError(
            f"{path.name}: cannot be read as CSV ({type(exc).__name__})"
        ) from None
    if "record_id" not in frame.columns:
        if len(frame.columns) != 1:
            raise PartnerKitError(
                f"{path.name}: needs a 'record_id' column (found: {', '.join(frame.columns)})"
            )
        frame = pl.read_csv(path, infer_schema=False, has_header=False, new_columns=["record_id"])
    ids = frame["record_id"].str.strip_chars().drop_nulls()
    return ids.filter(ids != "").unique()


def partner_lookups(folder: Path, contract: Contract, dataset: str) -> list[Path]:
    """Every lookup the partner kit kept for this contract and dataset in ``folder`` (an outbox, or
    its ``partner-only`` folder)."""
    folder = Path(folder)
    if (folder / PARTNER_ONLY_DIR).is_dir():
        folder = folder / PARTNER_ONLY_DIR
    return sorted(folder.glob(f"{contract.id}__{dataset}__*{LOOKUP_SUFFIX}"))


def prepare_withdrawal(
    contract: Contract,
    dataset: str,
    record_ids: Path | pl.Series,
    lookups: list[Path],
    out_dir: Path,
    signing_key: SigningKey,
    hub_key: HubPublicKey,
    reason: str,
    now: dt.datetime,
) -> PreparedWithdrawal:
    """Seal a withdrawal list of the records ``record_ids`` names, found through ``lookups``.

    The caller may rely on: only record tokens reach the envelope; ids found in no lookup are
    counted, never sent; an empty result is refused (there is nothing to withdraw).
    """
    contract.dataset(dataset)  # the dataset must be the contract's
    if reason not in REASONS:
        raise PartnerKitError(f"reason '{reason}': use one of {', '.join(REASONS)}")
    if signing_key.partner_id != contract.partner_id:
        raise PartnerKitError(
            f"signing key is partner '{signing_key.partner_id}'s, but contract {contract.label} "
            f"is for partner '{contract.partner_id}'"
        )
    if not lookups:
        raise PartnerKitError(
            f"no record lookup for {contract.id}/{dataset}: withdraw from the folder where "
            "`placelink partner prepare` wrote this dataset's extracts (its partner-only lookups)"
        )
    ids = (
        read_record_ids(record_ids)
        if isinstance(record_ids, (str, Path))
        else record_ids.cast(pl.String)
    )
    table = pl.concat(
        [
            pl.read_parquet(p).select(pl.col("record_id").cast(pl.String), "record_token")
            for p in lookups
        ]
    ).unique()
    found = table.join(ids.to_frame("record_id"), on="record_id", how="inner")
    tokens = found["record_token"].unique().sort()
    not_found = ids.len() - found["record_id"].n_unique()
    if tokens.is_empty():
        raise PartnerKitError(
            f"none of the {ids.len()} record id(s) is in the {len(lookups)} lookup(s) for "
            f"{contract.id}/{dataset}: nothing the hub holds to withdraw"
        )

    withdrawal_id = uuid.uuid4().hex
    period = now.strftime("%Y-%m")
    stem = f"{contract.id}__{dataset}__withdrawal__{withdrawal_id[:8]}"
    private = Path(out_dir) / PARTNER_ONLY_DIR
    private.mkdir(parents=True, exist_ok=True)
    header = {
        "format": WITHDRAWAL_FORMAT,
        "withdrawal_id": withdrawal_id,
        "contract_id": contract.id,
        "contract_version": contract.version,
        "partner_id": contract.partner_id,
        "dataset": dataset,
        "reason": reason,
        "created_at": now.isoformat(timespec="seconds"),
        "row_count": tokens.len(),
    }
    arrow = pa.table({"record_token": tokens.to_arrow().cast(pa.string())})
    arrow = arrow.replace_schema_metadata({HEADER_METADATA_KEY: json.dumps(header)})
    list_path = private / f"{stem}.parquet"
    tmp = list_path.with_name(f".{list_path.name}.tmp")
    pq.write_table(arrow, tmp, compression="zstd")
    os.replace(tmp, list_path)
    envelope_path = Path(out_dir) / f"{stem}{ENVELOPE_SUFFIX}"
    envelope = seal(
        list_path,
        envelope_path,
        contract_id=contract.id,
        contract_version=contract.version,
        partner_id=contract.partner_id,
        dataset=dataset,
        reporting_period=period,
        created_at=header["created_at"],
        row_count=tokens.len(),
        signing_key=signing_key,
        hub_key=hub_key,
        envelope_id=withdrawal_id,
        kind="withdrawal",
    )
    report_path = private / f"{stem}.report.json"
    report_path.write_text(
        json.dumps(
            {
                **header,
                "record_ids_given": ids.len(),
                "not_found": not_found,
                "lookups": [p.name for p in lookups],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return PreparedWithdrawal(
        envelope_path, envelope, list_path, report_path, tokens.len(), not_found
    )
