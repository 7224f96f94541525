/*
description: >
  Cohort and comparison people with their index date, age band at the index date, ward and
  deprivation decile, and two 12-month windows: 'before' = [index - 12 months, index) and
  'after' = [index, index + 12 months). People whose windows do not fit inside the period
  covered by the outcome data are left out.
materialized: table
columns:
  person_key: The hub's linked-person key (never published).
  cohort: programme or comparison.
  index_date: Enrolment date (programme) or the matched index date (comparison).
  age_band: Age band at the index date (staging.age_bands).
  ward_code: Electoral ward of residence (ONS code).
  imd_decile: IMD decile of the LSOA of residence (1 = most deprived).
  period: before or after.
  window_start: First day of the window (inclusive).
  window_end: Day after the window (exclusive).
*/
WITH people AS (
    SELECT person_key, index_date, 'programme' AS cohort FROM cohorts.programme_cohort
    UNION ALL
    SELECT person_key, index_date, 'comparison' FROM cohorts.comparison_group
),
coverage AS (SELECT min(event_date) AS first_day, max(event_date) AS last_day FROM staging.outcome_events)
SELECT p.person_key, p.cohort, p.index_date, b.age_band, s.ward_code, s.imd_decile,
       period.name AS period,
       CASE period.name WHEN 'before' THEN p.index_date - INTERVAL 12 MONTH ELSE p.index_date END AS window_start,
       CASE period.name WHEN 'before' THEN p.index_date ELSE p.index_date + INTERVAL 12 MONTH END AS window_end
FROM people p
JOIN staging.persons s USING (person_key)
JOIN staging.age_bands b ON year(p.index_date) - s.year_of_birth BETWEEN b.min_age AND b.max_age
CROSS JOIN (VALUES ('before'), ('after')) AS period(name)
CROSS JOIN coverage
WHERE p.index_date - INTERVAL 12 MONTH >= coverage.first_day
  AND p.index_date + INTERVAL 12 MONTH <= coverage.last_day + INTERVAL 1 DAY
