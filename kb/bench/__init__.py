"""Benchmarks (SciFact, STARD) and speed figures; only the CLI (kb.commands) imports these, never the library."""
