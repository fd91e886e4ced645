"""Sample Substra assets (substratools functions, openers, data) shared by tests and benchmarks."""
