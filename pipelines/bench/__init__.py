"""Benchmarks (`placelink bench ...`): figures measured on synthetic places, not tests."""
