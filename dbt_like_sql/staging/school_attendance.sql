/*
description: >
  School attendance of linked pupils, one row per pupil per term, from the council's education
  extract: sessions possible and sessions missed (possible minus attended) in the term starting
  on term_start_date.
materialized: table
columns:
  person_key: The hub's linked-person key (never published).
  term_start_date: First day of the term.
  sessions_possible: Half-day sessions the pupil could have attended in the term.
  sessions_missed: Sessions possible minus sessions attended (authorised and unauthorised absence).
outcomes:
  school_absence:
    label: "School absence"
    definition: >
      Overall school absence rate: half-day sessions missed (authorised or unauthorised) as a
      percentage of sessions possible, over the terms that start inside the window, for pupils with
      at least one such term (Reception to Year 11), from the council's school attendance extract.
*/
SELECT rp.person_key, s.term_start_date,
       CAST(s.sessions_possible AS BIGINT) AS sessions_possible,
       CAST(s.sessions_possible - s.sessions_attended AS BIGINT) AS sessions_missed
FROM landing.school_attendance s
JOIN hub.record_person rp ON rp.dataset = 'school_attendance' AND rp.record_token = s.record_token
WHERE s.sessions_possible > 0
