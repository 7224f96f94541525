/*
description: >
  Comparison group: linked people never enrolled in the programme, matched to the programme
  cohort on age band, area deprivation (IMD quintile of the LSOA of residence) and prior service
  use (none, one, or two or more outcome events of any kind in [index - 24 months, index - 12
  months)), all measured at the index date each candidate drew from a cohort member of the same
  IMD quintile (cohorts.matching_candidates). Up to ten comparison people per cohort member are
  drawn (fixed hash order) within each stratum of age band x IMD quintile x prior use; a stratum
  with fewer candidates keeps them all, which is what the published matching_balance table shows.
materialized: table
columns:
  person_key: The hub's linked-person key (never published).
  index_date: Index date taken from a cohort member of the same IMD quintile.
  age_band: Age band at the index date.
  imd_quintile: IMD quintile of the LSOA of residence (1 = most deprived).
  prior_use: Outcome events of any kind in [index - 24 months, index - 12 months) (none, one, two or more).
*/
WITH strata AS (
    SELECT age_band, imd_quintile, prior_use, count(*) AS cohort_members
    FROM cohorts.matching_candidates WHERE enrolled GROUP BY ALL
),
candidates AS (
    SELECT s.*, st.cohort_members,
           row_number() OVER (PARTITION BY s.age_band, s.imd_quintile, s.prior_use
                              ORDER BY hash(s.person_key || 'comparison'), s.person_key) AS draw
    FROM cohorts.matching_candidates s
    JOIN strata st USING (age_band, imd_quintile, prior_use)
    WHERE NOT s.enrolled
)
SELECT person_key, index_date, age_band, imd_quintile, prior_use
FROM candidates
WHERE draw <= 10 * cohort_members  -- ten per member keeps the comparison's noise well below the programme's
