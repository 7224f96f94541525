-- description: One row per linked person (person_key) with the most frequently recorded year of
--   birth, sex, LSOA and ward across all partners' records, the LSOA's deprivation decile, and
--   the number of partners holding a record of the person.
-- materialized: table
WITH attributes AS (
    -- every landed dataset's records; NULL where a dataset's contract has no such column
    SELECT record_token, dataset, year_of_birth, sex, lsoa_code FROM hub.record_attributes
),
linked AS (
    SELECT rp.person_key, rp.partner_id, a.year_of_birth, a.sex, a.lsoa_code
    FROM attributes a
    JOIN hub.record_person rp ON rp.dataset = a.dataset AND rp.record_token = a.record_token
)
SELECT l.person_key,
       mode(l.year_of_birth) AS year_of_birth,
       mode(l.sex) AS sex,
       mode(l.lsoa_code) AS lsoa_code,
       any_value(r.ward_code) AS ward_code,
       any_value(r.imd_decile) AS imd_decile,
       count(DISTINCT l.partner_id) AS partners
FROM linked l
LEFT JOIN hub.lsoa_reference r ON r.lsoa_code = l.lsoa_code
GROUP BY l.person_key
