-- description: Cohort and comparison people with their index date, age band at the index date,
--   ward and deprivation decile, and two 12-month windows: 'before' = [index - 12 months, index)
--   and 'after' = [index, index + 12 months). People whose windows do not fit inside the period
--   covered by the data are left out.
-- materialized: table
WITH people AS (
    SELECT person_key, index_date, 'programme' AS cohort FROM cohorts.programme_cohort
    UNION ALL
    SELECT person_key, index_date, 'comparison' FROM cohorts.comparison_group
),
coverage AS (SELECT min(event_date) AS first_day, max(event_date) AS last_day FROM staging.outcome_events)
SELECT p.person_key, p.cohort, p.index_date,
       CASE WHEN year(p.index_date) - s.year_of_birth < 5 THEN '0-4'
            WHEN year(p.index_date) - s.year_of_birth < 11 THEN '5-10'
            WHEN year(p.index_date) - s.year_of_birth < 18 THEN '11-17'
            WHEN year(p.index_date) - s.year_of_birth < 65 THEN '18-64'
            ELSE '65+' END AS age_band,
       s.ward_code, s.imd_decile,
       period.name AS period,
       CASE period.name WHEN 'before' THEN p.index_date - INTERVAL 12 MONTH ELSE p.index_date END AS window_start,
       CASE period.name WHEN 'before' THEN p.index_date ELSE p.index_date + INTERVAL 12 MONTH END AS window_end
FROM people p
JOIN staging.persons s USING (person_key)
CROSS JOIN (VALUES ('before'), ('after')) AS period(name)
CROSS JOIN coverage
WHERE s.year_of_birth IS NOT NULL
  AND p.index_date - INTERVAL 12 MONTH >= coverage.first_day
  AND p.index_date + INTERVAL 12 MONTH <= coverage.last_day + INTERVAL 1 DAY
