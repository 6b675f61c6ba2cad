"""Benchmarks: run outside the test suite (`make bench`); results go to BENCHMARKS.md and bench/results/."""
