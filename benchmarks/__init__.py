"""Reproducible benchmarks; each module prints JSON (`python -m benchmarks.<name> --json`)."""
