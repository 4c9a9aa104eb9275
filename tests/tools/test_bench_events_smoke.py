"""Smoke test of `tools/bench_events.py --quick --only-fix-rtt`: the FIX round trip with and
without gRPC subscribers runs against a real gateway and prints well-formed JSON. Shape and
sanity only, never the target: CI machines are too noisy for a pass/fail on microseconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _positive(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v > 0


def test_bench_events_quick_fix_rtt_prints_complete_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench_events.py"), "--quick", "--only-fix-rtt"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    rtt = result["fix_round_trip_us"]

    for cond in ("none", "10_subscribers"):
        c = rtt[cond]
        for key in ("p50", "p99", "p999", "mean", "samples"):
            assert _positive(c[key]), f"{cond}.{key} = {c[key]!r}"
        assert c["p50"] <= c["p99"] <= c["p999"]
        assert c["samples"] == rtt["config"]["orders_per_condition"]
    for key in ("p50_ratio", "p99_ratio", "p999_ratio"):
        assert _positive(rtt[key]), key
    assert rtt["target"] == {"p99_ratio_max": 1.25}
    assert isinstance(rtt["meets_target"], bool)
    assert result["targets"]["fix_rtt_p99_ratio_le_1_25"] is rtt["meets_target"]

    subs = rtt["subscribers"]
    assert subs["count"] == 10
    for key in ("events_per_order", "events_published_while_attached", "events_delivered_total",
                "events_delivered_min_per_subscriber", "events_per_stream_message"):
        assert _positive(subs[key]), f"subscribers.{key} = {subs[key]!r}"
    assert subs["lag_events_at_round_end_max"] >= 0
    assert subs["errors"] == []
    # The subscribers kept up: every one got every event published while attached, in order.
    assert subs["complete"] and subs["gap_free"] and subs["caught_up"]
    assert subs["events_delivered_total"] == 10 * subs["events_published_while_attached"]
    assert _positive(subs["delivery_latency_ms"]["p99"])
    # --quick stays smoke-sized (budget: well under 30 s, setup included).
    assert rtt["config"]["orders_per_condition"] <= 1000
    assert rtt["elapsed_s"] < 30
