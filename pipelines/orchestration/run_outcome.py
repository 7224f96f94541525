"""What a run's end means for whoever scheduled it: one exit code and one summary line (issue 20).

Nothing fails silently: a run that held deliveries, or whose publication was blocked because it
would have lost a source, ends with its own non-zero exit code, so a scheduled job (cron,
systemd, CI) can tell it from success, and a last line names the cause.

========  ==============================================================================
code      meaning
========  ==============================================================================
0         succeeded: every delivery accepted, published
1         failed: a step or a blocking check failed (the output names which)
2         bad input: a command-line option or argument was wrong (nothing ran)
3         completed, but deliveries were held in quarantine (each named, with why)
4         publication blocked: it would have dropped a source or emptied a table that had
          rows; the published file was left as it was
5         pre-flight check failed (disk space, a folder not writable): nothing was touched
========  ==============================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import dagster as dg

from pipelines.publish.publication_guard import BLOCKED, OUTCOME_KEY

SUCCEEDED, FAILED, BAD_INPUT, HELD, PUBLICATION_BLOCKED, PREFLIGHT_FAILED = 0, 1, 2, 3, 4, 5
DELIVERIES = dg.AssetKey(["hub", "deliveries"])
PUBLISHED = dg.AssetKey(["published", "shared_outcomes"])


@dataclass(frozen=True)
class RunOutcome:
    code: int
    summary: str  # the final line
    details: list[str] = field(default_factory=list)  # one line per held delivery / known loss
    held_files: tuple[str, ...] = ()  # the names of the deliveries held

    @property
    def success(self) -> bool:
        return self.code == SUCCEEDED


def _held(result: dg.ExecuteInProcessResult) -> list[tuple[str, str]]:
    """(file, ``file: why``) for each delivery this run held (ingest's own one-line reason)."""
    lines = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key != DELIVERIES or "held" not in materialization.metadata:
            continue
        held = materialization.metadata["held"].value
        for entry in held if isinstance(held, list) else json.loads(held):
            why = materialization.metadata.get(f"file {entry['file']}")
            reason = str(why.value).removeprefix("HELD in quarantine: ") if why is not None else ""
            check = f"check '{entry['check']}'" if entry.get("check") else "held"
            lines.append(
                (entry["file"], f"{entry['file']}: {check}" + (f": {reason}" if reason else ""))
            )
    return lines


def _known_losses(result: dg.ExecuteInProcessResult) -> list[str]:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == PUBLISHED and "known_losses" in materialization.metadata:
            return list(materialization.metadata["known_losses"].value or [])
    return []


def _blocked(result: dg.ExecuteInProcessResult) -> list[str]:
    lines = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        described = event.step_failure_data.user_failure_data
        metadata = (described.metadata or {}) if described is not None else {}
        outcome = metadata.get(OUTCOME_KEY)
        if getattr(outcome, "value", outcome) == BLOCKED:
            lines.append(described.description.strip())
    return lines


def run_outcome(result: dg.ExecuteInProcessResult, published: str) -> RunOutcome:
    """The exit code and the final summary line of a finished run (``published``: the file's path)."""
    held_now = _held(result)
    held = [f"held: {line}" for _, line in held_now]
    names = tuple(name for name, _ in held_now)
    run = result.run_id
    blocked = _blocked(result)
    if blocked:
        return RunOutcome(
            PUBLICATION_BLOCKED,
            f"pipeline run {run} PUBLICATION BLOCKED (exit 4): {blocked[0]}",
            held,
            names,
        )
    if not result.success:
        return RunOutcome(
            FAILED,
            f"pipeline run {run} FAILED (exit 1): see the failed steps above"
            + (f"; {len(held)} delivery(ies) also held" if held else ""),
            held,
            names,
        )
    losses = [f"published without: {line}" for line in _known_losses(result)]
    if held:
        return RunOutcome(
            HELD,
            f"pipeline run {run} completed with {len(held)} delivery(ies) held in quarantine "
            f"(exit 3): {', '.join(names)}; published {published} without them. See why with "
            "`placelink hub quarantine show NAME`",
            held + losses,
            names,
        )
    return RunOutcome(SUCCEEDED, f"pipeline run {run} succeeded; published {published}", losses)
