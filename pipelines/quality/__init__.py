"""Quality gates: Great Expectations suites built from the contracts, run on every delivery
before it lands (:mod:`~pipelines.quality.validate`), results kept in the warehouse and
shown as Dagster asset checks and in ``reports/quality.html`` (:mod:`~pipelines.quality.report`)."""
