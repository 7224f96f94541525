"""Quality gates in the Dagster UI: asset checks on every landing table and on the
published file, and the quality report.

The gate itself runs inside ingest (pipelines/quality/validate.py): a delivery failing an
ERROR rule is held in quarantine and never lands, so the other partners' data flows on.
These checks show what the gate found, per dataset, for the latest ingest run.
"""

import dagster as dg

# The landing tables are written by ingest (hub/deliveries): these checks run after it.
from assets.ingest import DELIVERIES
from assets.resources import PlacelinkResource
from pipelines.outcomes.sql_models import model_plan
from pipelines.publish.disclosure import published_unsafe_cells
from pipelines.quality.report import write_report
from pipelines.quality.results import deliveries, unvalidated_extracts

_FAILURE_TABLE_HEADER = (
    "| delivery | severity | rule | failing rows | sample row numbers |\n|---|---|---|---|---|\n"
)


def _failure_table(found) -> str:
    lines = [
        f"| {d.file_name} | {f['severity'].upper()} | {f['rule']} | "
        f"{'' if f['failing_rows'] is None else f['failing_rows']} | "
        f"{', '.join(map(str, f['sample_rows']))} |"
        for d in found
        for f in d.failures
    ]
    return _FAILURE_TABLE_HEADER + "\n".join(lines) if lines else "No rule failed."


def _delivery_result(dataset: str, found, report: str) -> dg.AssetCheckResult:
    held = [d for d in found if d.outcome == "held"]
    warned = [d for d in found if d.outcome == "warned"]
    metadata = {
        "deliveries": len(found),
        "held": len(held),
        "landed_with_warnings": len(warned),
        "rows_checked": sum(d.rows for d in found),
        "seconds": round(sum(d.seconds for d in found), 2),
        "failed_rules": dg.MetadataValue.md(_failure_table(found)),
        "messages": dg.MetadataValue.text(
            "\n".join(d.message() for d in found) or f"no {dataset} delivery in the latest ingest"
        ),
        "report": dg.MetadataValue.path(report),
    }
    # A held delivery fails the check as an error, saying why; one landed with warnings as a warning.
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey(["landing", dataset]),
        check_name="delivery_quality",
        passed=not held and not warned,
        severity=dg.AssetCheckSeverity.WARN if warned and not held else dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description="; ".join(d.message().splitlines()[0] for d in held) if held else None,
    )


def landing_checks(landing: tuple[dg.AssetSpec, ...]) -> list[dg.AssetChecksDefinition]:
    """The quality checks on each of the ``landing`` assets (:func:`assets.ingest.landing_specs`)."""

    # One op per kind of check, not one per dataset: each Dagster step has a fixed cost.
    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                "delivery_quality",
                asset=spec.key,
                blocking=False,
                description=f"Great Expectations rules from the contract, run on each {spec.key.path[-1]} "
                "delivery of the latest ingest before it lands. A delivery failing an ERROR "
                "rule was held in quarantine (not landed; downstream ran on earlier accepted "
                "data); WARN failures landed and are listed.",
                additional_deps=[DELIVERIES],
            )
            for spec in landing
        ]
    )
    def delivery_quality(placelink: PlacelinkResource):
        report = str(placelink.settings().reports / "quality.html")
        with placelink.warehouse() as con:
            for spec in landing:
                dataset = spec.key.path[-1]
                yield _delivery_result(
                    dataset, deliveries(con, dataset, latest_run_only=True), report
                )

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                "only_validated_deliveries",
                asset=spec.key,
                blocking=True,
                description=f"Every extract in landing.{spec.key.path[-1]} passed the quality gate. "
                "Blocking: if unvalidated rows ever reach the landing table, linkage and the "
                "models stop.",
                additional_deps=[DELIVERIES],
            )
            for spec in landing
        ]
    )
    def only_validated_deliveries(placelink: PlacelinkResource):
        with placelink.warehouse() as con:
            for spec in landing:
                dataset = spec.key.path[-1]
                unvalidated = unvalidated_extracts(con, dataset)
                yield dg.AssetCheckResult(
                    asset_key=spec.key,
                    check_name="only_validated_deliveries",
                    passed=unvalidated == 0,
                    metadata={"unvalidated_extracts": unvalidated},
                    description=None
                    if unvalidated == 0
                    else f"{unvalidated} extract(s) in landing.{dataset} have no passing quality result",
                )

    return [delivery_quality, only_validated_deliveries]


@dg.asset_check(
    asset=["published", "shared_outcomes"],
    name="disclosure_safe",
    description="No published count in 1-7 and every count a multiple of 5 (read back from the file).",
)
def published_disclosure_safe(placelink: PlacelinkResource) -> dg.AssetCheckResult:
    settings = placelink.settings()
    counts = {
        m.name: m.list_option("counts")
        for m in model_plan(settings).models.values()
        if m.schema == "publish"
    }
    unsafe = published_unsafe_cells(settings.published, counts)
    return dg.AssetCheckResult(
        passed=not any(unsafe.values()), metadata={"unsafe_cells": dg.MetadataValue.json(unsafe)}
    )


@dg.asset(
    key=["reports", "quality"],
    group_name="quality",
    deps=[["hub", "deliveries"]],
    description="reports/quality.html: every delivery, every quality rule, pass or fail with counts.",
)
def quality_report(placelink: PlacelinkResource) -> dg.MaterializeResult:
    settings = placelink.settings()
    with placelink.warehouse() as con:
        path = write_report(con, settings.reports / "quality.html", settings.now())
        found = deliveries(con)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "deliveries": len(found),
            "held": sum(d.outcome == "held" for d in found),
        }
    )


def quality_checks(landing: tuple[dg.AssetSpec, ...]) -> list[dg.AssetChecksDefinition]:
    """Every quality check: those on the ``landing`` assets, and the published file's."""
    return [*landing_checks(landing), published_disclosure_safe]
