"""Peer implementations of Segue's core job, for benchmarks."""
