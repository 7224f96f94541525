"""Run the pipeline when new files land in the inbox."""

from __future__ import annotations

import hashlib
import os

import dagster as dg

from assets.resources import PlacelinkResource
from pipelines.core.settings import Settings
from pipelines.hub.journal import inbox_files
from pipelines.orchestration.jobs import refresh_job


def inbox_fingerprint(settings: Settings) -> tuple[int, str]:
    """(number of waiting files, a fingerprint of their names, sizes and times)."""
    files = inbox_files(settings)
    digest = hashlib.sha256()
    for path in files:
        entry = path.lstat()  # never through a link: ingest holds links without following them
        digest.update(os.fsencode(path.name) + f"\0{entry.st_size}\0{entry.st_mtime_ns}\n".encode())
    return len(files), digest.hexdigest()[:16]


@dg.sensor(
    job=refresh_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED
)
def inbox_sensor(context: dg.SensorEvaluationContext, placelink: PlacelinkResource):
    """Request one run per new set of inbox files; a run picks up everything waiting."""
    count, fingerprint = inbox_fingerprint(placelink.settings())
    if count == 0:
        return dg.SkipReason("the inbox is empty")
    if fingerprint == context.cursor:
        return dg.SkipReason(f"{count} file(s) already requested")
    context.update_cursor(fingerprint)
    return dg.RunRequest(run_key=f"inbox-{fingerprint}", tags={"placelink/inbox_files": str(count)})
