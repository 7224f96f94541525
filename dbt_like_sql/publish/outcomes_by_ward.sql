-- description: Shared outcomes before and after the index date by cohort, outcome and ward of
--   residence: people in the group and events in each 12-month window. Disclosure control as for
--   outcomes_before_after.
-- materialized: table
-- counts: people, events
-- rates: events_per_100_people = events / people * 100
SELECT cohort, outcome, ward_code, period,
       count(DISTINCT person_key) AS people,
       CAST(sum(events) AS BIGINT) AS events
FROM outcomes.person_outcomes
GROUP BY ALL
ORDER BY cohort, outcome, ward_code, period
