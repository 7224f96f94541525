/*
description: >
  School absence in the 12 months before and the 12 months after the index date, by cohort and
  age band at the index date, with total rows '0-17' (children), '18+' (adults) and 'All ages':
  pupils with at least one term
  starting in the window, sessions possible and missed over those terms, and the absence rate
  (sessions missed as a percentage of sessions possible). Disclosure control: pupil and session
  counts 1-7 redacted, others rounded to the nearest 5; the absence rate is computed from
  unrounded sessions and hidden wherever the pupil count or a session count is redacted, so no
  rate describes fewer than 8 pupils.
materialized: table
dimensions: [cohort, age_band, period]
totals: {age_band: All ages}
subtotals: {age_band: {'0-17': ['0-4', '5-10', '11-17'], '18+': ['18-64', '65+']}}
counts: [pupils, sessions_possible, sessions_missed]
population: pupils
rates: ["absence_rate_pct = sessions_missed / sessions_possible * 100"]
columns:
  cohort: programme or comparison.
  age_band: "Age band at the index date, or a total: '0-17' (children), '18+' (adults), 'All ages'."
  period: before or after the index date (12-month windows).
  pupils: Pupils with at least one term starting in the window (rounded to 5; NULL = redacted).
  sessions_possible: Half-day sessions possible (rounded to 5; NULL = redacted).
  sessions_missed: Half-day sessions missed, authorised or not (rounded to 5; NULL = redacted).
  absence_rate_pct: Sessions missed per 100 sessions possible, from unrounded counts (NULL where hidden).
*/
SELECT cohort, age_band, period,
       count(DISTINCT person_key) AS pupils,
       CAST(sum(sessions_possible) AS BIGINT) AS sessions_possible,
       CAST(sum(sessions_missed) AS BIGINT) AS sessions_missed
FROM outcomes.person_school_attendance
GROUP BY ALL
ORDER BY cohort, age_band, period
