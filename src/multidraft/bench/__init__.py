"""Benchmarks on real models: recording distributions, token-level and end-to-end tables."""
