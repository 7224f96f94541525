-- description: Shared outcomes before and after the index date, by cohort (programme or matched
--   comparison), outcome and age band at the index date: people in the group, events in the
--   12 months before and the 12 months after, and events per 100 people. Disclosure control:
--   counts 1-7 redacted, other counts rounded to the nearest 5; rates from unrounded counts and
--   suppressed where a count they use is redacted.
-- materialized: table
-- counts: people, events
-- rates: events_per_100_people = events / people * 100
SELECT cohort, outcome, age_band, period,
       count(DISTINCT person_key) AS people,
       CAST(sum(events) AS BIGINT) AS events
FROM outcomes.person_outcomes
GROUP BY ALL
ORDER BY cohort, outcome, age_band, period
