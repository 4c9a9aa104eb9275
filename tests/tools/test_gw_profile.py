"""tools/benchlib/gw_profile.py: its tail figures (nearest-rank percentiles, as the benchmark's)
and its list of timed functions."""

from __future__ import annotations

from tools.benchlib.gw_profile import TARGETS, _resolve, tail_summary


def test_tail_summary_gives_wall_cpu_and_off_cpu_percentiles() -> None:
    # (wall µs, CPU µs) per call; the last call waited 360 µs off the CPU.
    samples = [(w * 1000, c * 1000) for w, c in ((10, 10), (20, 15), (30, 30), (400, 40))]
    assert tail_summary(samples) == {
        "calls": 4,
        "wall_us": {"p50": 20.0, "p90": 400.0, "p99": 400.0, "p99.9": 400.0},
        "cpu_us": {"p50": 15.0, "p90": 40.0, "p99": 40.0, "p99.9": 40.0},
        "off_cpu_us": {"p50": 0.0, "p90": 360.0, "p99": 360.0, "p99.9": 360.0},
    }


def test_every_timed_function_still_exists() -> None:
    """A target the code no longer has is skipped at run time, and its time silently joins its
    caller's: a rename must update the list."""
    assert [t for t in TARGETS if _resolve(t) is None] == []
