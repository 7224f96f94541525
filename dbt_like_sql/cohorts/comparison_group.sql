-- description: Comparison group: people never enrolled in the programme, matched to the cohort
--   by age band and deprivation quintile (exact strata). Each comparison person takes the index
--   date of a cohort member in the same stratum (assigned by a fixed hash order), with up to
--   five comparison people per cohort member, so both groups are measured over the same calendar
--   windows.
-- materialized: table
WITH cohort AS (
    SELECT c.person_key, c.index_date,
           CASE WHEN year(c.index_date) - p.year_of_birth < 5 THEN '0-4'
                WHEN year(c.index_date) - p.year_of_birth < 11 THEN '5-10'
                WHEN year(c.index_date) - p.year_of_birth < 18 THEN '11-17'
                WHEN year(c.index_date) - p.year_of_birth < 65 THEN '18-64'
                ELSE '65+' END AS age_band,
           (p.imd_decile + 1) // 2 AS imd_quintile
    FROM cohorts.programme_cohort c JOIN staging.persons p USING (person_key)
    WHERE p.year_of_birth IS NOT NULL AND p.imd_decile IS NOT NULL
),
cohort_ranked AS (
    SELECT *, row_number() OVER (PARTITION BY age_band, imd_quintile ORDER BY hash(person_key)) - 1 AS slot,
           count(*) OVER (PARTITION BY age_band, imd_quintile) AS stratum_size
    FROM cohort
),
strata AS (SELECT DISTINCT age_band, imd_quintile, stratum_size FROM cohort_ranked),
candidates AS (
    SELECT p.person_key, s.age_band, s.imd_quintile, s.stratum_size, t.index_date AS reference_date
    FROM staging.persons p
    JOIN strata s ON (p.imd_decile + 1) // 2 = s.imd_quintile
    -- age is judged at the median index date of the stratum's cohort members
    JOIN (SELECT age_band, imd_quintile, CAST(quantile_disc(index_date, 0.5) AS DATE) AS index_date
          FROM cohort GROUP BY ALL) t USING (age_band, imd_quintile)
    WHERE p.person_key NOT IN (SELECT person_key FROM cohorts.programme_cohort)
      AND CASE WHEN year(t.index_date) - p.year_of_birth < 5 THEN '0-4'
               WHEN year(t.index_date) - p.year_of_birth < 11 THEN '5-10'
               WHEN year(t.index_date) - p.year_of_birth < 18 THEN '11-17'
               WHEN year(t.index_date) - p.year_of_birth < 65 THEN '18-64'
               ELSE '65+' END = s.age_band
),
candidates_ranked AS (
    SELECT *, row_number() OVER (PARTITION BY age_band, imd_quintile ORDER BY hash(person_key || 'comparison')) - 1 AS draw
    FROM candidates
)
SELECT c.person_key, r.index_date, c.age_band, c.imd_quintile
FROM candidates_ranked c
JOIN cohort_ranked r ON r.age_band = c.age_band AND r.imd_quintile = c.imd_quintile
                    AND r.slot = c.draw % c.stratum_size
WHERE c.draw < 5 * c.stratum_size
