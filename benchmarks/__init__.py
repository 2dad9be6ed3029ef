"""Benchmarks: measured, never asserted (make bench, make compare)."""
