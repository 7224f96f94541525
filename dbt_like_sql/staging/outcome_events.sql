/*
description: >
  Every count outcome event of a linked person, one row per event, with its person_key and
  event date. The outcomes are defined under 'outcomes' in this header; the published file
  carries these definitions in _definitions.
materialized: table
columns:
  person_key: The hub's linked-person key (never published).
  outcome: Outcome name (see _definitions, kind 'outcome').
  event_date: Date of the event.
outcomes:
  ae_attendance:
    label: "A&E attendances"
    definition: >
      An attendance at an emergency department (A&E), from the acute trust's A&E extract; one
      event per attendance, dated by arrival date.
  emergency_admission:
    label: "Emergency admissions"
    definition: >
      An emergency (non-elective) hospital admission, from the acute trust's admissions extract;
      one event per admission, dated by admission date.
  mental_health_referral:
    label: "Mental-health referrals"
    definition: >
      A referral to secondary mental-health services, from the mental-health trust's extract; one
      event per referral, dated by referral date.
  childrens_social_care_referral:
    label: "Children's social-care referrals"
    definition: >
      A referral to the council's children's social care, from the council's extract; one event per
      referral, dated by referral date.
  homelessness_application:
    label: "Homelessness applications"
    definition: >
      A homelessness application to the council's housing service, recorded against the household's
      applicant; one event per application, dated by application date.
*/
SELECT rp.person_key, 'ae_attendance' AS outcome, a.arrival_date AS event_date
FROM landing.ae_attendances a
JOIN hub.record_person rp ON rp.dataset = 'ae_attendances' AND rp.record_token = a.record_token
UNION ALL
SELECT rp.person_key, 'emergency_admission', e.admission_date
FROM landing.emergency_admissions e
JOIN hub.record_person rp ON rp.dataset = 'emergency_admissions' AND rp.record_token = e.record_token
UNION ALL
SELECT rp.person_key, 'mental_health_referral', m.referral_date
FROM landing.mental_health_referrals m
JOIN hub.record_person rp ON rp.dataset = 'mental_health_referrals' AND rp.record_token = m.record_token
UNION ALL
SELECT rp.person_key, 'childrens_social_care_referral', c.referral_date
FROM landing.csc_referrals c
JOIN hub.record_person rp ON rp.dataset = 'csc_referrals' AND rp.record_token = c.record_token
UNION ALL
SELECT rp.person_key, 'homelessness_application', h.application_date
FROM landing.homelessness_applications h
JOIN hub.record_person rp ON rp.dataset = 'homelessness_applications' AND rp.record_token = h.record_token
