"""Tooling around the hub, not part of its run: synthetic places (synth/), linkage stress
files (stress/), the benchmarks (bench/) and the demo that plays partners, approvers and
hub.
"""
