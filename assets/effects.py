"""Stage 3b: effect estimates with confidence intervals, and their sensitivity to the linkage threshold.

Both write unrounded tables to the warehouse's ``effects`` schema (hub only); the publish stage
controls them against the published before/after tables (pipelines/publish/effects.py).
"""

import dagster as dg

from assets.resources import PlacelinkResource
from pipelines.linkage import threshold_in_use
from pipelines.outcomes.effects import write_estimates, write_linkage_sensitivity
from pipelines.outcomes.sql_models import HUB_SOURCES, ModelPlan, discover

ESTIMATES = dg.AssetKey(["effects", "estimates"])
LINKAGE_SENSITIVITY = dg.AssetKey(["effects", "linkage_sensitivity"])
# The models the estimates read: without them (a hub whose contracts leave them out) there is
# nothing to estimate, and the effect assets are left out of the graph with the models.
ESTIMATE_INPUTS = (
    "outcomes.person_outcomes",
    "outcomes.person_school_attendance",
    "outcomes.person_clusters",
    "staging.age_bands",
)
BALANCE = "cohorts.matching_balance"


@dg.asset(
    key=ESTIMATES,
    group_name="effects",
    deps=[
        dg.AssetKey(["outcomes", "person_outcomes"]),
        dg.AssetKey(["outcomes", "person_school_attendance"]),
        dg.AssetKey(["outcomes", "person_clusters"]),
        dg.AssetKey(["staging", "age_bands"]),
    ],
)
def effect_estimates(placelink: PlacelinkResource) -> dg.MaterializeResult:
    """Difference in differences of rates and rate ratios, programme vs comparison, for every outcome
    and age band, with cluster-robust 95% intervals (statsmodels; unrounded, hub only)."""
    models = discover(placelink.settings().sql_dir)
    with placelink.warehouse() as con:
        estimates = write_estimates(con, models)
    return dg.MaterializeResult(
        metadata={
            "estimates": estimates.height,
            "estimated": int((estimates["status"] == "estimated").sum()),
        }
    )


@dg.asset(
    key=LINKAGE_SENSITIVITY,
    group_name="effects",
    deps=[ESTIMATES, dg.AssetKey(["hub", "person_keys"]), dg.AssetKey(["hub", "record_person"])],
)
def linkage_sensitivity(placelink: PlacelinkResource) -> dg.MaterializeResult:
    """The headline effects re-estimated with persons re-clustered at a looser and a stricter linkage
    threshold (from the scored pairs; the SQL models re-run in a scratch database)."""
    settings = placelink.settings()
    models = discover(settings.sql_dir)
    with placelink.warehouse() as con:
        frame = write_linkage_sensitivity(
            con,
            models,
            HUB_SOURCES,
            threshold_in_use(settings),
            settings.linkage_sensitivity_thresholds,
        )
    return dg.MaterializeResult(
        metadata={
            "thresholds": dg.MetadataValue.json(sorted(set(frame["linkage_threshold"].to_list()))),
            "estimates": frame.height,
        }
    )


def effect_assets(plan: ModelPlan) -> list[dg.AssetsDefinition]:
    """The effect assets, when every model they read is in this hub's ``plan``
    (:func:`pipelines.outcomes.sql_models.model_plan`)."""
    return (
        [effect_estimates, linkage_sensitivity]
        if all(m in plan.models for m in ESTIMATE_INPUTS)
        else []
    )


def effect_keys(plan: ModelPlan) -> list[dg.AssetKey]:
    """What the published file's effect and balance tables are built from (those in ``plan``)."""
    keys = [a.key for a in effect_assets(plan)]
    if BALANCE in plan.models:
        keys.append(dg.AssetKey(BALANCE.split(".")))
    return keys
