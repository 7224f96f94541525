"""Delivery cadence in the Dagster UI: an asset check on every landing table that warns when its
dataset is overdue under its contract's delivery term (pipelines/governance/cadence.py).

It reads the contracts and the audit log, not the warehouse. A warning, not a failure: a late
partner never stops the other partners' data; the overdue sensor and a headless run's alerts
tell the data team (pipelines/orchestration/alerting.py).
"""

import dagster as dg

from assets.ingest import DELIVERIES
from assets.resources import PlacelinkResource
from pipelines.governance.audit import hub_audit_log
from pipelines.governance.cadence import OVERDUE_CHECK, accepted_deliveries, delivery_statuses


def cadence_checks(landing: tuple[dg.AssetSpec, ...]) -> list[dg.AssetChecksDefinition]:
    """The delivery-on-time check on each of the ``landing`` assets (:func:`assets.ingest.landing_specs`)."""

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(
                OVERDUE_CHECK,
                asset=spec.key,
                blocking=False,
                description=f"The latest {spec.key.path[-1]} delivery that the contract's delivery "
                "term says is due has arrived (warns when it is overdue; read from the audit log).",
                additional_deps=[DELIVERIES],
            )
            for spec in landing
        ]
    )
    def delivery_on_time(placelink: PlacelinkResource):
        settings = placelink.settings()
        contracts, _ = placelink.contracts()
        statuses = {
            s.dataset: s
            for s in delivery_statuses(
                contracts, accepted_deliveries(hub_audit_log(settings)), settings.today()
            )
        }
        for spec in landing:
            dataset = spec.key.path[-1]
            status = statuses.get(dataset)
            if status is None:
                yield dg.AssetCheckResult(
                    asset_key=spec.key,
                    check_name=OVERDUE_CHECK,
                    passed=True,
                    metadata={"cadence": "the contract sets no delivery term"},
                )
                continue
            yield dg.AssetCheckResult(
                asset_key=spec.key,
                check_name=OVERDUE_CHECK,
                passed=not status.overdue,
                severity=dg.AssetCheckSeverity.WARN,
                metadata=status.to_metadata(),
                description=status.describe(),
            )

    return [delivery_on_time]
