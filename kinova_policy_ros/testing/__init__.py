"""Synthetic episodes, checkpoints and bags used by the tests and the benchmarks."""
