"""Benchmarks: scripts that measure the bridge against a real broker (not tests)."""
