/*
description: >
  For every cohort and comparison person and each 12-month window, the number of events of each
  count outcome inside the window (zero when there were none): A&E attendances, emergency
  admissions, mental-health referrals, children's social-care referrals, homelessness
  applications.
materialized: table
columns:
  person_key: The hub's linked-person key (never published).
  cohort: programme or comparison.
  period: before or after.
  age_band: Age band at the index date.
  ward_code: Electoral ward of residence.
  outcome: Outcome name.
  events: Events of the outcome inside the window.
*/
WITH outcome_list AS (SELECT DISTINCT outcome FROM staging.outcome_events)
SELECT pp.person_key, pp.cohort, pp.period, pp.age_band, pp.ward_code, o.outcome,
       count(e.event_date) AS events
FROM outcomes.person_periods pp
CROSS JOIN outcome_list o
LEFT JOIN staging.outcome_events e
       ON e.person_key = pp.person_key AND e.outcome = o.outcome
      AND e.event_date >= pp.window_start AND e.event_date < pp.window_end
GROUP BY ALL
