/*
description: >
  For every cohort and comparison person who was a pupil in a window, the school sessions
  possible and missed over the terms that start inside the 12-month window. People with no term
  in the window (not of school age) have no row.
materialized: table
columns:
  person_key: The hub's linked-person key (never published).
  cohort: programme or comparison.
  period: before or after.
  age_band: Age band at the index date.
  ward_code: Electoral ward of residence.
  sessions_possible: Sessions possible over the terms starting in the window.
  sessions_missed: Sessions missed over those terms.
*/
SELECT pp.person_key, pp.cohort, pp.period, pp.age_band, pp.ward_code,
       CAST(sum(s.sessions_possible) AS BIGINT) AS sessions_possible,
       CAST(sum(s.sessions_missed) AS BIGINT) AS sessions_missed
FROM outcomes.person_periods pp
JOIN staging.school_attendance s
  ON s.person_key = pp.person_key
 AND s.term_start_date >= pp.window_start AND s.term_start_date < pp.window_end
GROUP BY ALL
