"""The partners' side of a synthetic place: each partner's kit over the place's raw extracts.

The demo, the benchmarks and the tests all play the partners the same way: every dataset of
every contract, read from ``<place>/raw/<partner>/<dataset>.csv``, with the place's postcode
lookup, and with its National Data Opt-out list where the contract says the opt-out applies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipelines.governance.contracts import Contract
from pipelines.partner_kit.prepare import PreparedExtract, prepare_extract
from pipelines.partner_kit.tokens import LinkageKey
from pipelines.tooling.synth.study import DELIVERED_AT, DELIVERY_PERIOD


def contract_datasets(contracts: Iterable[Contract]) -> Iterator[tuple[Contract, str]]:
    """Every (contract, dataset) the contracts name, in the contracts' order."""
    for contract in contracts:
        for dataset in contract.datasets:
            yield contract, dataset


def prepare_place_dataset(
    contract: Contract,
    dataset: str,
    place: Path,
    outbox: Path,
    linkage_key: LinkageKey,
    *,
    raw: Path | None = None,
    opt_outs_list: Path | None = None,
    period: str = DELIVERY_PERIOD,
    now: dt.datetime = DELIVERED_AT,
    delivery_kind: str | None = None,
) -> PreparedExtract:
    """The partner's kit on one dataset of the synthetic place ``place``; the extract goes to
    ``outbox/<partner>/``.

    ``raw`` is the place's own raw extract unless given; ``opt_outs_list`` the place's opt-out
    list unless given, applied only where the contract says the National Data Opt-out applies.
    ``period``, ``now`` and ``delivery_kind`` are :func:`~pipelines.partner_kit.prepare.prepare_extract`'s.
    """
    reference = place / "reference"
    opt_outs = (
        (opt_outs_list or reference / "national_data_opt_outs.csv")
        if contract.terms.national_data_opt_out_applies
        else None
    )
    return prepare_extract(
        contract,
        dataset,
        raw or place / "raw" / contract.partner_id / f"{dataset}.csv",
        outbox / contract.partner_id,
        linkage_key,
        reference / "postcode_lookup.csv",
        opt_outs=opt_outs,
        period=period,
        now=now,
        delivery_kind=delivery_kind,
    )
