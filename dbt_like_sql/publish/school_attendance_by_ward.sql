/*
description: >
  School absence in the 12 months before and after the index date by cohort and electoral ward of
  residence, with an 'All wards' total row: pupils, sessions possible and missed, and the absence
  rate. Definitions and disclosure control as for school_attendance_before_after.
materialized: table
dimensions: [cohort, ward_code, period]
totals: {ward_code: All wards}
counts: [pupils, sessions_possible, sessions_missed]
population: pupils
rates: ["absence_rate_pct = sessions_missed / sessions_possible * 100"]
columns:
  cohort: programme or comparison.
  ward_code: "Electoral ward of residence (ONS code), 'unknown area' where no record of the person gave a known area, or 'All wards'."
  period: before or after the index date (12-month windows).
  pupils: Pupils with at least one term starting in the window (rounded to 5; NULL = redacted).
  sessions_possible: Half-day sessions possible (rounded to 5; NULL = redacted).
  sessions_missed: Half-day sessions missed (rounded to 5; NULL = redacted).
  absence_rate_pct: Sessions missed per 100 sessions possible, from unrounded counts (NULL where hidden).
*/
SELECT cohort, coalesce(ward_code, 'unknown area') AS ward_code, period,
       count(DISTINCT person_key) AS pupils,
       CAST(sum(sessions_possible) AS BIGINT) AS sessions_possible,
       CAST(sum(sessions_missed) AS BIGINT) AS sessions_missed
FROM outcomes.person_school_attendance
GROUP BY ALL
ORDER BY cohort, ward_code, period
