/*
description: >
  The cluster of every cohort and comparison person, for the effect estimates' confidence
  intervals: people of one cluster can be alike (a family shares its need, its home and often its
  events), so the estimates treat clusters, not people, as the independent units. A programme
  member's cluster is the family of their first enrolment (the VCS partner's family token);
  anyone else's is their most often recorded postcode (a household proxy: several households
  share a postcode unit, which can only widen the intervals), or the person alone when no
  postcode was recorded.
materialized: table
columns:
  person_key: The hub's linked-person key (never published).
  cluster_key: "'family:' or 'postcode:' and a keyed token, or 'person:' and the person_key (never published)."
*/
WITH people AS (SELECT DISTINCT person_key FROM outcomes.person_periods),
families AS (
    SELECT rp.person_key, arg_min(e.family_token, (e.enrolment_date, e.family_token)) AS family_token
    FROM landing.family_support_enrolments e
    JOIN hub.record_person rp ON rp.dataset = 'family_support_enrolments' AND rp.record_token = e.record_token
    WHERE e.family_token IS NOT NULL
    GROUP BY rp.person_key
),
postcodes AS (
    SELECT rp.person_key, i.postcode_token
    FROM hub.record_identity i
    JOIN hub.record_person rp USING (dataset, record_token)
    -- only the people of the periods: at 1M people about one in six of the persons
    WHERE i.postcode_token IS NOT NULL AND rp.person_key IN (SELECT person_key FROM people)
    GROUP BY rp.person_key, i.postcode_token
    QUALIFY row_number() OVER (PARTITION BY rp.person_key ORDER BY count(*) DESC, i.postcode_token) = 1
)
SELECT p.person_key,
       CASE WHEN f.family_token IS NOT NULL THEN 'family:' || f.family_token
            WHEN h.postcode_token IS NOT NULL THEN 'postcode:' || h.postcode_token
            ELSE 'person:' || p.person_key END AS cluster_key
FROM people p
LEFT JOIN families f USING (person_key)
LEFT JOIN postcodes h USING (person_key)
