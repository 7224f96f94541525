/*
description: >
  Programme cohort: every linked person recorded by the VCS partner as a member of a family
  enrolled in the family-support programme (adults and children). Index date = the person's
  first enrolment date; programme type = the type of that first enrolment.
materialized: table
columns:
  person_key: The hub's linked-person key (never published).
  index_date: First enrolment date of the person's family in the programme.
  programme_type: Programme type of that first enrolment.
*/
SELECT rp.person_key,
       min(e.enrolment_date) AS index_date,
       -- a tie on the first date goes to the first type by name, the same in every run
       arg_min(e.programme_type, (e.enrolment_date, e.programme_type)) AS programme_type
FROM landing.family_support_enrolments e
JOIN hub.record_person rp ON rp.dataset = 'family_support_enrolments' AND rp.record_token = e.record_token
GROUP BY rp.person_key
