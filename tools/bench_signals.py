#!/usr/bin/env python3
"""Signal-module micro-benchmarks; prints ONE JSON object on stdout.

    python tools/bench_signals.py                 # default run counts, seed 42
    python tools/bench_signals.py --runs 2000 --seed 7

Why: snapshots are recomputed off the order path, but they must stay cheap enough to refresh
every symbol on every book/mark change, and the issue's budget is a cascade simulation
<= 2 ms on a 2,000-level grid. Absolute microseconds depend on the machine, so every figure is
paired with a baseline measured in the same run on the same data, and the ratio is the number
to watch in CI:

* ``np.cumsum`` over 2,000 floats: the cost floor of touching one grid once from Python;
* a naive pure-Python cascade (per-level loops, same rules, same inputs) for the cascade; its
  result is checked against the vectorized one so the comparison is like for like;
* a naive pure-Python map update (per-tier, per-bin loops) for ``LiquidationMap.apply_interval``.

The inputs are realistic for a liquid perp: a 2,000-level spot book per side (0.05 % apart, so
the book spans the whole ±e^0.5 grid), 24 h of 5-minute OI intervals replayed into the 2,000-bin
map with the default six leverage tiers, 200 daily closes and 24 hourly funding prints.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from gateway.signals import (  # noqa: E402
    Book,
    FundingRecord,
    OIHistory,
    SignalInputs,
    compute_snapshot,
    flow_estimate,
    simulate_cascade,
)
from gateway.signals.snapshot import build_map  # noqa: E402

NOW = 1_700_000_000.0
GRID = 2_000
CASCADE_TARGET_US = 2_000.0


def timed(fn: Callable[[], object], runs: int, warmup: int = 5) -> dict[str, float]:
    """p50/p99 of ``fn`` in µs; GC is paused while timing so one collection is not a p99."""
    for _ in range(warmup):
        fn()
    samples = np.empty(runs, dtype=np.float64)
    gc.collect()
    gc.disable()
    try:
        for i in range(runs):
            t0 = time.perf_counter_ns()
            fn()
            samples[i] = (time.perf_counter_ns() - t0) / 1e3
    finally:
        gc.enable()
    return {
        "p50_us": round(float(np.percentile(samples, 50)), 2),
        "p99_us": round(float(np.percentile(samples, 99)), 2),
    }


def make_inputs(seed: int) -> SignalInputs:
    """One symbol's inputs: 2,000-level book per side, 288 OI intervals, closes, funding."""
    rng = np.random.default_rng(seed)
    n = 288
    ts = NOW - 60.0 - 300.0 * (n - 1 - np.arange(n))
    px = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.003, n)))
    oi = np.abs(2e8 + np.cumsum(rng.normal(2e5, 2e6, n)))
    hist = OIHistory.of(ts, oi, px, px * 1.002, px * 0.998, px, rng.uniform(0.0, 1.0, n))
    p = float(px[-1])
    k = np.arange(1, GRID + 1)
    step = 1.0 / GRID  # 0.05 %: 2,000 levels reach e^-1 .. e^+1 of the price
    book = Book.of(
        p * np.exp(-k * step),
        rng.uniform(5.0, 200.0, GRID),
        p * np.exp(k * step),
        rng.uniform(5.0, 200.0, GRID),
        NOW - 1.0,
    )
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.03, 200)))
    funding = tuple(FundingRecord(NOW - 3600.0 * h, 0.0000125) for h in range(24))
    return SignalInputs(
        "PF_XBTUSD",
        NOW,
        p,
        p * 0.9993,
        NOW - 0.5,
        book=book,
        funding=funding,
        oi_history=hist,
        closes=closes,
        closes_as_of=NOW - 3600.0,
    )


# ---------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------
def naive_cascade(
    book_px: list[float],
    book_qty: list[float],
    cl_px: list[float],
    cl_qty: list[float],
    shock: float,
    sigma_d: float,
    daily_volume: float,
    max_steps: int = 50,
) -> tuple[float, float, int]:
    """The §5 long cascade written the obvious way: Python loops over levels and clusters.

    Same rules as ``simulate_cascade`` (τ = 1, cumulative square-root extrapolation from the
    last level, trigger never moves back); inputs sorted descending. Returns (qty, end, steps).
    """
    remaining = list(book_qty)
    fired = [False] * len(cl_px)
    x = shock
    total = 0.0
    steps = 0
    rest = 0.0
    while True:
        q = 0.0
        hit: list[int] = []
        for i, p in enumerate(cl_px):
            if not fired[i] and p >= x:
                q += cl_qty[i]
                hit.append(i)
        if q <= 0.0 or steps >= max_steps:
            break
        for i in hit:
            fired[i] = True
        steps += 1
        total += q
        left = q
        last = None
        for j in range(len(remaining)):
            if remaining[j] <= 0.0:
                continue
            take = min(remaining[j], left)
            remaining[j] -= take
            left -= take
            last = book_px[j]
            if left <= 0.0:
                break
        if left > 0.0:
            rest += left
            impact = 0.7 * sigma_d * math.sqrt(rest / daily_volume)
            b = book_px[-1] * (1.0 - min(impact, 0.99))
        else:
            b = last if last is not None else x
        x = min(x, b)
    return total, x, steps


def naive_map_update(
    usd: list[list[float]],
    centers: list[float],
    log_lo: float,
    step: float,
    factors: list[list[float]],
    weights: list[float],
    decay: float,
    low: float,
    high: float,
    delta: float,
    entry: float,
) -> None:
    """``apply_interval`` for both sides written with per-bin and per-tier Python loops."""
    for row, side in enumerate(usd):
        for i in range(len(side)):
            side[i] *= decay
            if (row == 0 and centers[i] >= low) or (row == 1 and centers[i] <= high):
                side[i] = 0.0
        for f, w in zip(factors[row], weights, strict=True):
            pos = (math.log(entry * f) - log_lo) / step
            if 0.0 <= pos < len(side):
                side[int(pos)] += delta * w


# ---------------------------------------------------------------------------------------------
# PLACEHOLDER for the pre-trade gate (§8) - to be filled in by whoever implements the gate.
# ---------------------------------------------------------------------------------------------
def gate_decision_timing_us() -> dict[str, float] | None:
    """p50/p99 of ``Gate.check`` (µs) over 100,000 orders against precomputed snapshots.

    Config: every classic limit on (max qty, notional, 5 % collar, 50 orders/s per symbol, 200
    open orders per session) plus two signal rules (``crowded_long`` on buys, ``crowded_short``
    on sells). Orders go round-robin over 20 symbols and 4 OMS sessions; passing orders are
    counted with ``on_order_routed`` (a simulated 2 ms per order keeps every symbol at 25/s,
    so the rate deques are full and the window comparison runs) and closed 100 orders later,
    all outside the timed call. Figures, each timed per call with GC running as it would on the
    FIX thread:

    * ``p50_us``/``p99_us``: the mix - 90 % pass, 5 % blocked by the price collar, 5 % buys on
      one symbol whose snapshot is the seed's crowded-long shape, blocked with the full text;
    * ``allow_*``: every order passes after both signal rules read every condition (worst
      allow: funding and gravity match, liq_to_depth does not);
    * ``block_signal_*``: every order blocked by ``crowded_long`` (the longest Text);
    * ``baseline_*``: a dict lookup plus one ``Decimal`` compare, timed the same way.

    ``meets_target``: all three gate p99s <= 20 µs.
    """
    import dataclasses
    from decimal import Decimal

    from gateway.config.risk import GateConfig
    from gateway.risk.gate import Gate, GateOrder

    target_us = 20.0
    n = 100_000
    snap = compute_snapshot(make_inputs(42))
    symbols = [f"PF_S{i:02d}USD" for i in range(20)]
    sessions = ["OMS1", "OMS2", "OMS3", "OMS4"]
    mid = Decimal(f"{snap.price:.2f}")
    mids = {s: (mid, 0.2) for s in symbols}
    g = snap.gravity
    # worst allow: funding and gravity match, liq_to_depth never does (buys land on even
    # symbols, sells on odd ones, so each group gets the snapshot its side's rule reads longest)
    near_long = dataclasses.replace(snap, liq_to_depth_long=0.5, funding_excess_bps=1095.0)
    near_short = dataclasses.replace(snap, liq_to_depth_short=0.5, funding_excess_bps=-1095.0)
    calm = dataclasses.replace(snap, funding_excess_bps=100.0)
    crowded = dataclasses.replace(snap, liq_to_depth_long=2.6)
    rules = [
        {"name": "carry_gravity_long", "kind": "crowded_long", "action": "block",
         "stale_policy": "block", "max_age_s": 120,
         "params": {"min_funding_excess_bps": "1000", "max_gravity": f"{min(g + 0.1, 1.0):.3f}",
                    "min_liq_to_depth": "1.0"}},
        {"name": "carry_gravity_short", "kind": "crowded_short", "action": "warn",
         "stale_policy": "warn", "max_age_s": 120,
         "params": {"max_funding_excess_bps": "-1000",
                    "min_gravity": f"{max(g - 0.1, -1.0):.3f}", "min_liq_to_depth": "1.0"}},
    ]
    config = GateConfig.model_validate({
        "max_order_qty": {"*": "1000"}, "max_notional_usd": "50000000", "price_collar_bps": 500,
        "max_orders_per_s": 50, "max_open_orders": 200, "signal_rules": rules})

    def orders(kind: str) -> list[GateOrder]:
        out = []
        for i in range(n):
            sym, side = symbols[i % 20], "1" if i % 2 == 0 else "2"
            px = mid * Decimal("1.001") if side == "1" else mid * Decimal("0.999")
            if kind == "mix" and i % 20 == 7:
                px = mid * Decimal("1.2")  # outside the 5 % collar
            if kind == "mix" and i % 20 == 0:
                sym = symbols[0]  # crowded snapshot, buy
            if kind == "block":
                side = "1"
            out.append(GateOrder(sym, side, Decimal("2.5"), px.quantize(Decimal("0.01")), "2",
                                 sessions[i % 4], "ACC"))
        return out

    def run(kind: str, snaps: dict[str, Any]) -> dict[str, float]:
        clock = [0.0]
        gate = Gate(config, mids.__getitem__, snaps.get, lambda: clock[0],
                    wall_clock=lambda: NOW + 1.0)
        check, routed, closed = gate.check, gate.on_order_routed, gate.on_order_closed
        batch = orders(kind)
        samples = np.empty(n, dtype=np.float64)
        pending: list[GateOrder] = []
        perf = time.perf_counter_ns
        for o in batch[:2000]:  # warm-up: compile the plans (a passing check takes a rate
            if check(o).passes:   # slot: given back, these orders are not routed)
                gate.on_order_not_routed(o)
        gc.collect()
        for i, o in enumerate(batch):
            t0 = perf()
            d = check(o)
            samples[i] = (perf() - t0) / 1e3
            clock[0] += 0.002
            if d.action != "block":
                routed(o)
                pending.append(o)
                if len(pending) > 100:
                    p = pending.pop(0)
                    closed(p.oms_session, p.symbol)
        return {"p50_us": round(float(np.percentile(samples, 50)), 2),
                "p99_us": round(float(np.percentile(samples, 99)), 2)}

    mix = run("mix", {**{s: calm for s in symbols}, symbols[0]: crowded})
    allow = run("allow", {s: near_long if i % 2 == 0 else near_short
                          for i, s in enumerate(symbols)})
    block = run("block", {s: crowded for s in symbols})

    limits = {s: Decimal("1000") for s in symbols}
    batch = orders("allow")
    base = np.empty(n, dtype=np.float64)
    perf = time.perf_counter_ns
    gc.collect()
    for i, o in enumerate(batch):
        t0 = perf()
        _ = o.qty > limits[o.symbol]
        base[i] = (perf() - t0) / 1e3
    baseline = {"p50_us": round(float(np.percentile(base, 50)), 3),
                "p99_us": round(float(np.percentile(base, 99)), 3)}
    return {
        "orders": float(n),
        "p50_us": mix["p50_us"],
        "p99_us": mix["p99_us"],
        "allow_p50_us": allow["p50_us"],
        "allow_p99_us": allow["p99_us"],
        "block_signal_p50_us": block["p50_us"],
        "block_signal_p99_us": block["p99_us"],
        "baseline_p50_us": baseline["p50_us"],
        "baseline_p99_us": baseline["p99_us"],
        "ratio_p50_to_baseline": round(mix["p50_us"] / max(baseline["p50_us"], 1e-3), 1),
        "target_us": target_us,
        "meets_target": max(mix["p99_us"], allow["p99_us"], block["p99_us"]) <= target_us,
    }


def fix_rtt_gate_on_vs_off(quick: bool) -> dict[str, Any]:
    """NewOrderSingle -> first ExecutionReport through a real gateway, gate on vs gate off
    (A/B rounds; see tools/benchlib/gate_rtt.py). Target: p99 ratio <= 1.1."""
    from tools.benchlib.gate_rtt import measure_gate_rtt

    if quick:
        return measure_gate_rtt(rounds=2, orders=600, warmup=50)
    return measure_gate_rtt(rounds=8, orders=8000, warmup=200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=500, help="timed runs per figure")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fix-rtt", action="store_true",
                        help="also time the FIX round trip with the gate on vs off (two "
                             "gateway processes; tools/benchlib/gate_rtt.py), ~30 s")
    parser.add_argument("--only-fix-rtt", action="store_true",
                        help="only the FIX round trip with the gate on vs off")
    parser.add_argument("--quick", action="store_true",
                        help="with --fix-rtt or --only-fix-rtt: smoke-sized round trip (2 rounds, "
                             "600 orders per condition, ~10 s)")
    args = parser.parse_args(argv)
    if args.only_fix_rtt:
        print(json.dumps({"benchmark": "bench_signals", "python": platform.python_version(),
                          "fix_rtt_gate_on_vs_off": fix_rtt_gate_on_vs_off(args.quick)}))
        return 0
    runs = max(args.runs, 20)

    inputs = make_inputs(args.seed)
    hist = inputs.oi_history
    assert hist is not None
    p = float(inputs.mark)
    flow = flow_estimate(hist.oi_usd, hist.taker_buy_share, as_of=float(hist.ts[-1]))
    liq_map = build_map(inputs, flow, p)
    with_map = replace(inputs, liq_map=liq_map)
    snap = compute_snapshot(with_map)

    # numpy floor: one pass over a grid-sized array
    grid = np.random.default_rng(args.seed).uniform(0.0, 1.0, GRID)
    cumsum = timed(lambda: np.cumsum(grid), runs * 4)

    # full snapshot: normal path (caller keeps the map) and cold path (replay 288 intervals)
    snap_t = timed(lambda: compute_snapshot(with_map), runs)
    cold_t = timed(lambda: compute_snapshot(inputs), max(runs // 10, 20), warmup=2)

    # cascade on the 2,000-level bid book against the 2,000-bin map's long clusters
    book = inputs.book
    assert book is not None
    sm = liq_map.scaled(flow.record.long_usd, flow.record.short_usd, p, NOW)
    nz = sm.long_base > 0.0
    cl_px, cl_qty = sm.centers[nz], sm.long_base[nz]
    bid_px = book.bid_px * (p / float(inputs.index))
    bid_qty = np.asarray(book.bid_qty)
    oi_base = flow.record.long_usd / p
    vol_d = float(hist.oi_usd[-1]) / p
    shock = p * math.exp(-snap.s)

    def cascade() -> object:
        return simulate_cascade(
            "long",
            bid_px,
            bid_qty,
            cl_px,
            cl_qty,
            price=p,
            side_oi=oi_base,
            sigma_d=snap.sigma_d,
            daily_volume=vol_d,
            shock_price=shock,
        )

    result = simulate_cascade(
        "long",
        bid_px,
        bid_qty,
        cl_px,
        cl_qty,
        price=p,
        side_oi=oi_base,
        sigma_d=snap.sigma_d,
        daily_volume=vol_d,
        shock_price=shock,
    )
    casc_t = timed(cascade, runs)
    order_b = np.argsort(-bid_px)
    order_c = np.argsort(-cl_px)
    lists = (
        bid_px[order_b].tolist(),
        bid_qty[order_b].tolist(),
        cl_px[order_c].tolist(),
        cl_qty[order_c].tolist(),
    )
    naive = naive_cascade(*lists, shock, snap.sigma_d, vol_d)
    naive_runs = max(runs // 10, 10)
    naive_t = timed(lambda: naive_cascade(*lists, shock, snap.sigma_d, vol_d), naive_runs, 1)
    agrees = (
        naive[2] == result.steps
        and math.isclose(naive[0], result.liquidated_qty, rel_tol=1e-9)
        and math.isclose(naive[1], result.end_price, rel_tol=1e-9)
    )

    # worst case: a chain that runs all 50 waves through a 2,000-level book
    chain_list = [100.0 - 0.01 * i for i in range(GRID)]
    chain_px = np.asarray(chain_list)
    ones = np.ones(GRID)
    chain_q = np.full(GRID, 1.001)

    def chain() -> object:
        return simulate_cascade(
            "long",
            chain_px,
            ones,
            chain_px,
            chain_q,
            price=100.5,
            side_oi=1e4,
            sigma_d=0.05,
            daily_volume=1e6,
            shock_price=100.0,
        )

    chain_steps = simulate_cascade(
        "long",
        chain_px,
        [1.0] * GRID,
        chain_px,
        [1.001] * GRID,
        price=100.5,
        side_oi=1e4,
        sigma_d=0.05,
        daily_volume=1e6,
        shock_price=100.0,
    ).steps
    chain_t = timed(chain, runs)
    chain_naive_t = timed(
        lambda: naive_cascade(
            chain_list, [1.0] * GRID, chain_list, [1.001] * GRID, 100.0, 0.05, 1e6
        ),
        naive_runs,
        1,
    )

    # one map interval (decay, consume, net removal, add over 6 tiers) on a copy
    work = liq_map.copy()
    t_next = [work.as_of]

    def map_update() -> None:
        t_next[0] += 300.0
        work.apply_interval(t_next[0], 2e6, -1e6, p, p * 0.998, p * 1.002)

    map_t = timed(map_update, runs * 2)
    scaled_t = timed(lambda: liq_map.scaled(1e8, 1e8, p, NOW), runs)
    usd = [liq_map.usd("long").tolist(), liq_map.usd("short").tolist()]
    centers = liq_map.grid.centers.tolist()
    factors = [
        [(1 - 1 / t.leverage) / (1 - t.m) for t in liq_map.tiers],
        [(1 + 1 / t.leverage) / (1 + t.m) for t in liq_map.tiers],
    ]
    weights = [t.weight for t in liq_map.tiers]
    grid_lo, grid_step = liq_map.grid.log_lo, liq_map.grid.step

    def naive_map() -> None:
        naive_map_update(
            usd,
            centers,
            grid_lo,
            grid_step,
            factors,
            weights,
            0.9995,
            p * 0.998,
            p * 1.002,
            2e6,
            p,
        )

    naive_map_t = timed(naive_map, max(runs // 5, 10), 1)

    def ratio(a: dict[str, float], b: dict[str, float]) -> float:
        return round(a["p50_us"] / b["p50_us"], 3)

    out: dict[str, Any] = {
        "benchmark": "bench_signals",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "seed": args.seed,
        "runs": runs,
        "grid_bins": GRID,
        "book_levels_per_side": GRID,
        "oi_intervals": int(hist.ts.size),
        "baseline_np_cumsum_2000": cumsum,
        "compute_snapshot": {
            **snap_t,
            "ratio_p50_to_np_cumsum": ratio(snap_t, cumsum),
            "note": "caller-kept LiquidationMap (normal path)",
        },
        "compute_snapshot_cold_replay_288": {
            **cold_t,
            "ratio_p50_to_np_cumsum": ratio(cold_t, cumsum),
            "note": "map rebuilt from 288 OI intervals inside the call",
        },
        "cascade_2000": {
            **casc_t,
            "steps": result.steps,
            "stop_reason": result.stop_reason,
            "book_exhausted": result.book_exhausted,
            "baseline_naive_python": naive_t,
            "baseline_agrees": agrees,
            "ratio_p50_to_naive_python": ratio(casc_t, naive_t),
            "ratio_p50_to_np_cumsum": ratio(casc_t, cumsum),
            "target_us": CASCADE_TARGET_US,
            "meets_target": casc_t["p99_us"] <= CASCADE_TARGET_US,
        },
        "cascade_2000_worst_case_50_waves": {
            **chain_t,
            "steps": chain_steps,
            "baseline_naive_python": chain_naive_t,
            "ratio_p50_to_naive_python": ratio(chain_t, chain_naive_t),
            "ratio_p50_to_np_cumsum": ratio(chain_t, cumsum),
            "meets_target": chain_t["p99_us"] <= CASCADE_TARGET_US,
        },
        "liquidation_map_update": {
            **map_t,
            "baseline_naive_python": naive_map_t,
            "ratio_p50_to_naive_python": ratio(map_t, naive_map_t),
            "ratio_p50_to_np_cumsum": ratio(map_t, cumsum),
            "note": "apply_interval, both sides: decay, consume, net removal, add over 6 tiers",
        },
        "liquidation_map_scaled_view": {
            **scaled_t,
            "ratio_p50_to_np_cumsum": ratio(scaled_t, cumsum),
        },
        "gate_decision_us": gate_decision_timing_us(),
    }
    if args.fix_rtt:
        out["fix_rtt_gate_on_vs_off"] = fix_rtt_gate_on_vs_off(args.quick)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
