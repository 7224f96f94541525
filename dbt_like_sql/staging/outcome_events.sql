-- description: Every outcome event of a linked person, one row per event: A&E attendances,
--   emergency admissions, mental-health referrals, children's social-care referrals and
--   homelessness applications, each with its person_key and event date.
-- materialized: table
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
