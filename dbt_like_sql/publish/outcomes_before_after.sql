/*
description: >
  Count outcomes in the 12 months before and the 12 months after the index date, by cohort
  (programme, or the matched comparison group), outcome and age band at the index date, with
  total rows '0-17' (children), '18+' (adults) and 'All ages': people in the group, their events
  in the window, and events per 100
  people. The before window is [index - 12 months, index), the after window [index, index + 12
  months); the index date is the family's first enrolment date (programme) or a matched date
  (comparison). Disclosure control: counts 1-7 redacted (NULL), other counts rounded to the
  nearest 5, and further cells redacted so that no redacted cell can be recovered from the
  totals; rates from unrounded counts, hidden where a count they use is redacted.
materialized: table
dimensions: [cohort, outcome, age_band, period]
totals: {age_band: All ages}
subtotals: {age_band: {'0-17': ['0-4', '5-10', '11-17'], '18+': ['18-64', '65+']}}
counts: [people, events]
population: people
rates: ["events_per_100_people = events / people * 100"]
columns:
  cohort: "'programme' (members of families enrolled in the family-support programme) or 'comparison' (matched non-enrolled people)."
  outcome: Outcome name; definitions in _definitions (kind 'outcome').
  age_band: "Age band at the index date, or a total: '0-17' (children), '18+' (adults), 'All ages'."
  period: "'before' = the 12 months before the index date; 'after' = the 12 months from it."
  people: People in the group (rounded to 5; NULL = redacted).
  events: Events of the outcome in the window (rounded to 5; NULL = redacted).
  events_per_100_people: Events per 100 people, from unrounded counts (NULL where a count it uses is redacted).
*/
SELECT cohort, outcome, age_band, period,
       count(DISTINCT person_key) AS people,
       CAST(sum(events) AS BIGINT) AS events
FROM outcomes.person_outcomes
GROUP BY ALL
ORDER BY cohort, outcome, age_band, period
