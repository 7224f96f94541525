/*
description: >
  Everyone the comparison group is matched from, with the matching variables: every programme
  cohort member (at their own index date) and every linked person never enrolled (at an index date
  drawn from a cohort member of the same IMD quintile, a fixed hash draw, so both groups are
  measured over the same calendar windows). Age band and prior service use are measured at that
  date: prior use = outcome events of any kind in [index - 24 months, index - 12 months), cut at
  the start of the data; none, one, or two or more. Prior use is measured outside both outcome
  windows on purpose: matching on events inside the 'before' window would pick comparison people
  at a random high or low and make their 'after' counts regress to the mean, a change that is not
  an effect. People without a year of birth or an area are left out (they cannot be matched).
materialized: table
columns:
  person_key: The hub's linked-person key (never published).
  enrolled: True for programme cohort members, false for never-enrolled candidates.
  index_date: The cohort member's first enrolment date, or the date a candidate drew.
  age_band: Age band at the index date.
  imd_quintile: IMD quintile of the LSOA of residence (1 = most deprived).
  prior_use: Outcome events of any kind in [index - 24 months, index - 12 months) (none, one, two or more).
*/
WITH people AS (
    SELECT p.person_key, p.year_of_birth, (p.imd_decile + 1) // 2 AS imd_quintile,
           c.person_key IS NOT NULL AS enrolled, c.index_date
    FROM staging.persons p
    LEFT JOIN cohorts.programme_cohort c USING (person_key)
    WHERE p.year_of_birth IS NOT NULL AND p.imd_decile IS NOT NULL
),
cohort_dates AS (
    SELECT imd_quintile, index_date,
           CAST(row_number() OVER (PARTITION BY imd_quintile ORDER BY hash(person_key), person_key) - 1 AS BIGINT) AS slot,
           count(*) OVER (PARTITION BY imd_quintile) AS dates
    FROM people WHERE enrolled
),
candidate_slots AS (
    -- each candidate's draw, computed before the join so that the join is on equal keys
    -- (a join condition over three tables made DuckDB compare every candidate with every
    -- cohort member of the quintile: 444 s at 1 million people)
    SELECT p.person_key, p.year_of_birth, p.imd_quintile,
           CAST(hash(p.person_key || 'index') % n.dates AS BIGINT) AS slot
    FROM people p
    JOIN (SELECT DISTINCT imd_quintile, dates FROM cohort_dates) n USING (imd_quintile)
    WHERE NOT p.enrolled
),
dated AS (
    -- cohort members keep their own index date; candidates draw one from their quintile
    SELECT person_key, year_of_birth, imd_quintile, enrolled, index_date FROM people WHERE enrolled
    UNION ALL
    SELECT c.person_key, c.year_of_birth, c.imd_quintile, FALSE, d.index_date
    FROM candidate_slots c
    JOIN cohort_dates d USING (imd_quintile, slot)
),
prior AS (
    SELECT d.person_key, count(e.event_date) AS events
    FROM dated d
    LEFT JOIN staging.outcome_events e
           ON e.person_key = d.person_key
          AND e.event_date >= d.index_date - INTERVAL 24 MONTH
          AND e.event_date < d.index_date - INTERVAL 12 MONTH
    GROUP BY d.person_key
)
SELECT d.person_key, d.enrolled, d.index_date, b.age_band, d.imd_quintile,
       CASE WHEN pr.events = 0 THEN 'none' WHEN pr.events = 1 THEN 'one' ELSE 'two or more' END AS prior_use
FROM dated d
JOIN prior pr USING (person_key)
JOIN staging.age_bands b ON year(d.index_date) - d.year_of_birth BETWEEN b.min_age AND b.max_age
