"""Only what passed disclosure control leaves the hub: statistical disclosure control, the
published file built apart and swapped in, the guard that refuses a publication losing a
source, what a publication was built from, and the outcomes report of the published
file. No Dagster imports.
"""
