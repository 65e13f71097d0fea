"""Benchmarks of the driver's speed and memory, each reported as a ratio against a baseline
measured in the same run, so the numbers compare across machines.

Run with ``python -m bench.run [--quick] [--json out.json]``; see docs/benchmarks.md.
"""
