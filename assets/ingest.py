"""Stage 1: receive extracts from the inbox and land them, one table per contract dataset."""

from functools import cache

import dagster as dg
import polars as pl

from pipelines.contracts import load_contracts
from pipelines.hub.ingest import DELIVERIES_DDL, delivery_outcome, delivery_table, receive_inbox
from pipelines.resources import PlacelinkResource
from pipelines.settings import Settings


@cache
def landing_specs() -> tuple[dg.AssetSpec, ...]:
    """One landing asset per dataset of every valid contract (read once per process)."""
    contracts, _ = load_contracts(Settings.from_env().contracts_dir)
    return tuple(
        dg.AssetSpec(["landing", name], group_name="ingest",
                     description=f"{dataset.description} Latest accepted rows under contract {c.label}.",
                     metadata={"contract": c.label, "partner": c.partner_id})
        for c in contracts.values() for name, dataset in c.datasets.items()
    )


@dg.multi_asset(
    specs=[dg.AssetSpec(["hub", "deliveries"], group_name="ingest",
                        description="Every file that reached the inbox: accepted or quarantined, with the reason."),
           *landing_specs()],
    can_subset=False,
)
def received_extracts(context: dg.AssetExecutionContext, placelink: PlacelinkResource):
    """Check every inbox file against its contract; land it or hold it in quarantine."""
    settings = placelink.settings()
    contracts, problems = placelink.contracts()
    for contract_id, error in problems.items():
        context.log.warning(f"contract {contract_id} is invalid and its flow is held: {error}")
    with placelink.warehouse() as con:
        con.execute(DELIVERIES_DDL)
        receipts = receive_inbox(settings, con, contracts, problems, placelink.audit(context))
        for receipt in receipts:
            if receipt.status in ("quarantined", "ignored"):
                context.log.warning(receipt.reason)
            else:
                context.log.info(f"{receipt.file_name}: {delivery_outcome(receipt)}")
        landed = {r.dataset: r for r in receipts if r.status == "accepted" and r.kind == "extract"}
        yield dg.MaterializeResult(asset_key=["hub", "deliveries"], metadata={
            "files_received": sum(r.status != "ignored" for r in receipts),
            "accepted": sum(r.status == "accepted" for r in receipts),
            "quarantined": sum(r.status == "quarantined" for r in receipts),
            "ignored": sum(r.status == "ignored" for r in receipts),  # folders: not deliveries
            "quarantine": dg.MetadataValue.path(str(settings.quarantine)),
            "files": dg.MetadataValue.md(delivery_table(receipts)),
            # What alerts say about held files: names, contracts and checks only (pipelines/alerting.py).
            "held": dg.MetadataValue.json([{"file": r.file_name, "contract": r.contract_id, "check": r.check}
                                           for r in receipts if r.status == "quarantined"]),
            # One line per file, shown as it is on the asset page: accepted, or held and why.
            **{f"file {r.file_name}": delivery_outcome(r) for r in receipts},
        })
        for spec in context.assets_def.specs:
            if spec.key.path[0] != "landing":
                continue
            name = spec.key.path[1]
            rows = con.execute(f"SELECT count(*) FROM landing.{name}").fetchone()[0]
            yield dg.MaterializeResult(asset_key=spec.key, metadata={
                "rows": rows, "new_delivery": name in landed,
                "rows_in_new_delivery": landed[name].row_count if name in landed else 0,
            })


_AREA_REFERENCE = pl.Schema({"lsoa_code": pl.String, "ward_code": pl.String, "ward_name": pl.String,
                             "imd_decile": pl.Int8})


@dg.asset(key=["hub", "lsoa_reference"], group_name="ingest")
def area_reference(context: dg.AssetExecutionContext, placelink: PlacelinkResource) -> dg.MaterializeResult:
    """Public area reference data (LSOA -> ward, deprivation decile) from PLACELINK_HOME/reference."""
    settings = placelink.settings()
    source = settings.reference / "lsoa_reference.csv"
    if not source.exists():
        contracts, _ = placelink.contracts()
        with_areas = sorted(c.label for c in contracts.values() for d in c.datasets.values()
                            if "lsoa_code" in d.columns)
        if with_areas:
            raise dg.Failure(f"area reference {source} is missing, and contract(s) {', '.join(with_areas)} "
                             "send LSOAs: copy the LSOA reference file (lsoa_code, ward_code, ward_name, "
                             "imd_decile) there (README: the postcode lookup)")
        # No partner sends areas: every person's area is unknown, which the tables show as such.
        context.log.warning(f"no area reference at {source}, and no contract sends LSOAs: every "
                            "person's area is unknown")
        table = _AREA_REFERENCE.to_frame().to_arrow()
    else:
        table = pl.read_csv(source, schema_overrides={"imd_decile": pl.Int8}).to_arrow()
    with placelink.warehouse() as con:
        con.register("incoming", table)
        con.execute("CREATE OR REPLACE TABLE hub.lsoa_reference AS SELECT * FROM incoming")
        con.unregister("incoming")
    return dg.MaterializeResult(metadata={"lsoas": table.num_rows, "source": dg.MetadataValue.path(str(source))})
