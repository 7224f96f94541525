"""Synthetic place generator: a fictional borough, its people, and three partners' raw extracts.

`generate_place(people, seed, out)` writes the place (layout in INTERFACES.md) and
returns a `PlaceManifest`. The same seed gives byte-identical files.
"""

from pipelines.tooling.synth.generate import (
    GENERATOR_VERSION,
    DatasetSummary,
    PlaceManifest,
    generate_place,
)

__all__ = ["GENERATOR_VERSION", "DatasetSummary", "PlaceManifest", "generate_place"]
