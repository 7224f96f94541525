/*
description: >
  People by matching variable and level in three samples: the programme cohort, every candidate
  before matching (never-enrolled people at their drawn index dates) and the matched comparison
  group. The publisher turns these counts into the matching_balance table (shares and
  standardised mean differences before and after matching).
materialized: table
columns:
  sample: programme, candidates (before matching) or comparison (after matching).
  variable: "Matching variable: age_band, imd_quintile or prior_use."
  level: The variable's value.
  people: People in the sample with that value (unrounded; never published as such).
*/
WITH samples AS (
    SELECT CASE WHEN enrolled THEN 'programme' ELSE 'candidates' END AS sample,
           age_band, CAST(imd_quintile AS VARCHAR) AS imd_quintile, prior_use
    FROM cohorts.matching_candidates
    UNION ALL
    SELECT 'comparison', age_band, CAST(imd_quintile AS VARCHAR), prior_use FROM cohorts.comparison_group
)
SELECT sample, 'age_band' AS variable, age_band AS level, count(*) AS people FROM samples GROUP BY ALL
UNION ALL
SELECT sample, 'imd_quintile', imd_quintile, count(*) FROM samples GROUP BY ALL
UNION ALL
SELECT sample, 'prior_use', prior_use, count(*) FROM samples GROUP BY ALL
