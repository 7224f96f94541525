"""Cross-cutting plumbing every stage shares: the typed settings, the injected clock, the
DuckDB warehouse, the hub-wide run lock, pre-flight checks, progress of long work, the
stage clock and the alert channels. No Dagster imports.
"""
