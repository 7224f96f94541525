"""placelink: the data backbone of a place-based partnership.

Library code lives here with no Dagster imports except in the wiring modules
(`definitions`, `resources`, `sensors`, `schedules`, `jobs`).
"""
