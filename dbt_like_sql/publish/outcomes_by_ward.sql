/*
description: >
  Count outcomes in the 12 months before and the 12 months after the index date by cohort,
  outcome and electoral ward of residence, with an 'All wards' total row: people in the group,
  their events in the window, and events per 100 people. Windows and disclosure control as for
  outcomes_before_after (counts 1-7 redacted, others rounded to 5, further cells redacted so the
  'All wards' total cannot reveal a redacted ward).
materialized: table
dimensions: [cohort, outcome, ward_code, period]
totals: {ward_code: All wards}
counts: [people, events]
population: people
rates: ["events_per_100_people = events / people * 100"]
columns:
  cohort: programme or comparison.
  outcome: Outcome name; definitions in _definitions (kind 'outcome').
  ward_code: "Electoral ward of residence (ONS code), 'unknown area' where no record of the person gave a known area, or 'All wards' for the total."
  period: before or after the index date (12-month windows).
  people: People in the group (rounded to 5; NULL = redacted).
  events: Events of the outcome in the window (rounded to 5; NULL = redacted).
  events_per_100_people: Events per 100 people, from unrounded counts (NULL where a count it uses is redacted).
*/
SELECT cohort, outcome, coalesce(ward_code, 'unknown area') AS ward_code, period,
       count(DISTINCT person_key) AS people,
       CAST(sum(events) AS BIGINT) AS events
FROM outcomes.person_outcomes
GROUP BY ALL
ORDER BY cohort, outcome, ward_code, period
