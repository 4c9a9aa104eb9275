"""Smoke test of `tools/bench_fix.py --quick`: the benchmark starts every topology, measures
and prints well-formed JSON. It checks shape and sanity only, never the targets: CI machines
are too noisy for a pass/fail on microseconds, and the targets are for the full run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = ("direct", "relay", "gateway")
FIGURES = ("p50_us", "p99_us", "p999_us", "orders_per_s")


def _positive(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v > 0


def test_bench_fix_quick_prints_complete_json() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_fix.py"), "--quick"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {len(lines)}"
    result = json.loads(lines[0])

    for name in TOPOLOGIES:
        t = result[name]
        for key in FIGURES:
            assert _positive(t[key]), f"{name}.{key} = {t[key]!r}"
        assert t["p50_us"] <= t["p99_us"] <= t["p999_us"]
        assert t["latency_samples"] == result["config"]["latency_orders"]
        b2b = t["back_to_back"]  # the second latency measure (see tools/bench_fix.py)
        assert _positive(b2b["p50_us"]) and b2b["p50_us"] <= b2b["p99_us"] <= b2b["p999_us"]
        assert b2b["latency_samples"] == result["config"]["latency_orders"]

    for pair in ("gateway_relay", "relay_direct"):
        for key in ("p50", "p99", "orders_per_s", "p50_median_of_rounds",
                    "p99_median_of_rounds", "back_to_back_p50", "back_to_back_p99"):
            assert _positive(result["ratios"][pair][key]), f"ratios.{pair}.{key}"
    rounds = result["config"]["rounds"]
    assert all(len(result[name]["p99_us_per_round"]) == rounds for name in TOPOLOGIES)
    targets = result["targets"]
    assert {k: targets[k] for k in ("p50_ratio_max", "p99_ratio_max", "min_orders_per_s",
                                    "min_orders_per_s_vs_relay")} == {
        "p50_ratio_max": 1.5, "p99_ratio_max": 1.5, "min_orders_per_s": 5000,
        "min_orders_per_s_vs_relay": 0.667}
    # The absolute target scaled by this run's relay against the 7,500/s relay.
    assert targets["min_orders_per_s_scaled_to_this_run"] == round(
        5000 * result["relay"]["orders_per_s"] / 7500)
    meets = result["meets_targets"]
    assert set(meets) >= {"p50", "p99", "orders_per_s_vs_relay", "orders_per_s_absolute", "all"}
    assert meets["all"] == (meets["p50"] and meets["p99"] and meets["orders_per_s_vs_relay"])
    assert all(isinstance(v, bool) for v in meets.values())
    assert _positive(result["machine"]["cpu_count"])
    assert result["machine"]["python"]
    # --quick must stay a smoke-sized run (CI budget: well under 30 s, setup included).
    assert result["config"]["quick"] is True
    assert result["config"]["latency_orders"] <= 1000
    assert result["config"]["throughput_orders"] <= 5000
