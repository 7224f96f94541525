-- description: One row per linked person (person_key) with the most frequently recorded year of
--   birth, sex and LSOA across all partners' records (a tie goes to the smallest value), that
--   LSOA's ward and deprivation decile, and the number of partners holding a record of the person.
-- materialized: table
WITH attributes AS (
    -- every landed dataset's records; NULL where a dataset's contract has no such column
    SELECT record_token, dataset, year_of_birth, sex, lsoa_code FROM hub.record_attributes
),
linked AS (
    SELECT rp.person_key, rp.partner_id, a.year_of_birth, a.sex, a.lsoa_code
    FROM attributes a
    JOIN hub.record_person rp ON rp.dataset = a.dataset AND rp.record_token = a.record_token
),
-- The most frequent value of each attribute, ties going to the smallest value, so that two runs
-- on the same records agree (mode() breaks ties by the order rows happen to arrive in); the ward
-- and deprivation decile are those of that one LSOA, not of any of the person's LSOAs.
modal_year_of_birth AS (
    SELECT person_key, year_of_birth FROM linked WHERE year_of_birth IS NOT NULL GROUP BY person_key, year_of_birth
    QUALIFY row_number() OVER (PARTITION BY person_key ORDER BY count(*) DESC, year_of_birth) = 1
),
modal_sex AS (
    SELECT person_key, sex FROM linked WHERE sex IS NOT NULL GROUP BY person_key, sex
    QUALIFY row_number() OVER (PARTITION BY person_key ORDER BY count(*) DESC, sex) = 1
),
modal_lsoa AS (
    SELECT person_key, lsoa_code FROM linked WHERE lsoa_code IS NOT NULL GROUP BY person_key, lsoa_code
    QUALIFY row_number() OVER (PARTITION BY person_key ORDER BY count(*) DESC, lsoa_code) = 1
),
people AS (
    SELECT person_key, count(DISTINCT partner_id) AS partners FROM linked GROUP BY person_key
)
SELECT p.person_key, y.year_of_birth, s.sex, a.lsoa_code, r.ward_code, r.imd_decile, p.partners
FROM people p
LEFT JOIN modal_year_of_birth y USING (person_key)
LEFT JOIN modal_sex s USING (person_key)
LEFT JOIN modal_lsoa a USING (person_key)
LEFT JOIN hub.lsoa_reference r ON r.lsoa_code = a.lsoa_code
