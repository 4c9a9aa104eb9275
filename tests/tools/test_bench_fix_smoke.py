"""Smoke test of `tools/bench_fix.py --quick`: the benchmark starts every topology, measures
and prints well-formed JSON. It checks shape and sanity only, never the targets: CI machines
are too noisy for a pass/fail on microseconds, and the targets are for the full run."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from tools.benchlib.procs import with_settings

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


def test_settled_only_profiled_run_gives_the_order_paths_tails(tmp_path: Path) -> None:
    """`--settled-only --profile-gateway DIR --profile-mode tails`, the run that says where an
    order's time in the gateway goes (README, "What is on an order's way"): only the settled
    figures, and the gateway's callbacks and their stretches up to the send as percentiles."""
    out = tmp_path / "prof"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_fix.py"), "--quick",
                           "--settled-only", "--profile-gateway", str(out),
                           "--profile-mode", "tails"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    assert result["config"]["settled_only"] is True
    for name in TOPOLOGIES:
        t = result[name]
        assert _positive(t["p50_us"]) and t["p50_us"] <= t["p99_us"]
        assert t["orders_per_s"] is None and t["back_to_back"] is None
    gw_relay = result["ratios"]["gateway_relay"]
    assert _positive(gw_relay["p50"]) and _positive(gw_relay["p99"])
    assert gw_relay["orders_per_s"] is None and gw_relay["back_to_back_p99"] is None
    assert result["meets_targets"]["all"] is False  # no throughput figure, so not met

    timing = json.loads((out / "gw_timing.json").read_text())
    assert set(timing["timings"]) == {"fromApp[oms]", "fromApp[venue]"}  # tails only
    tails = timing["tails"]
    orders = result["config"]["latency_orders"] + result["config"]["warmup_per_round"]
    # IOC orders: one OMS callback and two venue reports each, every one with its send. The
    # venue role also has the market-data session's callbacks (snapshots at logon: no send).
    assert tails["fromApp[oms]"]["calls"] == tails["to_send[oms->venue]"]["calls"] == orders
    assert tails["to_send[venue->oms]"]["calls"] == 2 * orders
    assert tails["fromApp[venue]"]["calls"] >= 2 * orders
    order, stretch = tails["fromApp[oms]"], tails["to_send[oms->venue]"]
    for q in ("p50", "p99"):  # the stretch is part of its callback, call by call
        assert 0 < stretch["cpu_us"][q] <= order["cpu_us"][q]
        assert stretch["wall_us"][q] <= order["wall_us"][q]


def test_a_b_run_measures_a_second_gateway_with_its_own_settings() -> None:
    """`--b-set`/`--b-env`: a second gateway measured in the same rounds (README, A/B runs).
    Its setting takes effect: without an event process its CPU split has no `gateway_events`,
    while the first gateway's has."""
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_fix.py"), "--quick",
                           "--settled-only", "--b-set", "grpc.event_process=false",
                           "--b-env", "FIXGW_BENCH_MARK=b"],
                          capture_output=True, text=True, timeout=150, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    b = result["gateway_b"]
    assert _positive(b["p50_us"]) and b["p50_us"] <= b["p99_us"]
    assert b["latency_samples"] == result["config"]["latency_orders"]
    for pair in ("gateway_b_gateway", "gateway_b_relay"):
        assert _positive(result["ratios"][pair]["p99"]), pair
    assert "gateway_events" in result["gateway"]["cpu_us_per_order"]["latency_phase"]
    assert "gateway_events" not in b["cpu_us_per_order"]["latency_phase"]
    assert result["config"]["gateway_b"] == {"checkout": None,
                                             "set": ["grpc.event_process=false"],
                                             "env": ["FIXGW_BENCH_MARK=b"]}


def test_settings_go_under_their_tables() -> None:
    text = with_settings('[gateway]\ndata_dir = "x"\n\n[oms]\nport = 1\n',
                         [("gateway.journal_fsync_interval_ms", "0"),
                          ("grpc.event_process_idle", "false")])
    assert tomllib.loads(text) == {"gateway": {"data_dir": "x", "journal_fsync_interval_ms": 0},
                                   "oms": {"port": 1}, "grpc": {"event_process_idle": False}}
