"""Benchmarks (SciFact, STARD) and speed figures; only the CLI imports these, never the library."""
