"""The code location Dagster loads (workspace.yaml, ``dg dev``, pyproject.toml [tool.dg]): this
hub's graph, from the environment read once when the code server starts.

The one place the pipeline's settings come from ``os.environ``; everything below gets them from
here (:func:`pipelines.orchestration.definitions.placelink_definitions`). A process that runs
another hub (``placelink run``, the demo, the tests) builds its own definitions from its own
settings instead of importing this module.
"""

from pipelines.core.settings import Settings
from pipelines.orchestration.definitions import placelink_definitions

defs = placelink_definitions(Settings.from_env())
