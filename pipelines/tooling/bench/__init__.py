"""Benchmarks (`placelink bench ...`): measured on demand, never timed tests."""
