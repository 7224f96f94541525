"""Stage 1: receive extracts from the inbox and land them, one table per contract dataset.

Each landing table is partitioned by reporting month in the Dagster UI: ingest writes the tables
and reports, for every partner-month it landed, a materialisation of that month's partition (rows,
full or delta, the delivery's id and when it arrived), so the partition view shows which
partner-months arrived and which are missing. A late or corrected delivery for an earlier month
re-materialises that month; a run tagged ``placelink/months`` (``placelink run --month``)
re-materialises the months it names from what the hub holds (a backfill). Linkage, the models and
the published file are not partitioned: they read every month.
"""

import dagster as dg

from assets.resources import PlacelinkResource
from pipelines.core.settings import Settings
from pipelines.governance.contracts import load_contracts
from pipelines.hub.area_reference import (
    AREA_REFERENCE_FILE,
    contracts_sending_areas,
    landed_lsoa_rows,
    load_area_reference,
)
from pipelines.hub.delivery_months import (
    MONTHS_TAG,
    MonthDelivery,
    first_month,
    landing_table_rows,
    month_deliveries,
    month_start,
    months_after_calendar,
    parse_month,
)
from pipelines.hub.ingest import delivery_outcome, delivery_table, receive_inbox
from pipelines.linkage.person_keys import forget_identities

DELIVERIES = dg.AssetKey(["hub", "deliveries"])


def delivery_months(settings: Settings) -> dg.MonthlyPartitionsDefinition:
    """Reporting months, ``YYYY-MM``, from the month before the earliest agreement in
    ``settings``' contracts folder begins to the calendar's month, moving on with it, or to the
    hub's clock's month if PLACELINK_AS_OF puts it later."""
    contracts, _ = load_contracts(settings.contracts_dir)
    start = first_month(contracts.values(), settings.clock)
    # Dagster counts monthly partitions to the last complete month, plus end_offset months.
    return dg.MonthlyPartitionsDefinition(
        start_date=f"{start:%Y-%m}",
        fmt="%Y-%m",
        end_offset=months_after_calendar(month_start(settings.today())) + 1,
    )


def landing_specs(settings: Settings) -> tuple[dg.AssetSpec, ...]:
    """One landing asset per dataset of every valid contract in ``settings``' contracts folder
    (signed off or not: the graph shows every agreement's tables), partitioned by reporting month.
    Ingest writes them (their partner-months are reported by `received_extracts`)."""
    contracts, _ = load_contracts(settings.contracts_dir)
    months = delivery_months(settings)
    return tuple(
        dg.AssetSpec(
            ["landing", name],
            group_name="ingest",
            deps=[DELIVERIES],
            partitions_def=months,
            description=f"{dataset.description} Latest accepted rows under contract {c.label}; "
            "one partition per reporting month delivered.",
            metadata={"contract": c.label, "partner": c.partner_id},
        )
        for c in contracts.values()
        for name, dataset in c.datasets.items()
    )


def backfill_months(tags: dict[str, str]) -> list[str]:
    """The reporting months a run was asked to re-materialise (its ``placelink/months`` tag)."""
    text = tags.get(MONTHS_TAG, "")
    return sorted({parse_month(m) for m in text.split(",") if m.strip()})


def partner_month_metadata(deliveries: list[MonthDelivery], table_rows: int) -> dict:
    """What the UI shows for one dataset's month: its latest delivery, and how many there were."""
    latest = deliveries[-1]
    return {
        "rows": sum(d.rows_in_use for d in deliveries),
        "rows_delivered": latest.rows_delivered,
        "delivery_kind": latest.delivery_kind,
        "delivery_id": latest.extract_id,
        "file": latest.file_name,
        "received_at": latest.received_at.isoformat(sep=" ", timespec="seconds"),
        "deliveries": len(deliveries),
        "rows_in_landing_table": table_rows,
    }


@dg.asset(
    key=DELIVERIES,
    group_name="ingest",
    description="Every file that reached the inbox: accepted or quarantined, with the reason.",
)
def received_extracts(context: dg.AssetExecutionContext, placelink: PlacelinkResource):
    """Check every inbox file against its contract; land it or hold it in quarantine; report each
    partner-month landed (and the months a backfill names) on its landing asset's partition."""
    settings = placelink.settings()
    asked = backfill_months(context.run.tags)
    contracts, problems = placelink.contracts()
    for contract_id, error in problems.items():
        context.log.warning(f"contract {contract_id} is invalid and its flow is held: {error}")
    with placelink.warehouse() as con:
        receipts = receive_inbox(
            settings,
            con,
            contracts,
            problems,
            placelink.audit(context),
            erase_identities=forget_identities,
        )
        for receipt in receipts:
            if receipt.status in ("quarantined", "ignored"):
                context.log.warning(receipt.reason)
            else:
                context.log.info(f"{receipt.file_name}: {delivery_outcome(receipt)}")
        landed = {
            (r.dataset, r.header.get("reporting_period"))
            for r in receipts
            if r.status == "accepted" and r.kind == "extract"
        }
        recorded = _report_partner_months(context, settings, con, landed, asked)
    return dg.MaterializeResult(
        metadata={
            "files_received": sum(r.status != "ignored" for r in receipts),
            "accepted": sum(r.status == "accepted" for r in receipts),
            "quarantined": sum(r.status == "quarantined" for r in receipts),
            "ignored": sum(r.status == "ignored" for r in receipts),  # folders: not deliveries
            "quarantine": dg.MetadataValue.path(str(settings.quarantine)),
            "files": dg.MetadataValue.md(delivery_table(receipts)),
            # What alerts say about held files: names, contracts and checks only (pipelines/orchestration/alerting.py).
            "held": dg.MetadataValue.json(
                [
                    {"file": r.file_name, "contract": r.contract_id, "check": r.check}
                    for r in receipts
                    if r.status == "quarantined"
                ]
            ),
            "partner_months": dg.MetadataValue.json(recorded),
            **({"backfill_months": dg.MetadataValue.json(asked)} if asked else {}),
            # One line per file, shown as it is on the asset page: accepted, or held and why.
            **{f"file {r.file_name}": delivery_outcome(r) for r in receipts},
        }
    )


def _report_partner_months(
    context: dg.AssetExecutionContext,
    settings: Settings,
    con,
    landed: set[tuple[str, str]],
    asked: list[str],
) -> list[str]:
    """A materialisation of ``landing/<dataset>`` partition ``month`` for each partner-month landed
    now, and for every dataset delivered in a month asked for; returns them as ``dataset month``."""
    # The landing assets and months of the graph this run's resource was built with.
    partitions = delivery_months(settings)
    datasets = [spec.key.path[1] for spec in landing_specs(settings)]
    recorded = []
    for month in sorted({m for _, m in landed if m} | set(asked)):
        if not partitions.has_partition_key(month):
            context.log.warning(
                f"reporting month {month} is outside the landing partitions "
                f"({partitions.get_first_partition_key()} to {partitions.get_last_partition_key()}): "
                "its rows landed, but no partition shows them"
            )
            continue
        found = month_deliveries(con, month, datasets)
        for dataset in datasets:
            if month in asked and dataset not in found:
                context.log.info(f"landing/{dataset} {month}: no delivery held for this month")
            if dataset not in found or (month not in asked and (dataset, month) not in landed):
                continue
            table_rows = landing_table_rows(con, dataset)
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=["landing", dataset],
                    partition=month,
                    metadata=partner_month_metadata(found[dataset], table_rows),
                )
            )
            recorded.append(f"{dataset} {month}")
    return recorded


@dg.asset(key=["hub", "lsoa_reference"], group_name="ingest", deps=[DELIVERIES])
def area_reference(
    context: dg.AssetExecutionContext, placelink: PlacelinkResource
) -> dg.MaterializeResult:
    """Public area reference data (LSOA -> ward, deprivation decile) from PLACELINK_HOME/reference.

    Read after ingest: without the file, the run stops only if a landed record holds an LSOA
    (its area could not be shown); a hub whose partners send no LSOAs (no postcode lookup, or
    contracts without them) goes on, every person's area unknown."""
    settings = placelink.settings()
    source = settings.reference / AREA_REFERENCE_FILE
    with placelink.warehouse() as con:
        if not source.exists():
            contracts, _ = placelink.contracts()
            with_areas = contracts_sending_areas(contracts)
            landed = landed_lsoa_rows(con, contracts) if with_areas else 0
            if landed:
                raise dg.Failure(
                    f"area reference {source} is missing, and {landed:,} landed record(s) under "
                    f"contract(s) {', '.join(with_areas)} hold an LSOA: copy the LSOA reference "
                    "file (lsoa_code, ward_code, ward_name, imd_decile) there (README: the "
                    "postcode lookup)"
                )
            context.log.warning(
                f"no area reference at {source}, and no landed record holds an LSOA"
                + (
                    f" (contract(s) {', '.join(with_areas)} may send them: copy the reference "
                    "there before they do)"
                    if with_areas
                    else ""
                )
                + ": every person's area is unknown"
            )
        lsoas = load_area_reference(con, source if source.exists() else None)
    return dg.MaterializeResult(
        metadata={"lsoas": lsoas, "source": dg.MetadataValue.path(str(source))}
    )
