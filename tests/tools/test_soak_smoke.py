"""Short run of `tools/soak_failover.py` (marked slow: `make test` and CI run it, in parallel
with the rest; `make test PYTEST_ARGS='-m "not slow"'` leaves it out).

Half a minute of load with one FIX drop: the script must print one JSON summary, see the flow
go FIX -> REST -> FIX, and find every invariant holding (exit 0)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_soak_failover_half_minute() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "soak_failover.py"), "--minutes", "0.5",
         "--rate", "20", "--flip-every", "8"],
        capture_output=True, text=True, timeout=240, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one JSON line, got {proc.stdout!r}\n{proc.stderr[-3000:]}"
    summary = json.loads(lines[0])
    assert proc.returncode == 0, json.dumps(summary, indent=1)
    assert summary["ok"] is True and summary["failures"] == []
    assert summary["orders_sent"] > 0
    acked = summary["acked"]["FIX"] + summary["acked"]["REST"]
    assert acked + summary["rejected"] == summary["orders_sent"]
    assert summary["acked"]["FIX"] > 0 and summary["acked"]["REST"] > 0
    assert summary["fix_drops"] >= 1
    assert summary["switches"]["fix_to_rest"] >= 1 and summary["switches"]["rest_to_fix"] >= 1
    assert summary["venue"]["cum_qty_mismatches"] == 0
    assert summary["venue"]["orders_checked"] == acked
    for t in ("FIX", "REST"):
        lat = summary["ack_latency_ms"][t]
        assert 0 < lat["p50"] <= lat["p99"]
