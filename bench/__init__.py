"""Benchmarks of booklogr-tasks against hand-written baselines: `python -m bench [--quick]`."""
