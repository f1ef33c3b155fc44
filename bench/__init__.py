"""Benchmarks run from the repository root: `python -m bench.keras_vs_aesthetix`."""
