"""Stage 4: disclosure control and the published DuckDB file analysts query."""

import json

import dagster as dg

from assets.effects import effect_keys
from assets.resources import PlacelinkResource
from pipelines.governance.audit import AuditHead
from pipelines.governance.flows import (
    excluded_flows,
    extract_lineage,
    flow_statuses,
    flows_in_use,
)
from pipelines.outcomes.sql_models import ModelPlan, model_plan
from pipelines.publish.effects import DERIVED_FROM, derived_tables
from pipelines.publish.lineage import table_lineage
from pipelines.publish.outcomes_report import build_outcomes_report, report_summary
from pipelines.publish.publication_guard import (
    BLOCKED,
    OUTCOME_KEY,
    audit_blocked,
    blocked_message,
    find_losses,
    known_source_reasons,
    last_publication,
    pending_acceptances,
)
from pipelines.publish.publication_inputs import record_publication
from pipelines.publish.published_file import audit_published, publish


def _publish_deps(plan: ModelPlan) -> list[dg.AssetKey]:
    # The publish models that run, the effect estimates when their models run, and linkage itself:
    # a hub whose contracts leave every publish model out still publishes (_about says why), but
    # only after its records were linked.
    return (
        [dg.AssetKey(["publish", m.name]) for m in plan.models.values() if m.schema == "publish"]
        + effect_keys(plan)
        + [dg.AssetKey(["hub", "record_person"])]
    )


def shared_outcomes_asset(plan: ModelPlan) -> dg.AssetsDefinition:
    """The published file, built after the models in ``plan`` (the hub's
    :func:`pipelines.outcomes.sql_models.model_plan`) that it publishes."""

    @dg.asset(key=["published", "shared_outcomes"], group_name="publish", deps=_publish_deps(plan))
    def shared_outcomes(
        context: dg.AssetExecutionContext, placelink: PlacelinkResource
    ) -> dg.MaterializeResult:
        """published/shared_outcomes.duckdb: disclosure-controlled tables, _about and _definitions."""
        return _shared_outcomes(context, placelink)

    return shared_outcomes


def _shared_outcomes(
    context: dg.AssetExecutionContext, placelink: PlacelinkResource
) -> dg.MaterializeResult:
    settings = placelink.settings()
    plan = model_plan(settings)  # the models that ran: those whose datasets have a contract
    models = plan.models
    for message in plan.messages():
        context.log.warning(message)
    contracts, problems = placelink.contracts()
    # Agreements not in force today: their data was left out of linkage, so of every table.
    now = settings.now()
    in_use = flows_in_use(contracts, now.date())
    with placelink.warehouse() as con:
        excluded = excluded_flows(flow_statuses(contracts, problems, now.date()), con)
        lineage = extract_lineage(con, in_use)
        # The file carries the audit log's signed head as it stands now, just before "published".
        head = AuditHead(settings.audit_head_path, settings.audit_key_path).read()
        audit = placelink.audit(context)
        last = last_publication(settings.published)
        accepted = pending_acceptances(audit)
        known_losses: list[str] = []

        def guard(built) -> None:
            # Nothing the last publication had may vanish without a known, audited reason (issue 20).
            if last is None:
                return
            losses = find_losses(
                last,
                {(x["contract_id"], x["dataset"]) for x in lineage},
                {t.name: t.rows for t in built},
                known_source_reasons(con, excluded, last.built_at),
                plan.left_out,
                accepted,
            )
            if any(loss.reason is None for loss in losses):
                audit_blocked(audit, settings.published, losses)
                raise dg.Failure(
                    description=blocked_message(losses, settings.published, last.built_at),
                    metadata={OUTCOME_KEY: BLOCKED},
                )
            known_losses.extend(loss.describe() for loss in losses)

        tables = publish(
            con,
            models,
            settings.published,
            definitions=[m for m in models.values() if m.schema != "staging"],
            lineage=lineage,
            table_lineage=table_lineage(con, models, in_use, DERIVED_FROM),
            excluded_flows=excluded,
            derived=derived_tables(con),
            now=now,
            audit_head=head.to_json() if head else None,
            models_left_out=plan.left_out,
            guard=guard,
        )
        # Last: what this file was built from, so a later run with nothing new leaves it be.
        record_publication(settings, con, contracts, problems, context.run.run_id, now)
    for loss in known_losses:
        context.log.warning(f"published without: {loss}")
    audit_published(
        audit,
        settings.published,
        tables,
        head.events if head else None,
        lineage,
        excluded,
        plan.left_out,
        known_losses,
        accepted,
    )
    context.log.info(f"published {len(tables)} tables to {settings.published}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(settings.published)),
            "tables": dg.MetadataValue.json(
                {t.name: {"rows": t.rows, "redacted_cells": t.redacted_cells} for t in tables}
            ),
            "models_left_out": dg.MetadataValue.md(
                "\n".join(f"- {m}" for m in plan.messages()) or "none"
            ),
            # What this file lost from the last one, each with its known reason (pipelines.publish.publication_guard).
            "known_losses": dg.MetadataValue.json(known_losses),
        }
    )


@dg.asset(
    key=["reports", "outcomes"],
    group_name="publish",
    deps=[dg.AssetKey(["published", "shared_outcomes"])],
)
def outcomes_report(placelink: PlacelinkResource) -> dg.MaterializeResult:
    """reports/outcomes.html: charts of each outcome before/after, from the published file only."""
    settings = placelink.settings()
    page = build_outcomes_report(
        settings.published, settings.reports / "outcomes.html", settings.now()
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(page)),
            "suppressed_cells_by_outcome": dg.MetadataValue.json(
                json.loads(report_summary(settings.published))
            ),
        }
    )
