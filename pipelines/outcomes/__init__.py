"""Cohorts and outcomes: the SQL models of dbt_like_sql/ (planned from the contracts in
force), the record attributes they read, and the effects estimated from them
(docs/outcomes.md). No Dagster imports.
"""
