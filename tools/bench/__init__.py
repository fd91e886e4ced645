"""Benchmarks: speed and memory targets live here, never in timed tests (figures: docs/benchmarks.md)."""
