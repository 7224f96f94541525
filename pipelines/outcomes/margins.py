"""The totals and subtotals a publish model's header declares (its margins).

Read by the publisher's disclosure control (:func:`pipelines.publish.published_file.table_spec`)
and by the effect estimates, which follow the published before/after table's age bands
(:func:`pipelines.outcomes.effects.effect_bands`): one reading of the header for both, kept with
the SQL models so that the effects need nothing of publish (issue 19).
"""

from __future__ import annotations

from pipelines.outcomes.sql_models import SqlModel

Totals = tuple[tuple[str, str], ...]  # (dimension, label of its total rows)
Subtotals = tuple[tuple[str, str, tuple[str, ...]], ...]  # (dimension, label, member values)


def declared_margins(model: SqlModel) -> tuple[Totals, Subtotals]:
    """(totals, subtotals) in ``model``'s header; ValueError naming the file if they are malformed."""
    totals = model.header.get("totals") or {}
    if isinstance(totals, str):
        totals = {name.strip(): "All" for name in totals.split(",") if name.strip()}
    subtotals = model.header.get("subtotals") or {}  # {dimension: {label: [values]}}
    if (
        not isinstance(totals, dict)
        or not isinstance(subtotals, dict)
        or not all(
            isinstance(v, dict) and all(isinstance(m, list) for m in v.values())
            for v in subtotals.values()
        )
    ):
        raise ValueError(
            f"{model.path}: 'totals' must look like {{age_band: All ages}} and 'subtotals' like "
            "{age_band: {'0-17': ['0-4', '5-10', '11-17']}}"
        )
    return (
        tuple((str(k), str(v)) for k, v in totals.items()),
        tuple(
            (str(dim), str(label), tuple(str(v) for v in values))
            for dim, labelled in subtotals.items()
            for label, values in labelled.items()
        ),
    )
