"""The Dagster wiring: the code location (definitions, code_location), its jobs, sensors,
schedules and alert sensors, running the job in process (run) and reading a run's result as an
exit code (run_outcome).

It sits above the assets and the library and imports both; neither imports it (pyproject.toml
[tool.importlinter], docs/architecture.md). Only entry points (the CLI, the demo, the benchmarks
that start runs) import it.
"""
