"""Helpers for `tools/bench_fix.py`: process fixtures, the OMS load driver and the bare relay.

Kept apart from `tests/` on purpose: a benchmark must not change when a test fixture does.
"""
