/*
description: >
  The age bands every cohort and outcome model uses, in one place. Age = calendar year of the
  index date minus year of birth (partners share year of birth only), so a band boundary can be
  out by up to a year for a person whose birthday falls after the index date in that year.
materialized: table
columns:
  age_band: Label of the band, e.g. '11-17'.
  min_age: Youngest age in the band (years).
  max_age: Oldest age in the band (years).
  sort_order: Order in which bands are shown.
*/
SELECT * FROM (VALUES
    ('0-4', 0, 4, 1),
    ('5-10', 5, 10, 2),
    ('11-17', 11, 17, 3),
    ('18-64', 18, 64, 4),
    ('65+', 65, 200, 5)
) AS bands(age_band, min_age, max_age, sort_order)
