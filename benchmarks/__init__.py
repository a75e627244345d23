"""Benchmarks: speed and memory goals with their numbers written to ``benchmarks/results/``."""
