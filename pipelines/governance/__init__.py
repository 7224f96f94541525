"""The data-sharing agreements and what IG officers rely on: validating contracts, their
signed content and approvals, reviewing a change, which flows are in force, the IG
register, retention, delivery cadence and the hash-chained audit log
(docs/governance.md). No Dagster imports.
"""
