"""Monthly refresh: partners deliver monthly extracts; publish on the 2nd at 06:00."""

import dagster as dg

from pipelines.orchestration.jobs import refresh_job, retention_job

monthly_refresh = dg.ScheduleDefinition(
    name="monthly_refresh",
    job=refresh_job,
    cron_schedule="0 6 2 * *",
    execution_timezone="Europe/London",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Runs the whole pipeline once a month after partners' monthly deliveries.",
)

daily_retention = dg.ScheduleDefinition(
    name="daily_retention",
    job=retention_job,
    cron_schedule="30 2 * * *",
    execution_timezone="Europe/London",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night: deletes extracts past their agreement's retention period, with an audit event.",
)
