"""Smoke test of `tools/bench_signals.py --fix-rtt --quick --only-fix-rtt`: the FIX round trip
with the pre-trade gate on and off runs against two real gateways and prints well-formed JSON.
Shape and sanity only, never the target: CI machines are too noisy for a pass/fail on
microseconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _positive(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v > 0


def test_bench_signals_quick_fix_rtt_prints_complete_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench_signals.py"), "--fix-rtt", "--quick",
         "--only-fix-rtt"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {len(lines)}"
    rtt = json.loads(lines[0])["fix_rtt_gate_on_vs_off"]

    rounds = rtt["config"]["rounds"]
    for cond in ("gate_off", "gate_on"):
        c = rtt[cond]
        for key in ("p50", "p99", "p999", "mean", "samples"):
            assert _positive(c[key]), f"{cond}.{key} = {c[key]!r}"
        assert c["p50"] <= c["p99"] <= c["p999"]
        assert c["samples"] == rtt["config"]["orders_per_condition"]
        assert len(c["p99_per_round"]) == rounds
        assert all(_positive(x) for x in c["p99_per_round"])
    for key in ("p50_ratio", "p99_ratio", "p999_ratio", "p99_ratio_median_of_rounds"):
        assert _positive(rtt[key]), key
    assert rtt["target"] == {"p99_ratio_max": 1.1}
    assert isinstance(rtt["meets_target"], bool)
    assert rtt["meets_target"] is (rtt["p99_ratio"] <= 1.1)
    # The [risk] config took: the gate-on gateway blocked an order outside the collar.
    assert rtt["gate_verified"]["gate_on_blocks_outside_collar"] is True
    assert "price_collar" in rtt["gate_verified"]["gate_on_reject_text"]
    assert rtt["gate_verified"]["signal_snapshot_wait_s"] >= 0  # the rules read a snapshot
    assert rounds >= 2  # at least one A/B/A/B alternation
    # --quick stays smoke-sized (budget: well under 40 s, setup included).
    assert rtt["config"]["orders_per_condition"] <= 1000
    assert rtt["elapsed_s"] < 40
