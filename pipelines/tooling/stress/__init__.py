"""Stress data for linkage: two partners' files of the same people, written the ways real
systems get them wrong, one named profile per failure class (issue 17).

Separate from the demo's synthetic place (:mod:`pipelines.tooling.synth`) on purpose: the linkage model
was built and tuned on that place, so accuracy measured on its noise flatters the model. The
profiles here (:mod:`pipelines.tooling.stress.profiles`) take their rates from published linkage
studies where there are any, and are for measuring, with clear-text Splink beside the tokens
(``placelink bench linkage --profile NAME``), not for tuning against.
"""

from pipelines.tooling.stress.generate import StressFiles, generate
from pipelines.tooling.stress.profiles import PROFILES, Profile

__all__ = ["PROFILES", "Profile", "StressFiles", "generate"]
